//! Discovery without I/O: the merged endpoint [`index::Index`] the
//! sources feed, the checked registry record (`record`), and resolving the
//! rules' discovered services against a view (`resolve`). The sources and
//! their supervisor are in the `sluice` crate.

pub mod index;
pub mod record;
pub mod resolve;

pub use index::{FeedKey, Index, View};
