//! The rules file's YAML reader: granit-parser events deserialized straight
//! into the raw structs, with positions and field paths, and no YAML tree.
//!
//! This replaces marked-yaml, whose tree and scanner cost far more than
//! the file (issue #17, 3.6: a 5 MB file must load in ≤ 10× its size).
//! `Spanned`, `Span` and `Marker` keep marked-yaml's API as the rules
//! layer used it, in 8 bytes per position. `Events` is the deserializer
//! and also the loader's cursor: the loader walks the top of the file
//! itself and reads each list entry with `Events::entry`, which skips a
//! bad entry so the next ones are still read and checked. Every
//! `Error` knows its line:column and field path.

mod de;
mod error;
mod keys;
mod spanned;

#[cfg(test)]
mod tests;

pub use de::{Events, NodeStart};
pub use error::Error;
pub use keys::KeySet;
pub use spanned::{Marker, Span, Spanned};
