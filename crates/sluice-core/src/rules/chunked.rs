//! [`Chunked<T>`]: a YAML list read into fixed-size chunks, for the lists
//! a rules file may hold hundreds of thousands of (services, a service's
//! endpoints).
//!
//! A `Vec` read item by item doubles its capacity as it grows: at each
//! doubling the old and the new buffer are both held, and up to half of
//! the final one is unused (a 145 k-endpoint list held 262 k slots), and
//! a one-item list still takes four slots. Here items fill a chunk of at
//! most [`CHUNK`] items; a full chunk is kept as an exact `Box<[T]>`, and
//! so is the last one, so nothing is moved after it is read and nothing
//! is held beyond the items. Consumed by value ([`Chunked::into_iter`]),
//! each chunk is freed as soon as its items have been taken, so what is
//! built from the items grows while the list shrinks.

use std::fmt;
use std::marker::PhantomData;

use serde::de::{SeqAccess, Visitor};
use serde::{Deserialize, Deserializer};

/// Items per chunk: 64 KB chunks for a 64-byte item.
pub const CHUNK: usize = 1024;

/// A list in file order, in chunks of at most [`CHUNK`] items.
pub struct Chunked<T> {
    chunks: Vec<Box<[T]>>,
    len: usize,
}

impl<T> Default for Chunked<T> {
    fn default() -> Self {
        Chunked {
            chunks: Vec::new(),
            len: 0,
        }
    }
}

impl<T> Chunked<T> {
    pub fn len(&self) -> usize {
        self.len
    }

    pub fn iter(&self) -> impl Iterator<Item = &T> {
        self.chunks.iter().flat_map(|c| c.iter())
    }
}

impl<'a, T> IntoIterator for &'a Chunked<T> {
    type Item = &'a T;
    type IntoIter = std::iter::Flatten<std::slice::Iter<'a, Box<[T]>>>;

    fn into_iter(self) -> Self::IntoIter {
        self.chunks.iter().flatten()
    }
}

impl<T> FromIterator<T> for Chunked<T> {
    fn from_iter<I: IntoIterator<Item = T>>(items: I) -> Self {
        let mut builder = Builder::default();
        for item in items {
            builder.push(item);
        }
        builder.finish()
    }
}

impl<T> IntoIterator for Chunked<T> {
    type Item = T;
    type IntoIter = std::iter::FlatMap<
        std::vec::IntoIter<Box<[T]>>,
        std::vec::IntoIter<T>,
        fn(Box<[T]>) -> std::vec::IntoIter<T>,
    >;

    /// The items in order; each chunk is freed once its last item is taken.
    fn into_iter(self) -> Self::IntoIter {
        let open: fn(Box<[T]>) -> std::vec::IntoIter<T> = |chunk| chunk.into_vec().into_iter();
        self.chunks.into_iter().flat_map(open)
    }
}

/// Fills one chunk at a time: the first grows from a few items (most lists
/// are short), later ones start at [`CHUNK`].
pub struct Builder<T> {
    chunks: Vec<Box<[T]>>,
    current: Vec<T>,
    len: usize,
}

impl<T> Default for Builder<T> {
    fn default() -> Self {
        Builder {
            chunks: Vec::new(),
            current: Vec::new(),
            len: 0,
        }
    }
}

impl<T> Builder<T> {
    pub fn push(&mut self, item: T) {
        if self.current.len() == CHUNK {
            let full = std::mem::replace(&mut self.current, Vec::with_capacity(CHUNK));
            // Full: its length is its capacity, so no copy is made.
            self.chunks.push(full.into_boxed_slice());
        }
        self.current.push(item);
        self.len += 1;
    }

    pub fn finish(mut self) -> Chunked<T> {
        if !self.current.is_empty() {
            self.chunks.push(self.current.into_boxed_slice());
        }
        self.chunks.shrink_to_fit();
        Chunked {
            chunks: self.chunks,
            len: self.len,
        }
    }
}

impl<'de, T: Deserialize<'de>> Deserialize<'de> for Chunked<T> {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct ChunkedVisitor<T>(PhantomData<T>);
        impl<'de, T: Deserialize<'de>> Visitor<'de> for ChunkedVisitor<T> {
            type Value = Chunked<T>;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                // As serde's `Vec`, so that a wrong type reads the same.
                f.write_str("a sequence")
            }
            fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Self::Value, A::Error> {
                let mut builder = Builder::default();
                while let Some(item) = seq.next_element()? {
                    builder.push(item);
                }
                Ok(builder.finish())
            }
        }
        deserializer.deserialize_seq(ChunkedVisitor(PhantomData))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keeps_order_and_length_across_chunks() {
        for n in [0, 1, 3, CHUNK - 1, CHUNK, CHUNK + 1, 3 * CHUNK + 7] {
            let list: Chunked<usize> = (0..n).collect();
            assert_eq!(list.len(), n);
            assert!(list
                .chunks
                .iter()
                .all(|c| c.len() <= CHUNK && !c.is_empty()));
            assert_eq!(list.chunks.len(), n.div_ceil(CHUNK));
            assert_eq!(
                list.iter().copied().collect::<Vec<_>>(),
                (0..n).collect::<Vec<_>>()
            );
            assert_eq!(
                list.into_iter().collect::<Vec<_>>(),
                (0..n).collect::<Vec<_>>()
            );
        }
    }
}
