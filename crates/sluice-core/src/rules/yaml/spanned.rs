//! [`Spanned<T>`], [`Span`] and [`Marker`]: a value with where it starts in
//! the rules file, in 8 bytes.
//!
//! The API is the part of marked-yaml's that the rules layer used
//! (`Spanned::new`, `Deref`, `.span()`, `span.start()` → a marker with
//! `.line()`/`.column()`), minus the `Option`s: every value read has a
//! start.
//! A marker keeps line and column only, as `u32`: a byte offset would add 4
//! bytes to every spanned scalar of a 5 MB file (and 8 after padding to
//! `String`'s alignment), and nothing reports by offset. Only the start is
//! kept: every diagnostic points at where a value begins.

use std::borrow::Borrow;
use std::fmt;
use std::hash::{Hash, Hasher};
use std::ops::Deref;

use serde::de::{self, Deserialize, Deserializer, SeqAccess, Visitor};

/// The newtype-struct name our deserializer recognises to hand a
/// `Spanned` its position; any other deserializer sees a plain newtype.
pub const SPANNED_MARKER: &str = "$sluice::rules::yaml::Spanned";

/// A position in the source text: 1-based line, 1-based column in
/// characters (as `Diagnostic` prints them).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Marker {
    line: u32,
    column: u32,
}

/// Where a value starts. (marked-yaml's `Span` also had an optional end
/// that nothing in sluice read.)
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
pub struct Span {
    start: Marker,
}

/// A value and the position it was read at. Equality, ordering and
/// hashing look at the value only, as with marked-yaml.
#[derive(Clone)]
pub struct Spanned<T> {
    span: Span,
    inner: T,
}

impl Marker {
    /// `line` and `column` are 1-based; values past `u32::MAX` saturate
    /// (a 4 GB rules file is refused long before).
    pub fn new(line: usize, column: usize) -> Marker {
        let cap = |n: usize| u32::try_from(n).unwrap_or(u32::MAX);
        Marker {
            line: cap(line),
            column: cap(column),
        }
    }

    pub fn line(&self) -> usize {
        self.line as usize
    }

    pub fn column(&self) -> usize {
        self.column as usize
    }

    /// Both as one number, for handing a position through serde.
    fn pack(self) -> u64 {
        (u64::from(self.line) << 32) | u64::from(self.column)
    }

    fn unpack(packed: u64) -> Marker {
        Marker {
            line: (packed >> 32) as u32,
            column: packed as u32,
        }
    }
}

impl fmt::Display for Marker {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}:{}", self.line, self.column)
    }
}

impl Span {
    pub fn new_start(start: Marker) -> Span {
        Span { start }
    }

    pub fn start(&self) -> Marker {
        self.start
    }
}

impl<T> Spanned<T> {
    pub fn new(span: Span, inner: T) -> Spanned<T> {
        Spanned { span, inner }
    }

    pub fn span(&self) -> &Span {
        &self.span
    }

    /// The value, without its position.
    pub fn into_inner(self) -> T {
        self.inner
    }
}

impl<T> Deref for Spanned<T> {
    type Target = T;
    fn deref(&self) -> &T {
        &self.inner
    }
}

impl<T: fmt::Debug> fmt::Debug for Spanned<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{:?} @ {}", self.inner, self.span.start)
    }
}

impl<T: PartialEq> PartialEq for Spanned<T> {
    fn eq(&self, other: &Self) -> bool {
        self.inner == other.inner
    }
}

impl<T: PartialEq> PartialEq<T> for Spanned<T> {
    fn eq(&self, other: &T) -> bool {
        self.inner == *other
    }
}

impl PartialEq<&str> for Spanned<String> {
    fn eq(&self, other: &&str) -> bool {
        self.inner == *other
    }
}

impl<T: Eq> Eq for Spanned<T> {}

impl<T: PartialOrd> PartialOrd for Spanned<T> {
    fn partial_cmp(&self, other: &Self) -> Option<std::cmp::Ordering> {
        self.inner.partial_cmp(&other.inner)
    }
}

impl<T: Ord> Ord for Spanned<T> {
    fn cmp(&self, other: &Self) -> std::cmp::Ordering {
        self.inner.cmp(&other.inner)
    }
}

impl<T: Hash> Hash for Spanned<T> {
    fn hash<H: Hasher>(&self, state: &mut H) {
        self.inner.hash(state);
    }
}

impl Borrow<str> for Spanned<String> {
    fn borrow(&self) -> &str {
        &self.inner
    }
}

impl<'de, T: Deserialize<'de>> Deserialize<'de> for Spanned<T> {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct SpannedVisitor<T>(std::marker::PhantomData<T>);
        impl<'de, T: Deserialize<'de>> Visitor<'de> for SpannedVisitor<T> {
            type Value = Spanned<T>;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a value")
            }
            /// Our deserializer: the position, then the value.
            fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Spanned<T>, A::Error> {
                let packed: u64 = seq
                    .next_element()?
                    .ok_or_else(|| de::Error::custom("a spanned value without its position"))?;
                let inner: T = seq
                    .next_element()?
                    .ok_or_else(|| de::Error::custom("a spanned value without its value"))?;
                let span = Span::new_start(Marker::unpack(packed));
                Ok(Spanned { span, inner })
            }
            /// Any other deserializer: no position is known.
            fn visit_newtype_struct<D: Deserializer<'de>>(
                self,
                d: D,
            ) -> Result<Spanned<T>, D::Error> {
                T::deserialize(d).map(|inner| Spanned::new(Span::default(), inner))
            }
        }
        deserializer
            .deserialize_newtype_struct(SPANNED_MARKER, SpannedVisitor(std::marker::PhantomData))
    }
}

/// The position handed to [`Spanned`]'s visitor by our deserializer.
pub(super) fn packed(start: Marker) -> u64 {
    start.pack()
}
