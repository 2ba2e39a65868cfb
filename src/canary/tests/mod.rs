//! Unit tests of the pure parts: every plan transition (`plan`), and the
//! overlay on the rules, window analysis and the file store (`parts`).

mod parts;
mod plan;
