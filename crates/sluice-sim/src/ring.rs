//! Consistent-hash tables built the way Envoy builds them: the ring hash
//! ring (`"<ip:port>_<i>"` keys hashed with xxHash64, each host's share of
//! the ring scaled to its normalized weight, at least `minimum_ring_size`
//! entries) and the Maglev lookup table (weighted offset/skip permutations).

use std::net::SocketAddr;

use super::hash::xxhash64;

/// Envoy's `maximum_ring_size` default.
const MAX_RING_SIZE: f64 = 8_388_608.0;

#[derive(Clone, Debug)]
pub struct Ring {
    /// (hash, index into the host list given to `build`), sorted by hash.
    entries: Vec<(u64, usize)>,
}

impl Ring {
    /// `hosts`: (address, weight). Empty input gives an empty ring.
    pub fn build(hosts: &[(SocketAddr, u32)], min_ring_size: u64) -> Ring {
        let total: f64 = hosts.iter().map(|(_, w)| f64::from(*w)).sum();
        if hosts.is_empty() || total <= 0.0 {
            return Ring { entries: vec![] };
        }
        let normalized: Vec<f64> = hosts.iter().map(|(_, w)| f64::from(*w) / total).collect();
        let min_w = normalized.iter().copied().fold(f64::INFINITY, f64::min);
        let scale = ((min_w * min_ring_size as f64).ceil() / min_w).min(MAX_RING_SIZE);
        let mut entries = Vec::with_capacity(scale as usize + hosts.len());
        let (mut current, mut target) = (0.0, 0.0);
        for (i, ((addr, _), w)) in hosts.iter().zip(&normalized).enumerate() {
            target += scale * w;
            let mut n = 0u64;
            while current < target {
                let key = format!("{addr}_{n}");
                entries.push((xxhash64(key.as_bytes(), 0), i));
                n += 1;
                current += 1.0;
            }
        }
        entries.sort_unstable();
        Ring { entries }
    }

    /// The first entry whose hash is at least `h`, wrapping to the start.
    pub fn pick(&self, h: u64) -> Option<usize> {
        let i = self.entries.partition_point(|(eh, _)| *eh < h);
        self.entries
            .get(i)
            .or_else(|| self.entries.first())
            .map(|(_, host)| *host)
    }
}

#[derive(Clone, Debug)]
pub struct Maglev {
    table: Vec<usize>,
}

impl Maglev {
    pub fn build(hosts: &[(SocketAddr, u32)], table_size: u64) -> Maglev {
        if hosts.is_empty() || table_size < 2 {
            return Maglev { table: vec![] };
        }
        let size = usize::try_from(table_size).unwrap_or(65537);
        let max_w = hosts.iter().map(|(_, w)| *w).max().unwrap_or(1).max(1);
        struct Entry {
            offset: u64,
            skip: u64,
            weight: f64,
            target: f64,
            next: u64,
        }
        let mut entries: Vec<Entry> = hosts
            .iter()
            .map(|(addr, w)| {
                let key = addr.to_string();
                Entry {
                    offset: xxhash64(key.as_bytes(), 0) % table_size,
                    skip: xxhash64(key.as_bytes(), 1) % (table_size - 1) + 1,
                    weight: f64::from(*w) / f64::from(max_w),
                    target: f64::from(*w) / f64::from(max_w),
                    next: 0,
                }
            })
            .collect();
        let mut table = vec![usize::MAX; size];
        let mut filled = 0;
        let mut iteration = 1u64;
        while filled < size {
            for (i, e) in entries.iter_mut().enumerate() {
                if filled == size {
                    break;
                }
                // A host of the largest weight takes a slot every round; one
                // of a third of it, every third round.
                if (iteration as f64) * e.weight < e.target {
                    continue;
                }
                e.target += 1.0;
                let mut c = (e.offset + e.skip * e.next) % table_size;
                while table[c as usize] != usize::MAX {
                    e.next += 1;
                    c = (e.offset + e.skip * e.next) % table_size;
                }
                table[c as usize] = i;
                e.next += 1;
                filled += 1;
            }
            iteration += 1;
        }
        Maglev { table }
    }

    pub fn pick(&self, h: u64) -> Option<usize> {
        if self.table.is_empty() {
            return None;
        }
        let i = usize::try_from(h % self.table.len() as u64).unwrap_or(0);
        self.table.get(i).copied()
    }
}
