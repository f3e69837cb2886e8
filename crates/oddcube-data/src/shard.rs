//! Stable assignment of galaxies to shards (`--shard i/n`) for scale-out over many machines.

use std::fmt;
use std::str::FromStr;

/// One shard of a survey: galaxies whose stable plateifu hash falls in bucket `index` of `count`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct Shard {
    /// Zero-based shard index, `< count`.
    pub index: u32,
    /// Number of shards, `>= 1`.
    pub count: u32,
}

impl Shard {
    /// The whole survey as one shard.
    pub const ALL: Shard = Shard { index: 0, count: 1 };

    /// Whether a galaxy belongs to this shard. The hash (xxh3-64 of the plateifu bytes, seed 0)
    /// is fixed forever so shards computed on different machines and versions agree.
    pub fn contains(&self, plateifu: &str) -> bool {
        self.count <= 1
            || xxhash_rust::xxh3::xxh3_64(plateifu.as_bytes()) % u64::from(self.count)
                == u64::from(self.index)
    }

    /// Shard from the Slurm job-array environment (`SLURM_ARRAY_TASK_ID`,
    /// `SLURM_ARRAY_TASK_COUNT`), if both are set and valid.
    pub fn from_slurm_env() -> Option<Shard> {
        let id = std::env::var("SLURM_ARRAY_TASK_ID").ok()?.parse().ok()?;
        let count = std::env::var("SLURM_ARRAY_TASK_COUNT").ok()?.parse().ok()?;
        Shard::new(id, count).ok()
    }

    /// Validates `index < count` and `count >= 1`.
    pub fn new(index: u32, count: u32) -> Result<Shard, String> {
        if count == 0 || index >= count {
            return Err(format!("shard {index}/{count}: need 0 <= i < n and n >= 1"));
        }
        Ok(Shard { index, count })
    }

    /// Directory name of this shard's artifact set (`part-i-of-n`).
    pub fn part_name(&self) -> String {
        format!("part-{}-of-{}", self.index, self.count)
    }
}

impl FromStr for Shard {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let (i, n) = s
            .split_once('/')
            .ok_or_else(|| format!("shard {s:?}: expected i/n, e.g. 0/4"))?;
        let i = i
            .trim()
            .parse()
            .map_err(|_| format!("shard {s:?}: {i:?} is not an index"))?;
        let n = n
            .trim()
            .parse()
            .map_err(|_| format!("shard {s:?}: {n:?} is not a count"))?;
        Shard::new(i, n)
    }
}

impl fmt::Display for Shard {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}", self.index, self.count)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parse_and_partition() {
        assert_eq!(
            "1/3".parse::<Shard>().unwrap(),
            Shard { index: 1, count: 3 }
        );
        assert!("3/3".parse::<Shard>().is_err());
        assert!("x/3".parse::<Shard>().is_err());
        assert!("1".parse::<Shard>().is_err());
        let ids: Vec<String> = (0..300)
            .map(|i| format!("{}-{}", 7000 + i, 1901 + i % 5))
            .collect();
        let shards: Vec<Shard> = (0..3).map(|i| Shard::new(i, 3).unwrap()).collect();
        for id in &ids {
            assert_eq!(shards.iter().filter(|s| s.contains(id)).count(), 1);
        }
        assert!(
            shards
                .iter()
                .all(|s| ids.iter().filter(|id| s.contains(id)).count() > 60)
        );
    }
}
