//! [`KeySet`]: the keys one mapping has shown so far, to refuse a key
//! written twice (YAML forbids it; serde would keep the last silently).
//!
//! Most mappings in a rules file are small structs, where a scan of a few
//! borrowed keys is cheaper than a hash set; a mapping of user-chosen keys
//! (labels, header maps) can be large, so past [`LINEAR`] keys a hash index
//! is built.

use std::borrow::Cow;
use std::collections::HashMap;

use super::spanned::Marker;

/// Keys kept in a plain list up to this many.
const LINEAR: usize = 16;

/// Keys seen in one mapping with the line each was first written on.
#[derive(Default)]
pub struct KeySet<'de> {
    small: Vec<(Cow<'de, str>, u32)>,
    large: HashMap<Cow<'de, str>, u32>,
}

impl<'de> KeySet<'de> {
    /// Adds `key`; if it was already there, the line it was first seen on.
    pub fn insert(&mut self, key: Cow<'de, str>, at: Marker) -> Option<usize> {
        let line = u32::try_from(at.line()).unwrap_or(u32::MAX);
        if self.large.is_empty() {
            if let Some((_, first)) = self.small.iter().find(|(k, _)| *k == key) {
                return Some(*first as usize);
            }
            if self.small.len() < LINEAR {
                self.small.push((key, line));
                return None;
            }
            self.large.extend(self.small.drain(..));
        }
        match self.large.get(&key) {
            Some(first) => Some(*first as usize),
            None => {
                self.large.insert(key, line);
                None
            }
        }
    }
}
