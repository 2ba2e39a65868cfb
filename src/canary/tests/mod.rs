//! Unit tests of the pure parts: every plan transition (`plan`), and the
//! overlay on the rules, window analysis and the file store (`parts`),
//! and the ACK count over this replica's and other replicas' proxies
//! (`acks`).

mod acks;
mod parts;
mod plan;
