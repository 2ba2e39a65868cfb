//! Whether the rules file can have changed since it was last read, from
//! its metadata alone.
//!
//! The watcher polls the file and compares content hashes, which costs a
//! read of the whole file per tick: at topology M1 (1,000 services with
//! static endpoints, ~0.5 MB of YAML) and a 100 ms poll that was ~5 % of
//! sluice's CPU during benchmark B5, and a steady cost when nothing
//! happens. A [`Stamp`] (size, modification and status-change times, and
//! on Unix the device and inode, so a replaced file or a swapped
//! ConfigMap symlink counts as a change) lets a tick skip the read.
//!
//! Metadata can miss a change: two writes of the same size within one
//! timestamp tick of the filesystem (coarse on some) look the same. As
//! git does for its index ("racy git"), a stamp only vouches for the
//! content if the file had been left alone for [`SETTLED`] when it was
//! read; a recently written file is read on every tick until it settles.

use std::fs::Metadata;
use std::time::{Duration, SystemTime};

/// How long a file must have been unmodified before its stamp is trusted.
const SETTLED: Duration = Duration::from_secs(2);

/// What identifies one version of a file, short of reading it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) struct Stamp {
    len: u64,
    modified: Option<SystemTime>,
    #[cfg(unix)]
    unix: (u64, u64, i64, i64),
}

impl Stamp {
    pub(super) fn of(meta: &Metadata) -> Stamp {
        Stamp {
            len: meta.len(),
            modified: meta.modified().ok(),
            #[cfg(unix)]
            unix: {
                use std::os::unix::fs::MetadataExt;
                (meta.dev(), meta.ino(), meta.ctime(), meta.ctime_nsec())
            },
        }
    }

    /// The last time the file was changed, as far as the stamp shows.
    fn changed_at(&self) -> Option<SystemTime> {
        #[cfg(unix)]
        {
            let (_, _, secs, nanos) = self.unix;
            let ctime = u64::try_from(secs)
                .ok()
                .zip(u32::try_from(nanos).ok())
                .map(|(s, n)| SystemTime::UNIX_EPOCH + Duration::new(s, n));
            self.modified.max(ctime)
        }
        #[cfg(not(unix))]
        {
            self.modified
        }
    }
}

/// The stamp of the content last read, if it can be trusted.
#[derive(Debug, Default)]
pub(super) struct LastRead(Option<Stamp>);

impl LastRead {
    /// Whether a file now stamped `now` is the one last read.
    pub(super) fn unchanged(&self, now: &Stamp) -> bool {
        self.0.as_ref() == Some(now)
    }

    /// Records a read of a file stamped `stamp` (taken before the read)
    /// at `read_at`: trusted only if the file had settled by then.
    pub(super) fn read(&mut self, stamp: Stamp, read_at: SystemTime) {
        let settled = stamp
            .changed_at()
            .and_then(|at| read_at.duration_since(at).ok())
            .is_some_and(|age| age >= SETTLED);
        self.0 = settled.then_some(stamp);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn stamp_of(path: &std::path::Path) -> Stamp {
        Stamp::of(&std::fs::metadata(path).expect("metadata"))
    }

    fn mtime(path: &std::path::Path) -> SystemTime {
        std::fs::metadata(path)
            .and_then(|m| m.modified())
            .expect("mtime")
    }

    fn set_mtime(path: &std::path::Path, at: SystemTime) {
        std::fs::File::options()
            .write(true)
            .open(path)
            .and_then(|f| f.set_modified(at))
            .expect("set mtime");
    }

    #[test]
    fn a_settled_file_is_not_read_again_until_it_changes() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("rules.yaml");
        std::fs::write(&path, "a: 1\n").expect("write");
        let mut last = LastRead::default();
        let stamp = stamp_of(&path);
        last.read(stamp.clone(), SystemTime::now() + SETTLED);
        assert!(last.unchanged(&stamp_of(&path)));
        // Same size, new content, a later modification time.
        let before = mtime(&path);
        std::fs::write(
            &path, "a: 2
",
        )
        .expect("rewrite");
        set_mtime(&path, before + Duration::from_secs(1));
        assert!(!last.unchanged(&stamp_of(&path)));
    }

    #[test]
    fn a_replaced_file_is_a_change_even_with_the_same_times() {
        let dir = tempfile::tempdir().expect("tempdir");
        let (path, other) = (dir.path().join("rules.yaml"), dir.path().join("next"));
        std::fs::write(&path, "a: 1\n").expect("write");
        std::fs::write(&other, "a: 2\n").expect("write");
        set_mtime(&other, mtime(&path));
        let mut last = LastRead::default();
        let stamp = stamp_of(&path);
        last.read(stamp, SystemTime::now() + SETTLED);
        // An editor's or a ConfigMap's rename over the file.
        std::fs::rename(&other, &path).expect("rename");
        assert!(!last.unchanged(&stamp_of(&path)));
    }

    #[test]
    fn a_file_read_soon_after_a_write_is_read_again() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("rules.yaml");
        std::fs::write(&path, "a: 1\n").expect("write");
        let mut last = LastRead::default();
        let stamp = stamp_of(&path);
        // Read right away: a second write in the same timestamp tick
        // would leave the same stamp, so the stamp is not trusted.
        last.read(stamp.clone(), SystemTime::now());
        assert!(!last.unchanged(&stamp));
    }
}
