//! Write sharding of the table's low-cardinality index keys. An index whose partition key
//! takes a handful of values (every pending notification under one value, every event
//! under another) puts all its writes on one partition, which sustains about 1,000 write
//! units a second. Each such key is spread over a fixed number of values by a stable hash
//! of the item's own key; readers query every value and merge. `scripts/capacity` checks
//! that each count keeps every partition under half its limit at 10,000 webhooks a second,
//! and under its limit at 100,000. A count may grow in a release: a value written under
//! the smaller count (a hash modulo a power of two) is one of the larger count's values,
//! so readers still find it.

use sha2::{Digest, Sha256};

/// Shards of the pending-notification marker (`PendingNotifications`).
pub const PENDING_SHARDS: u16 = 128;
/// Shards of the event feed (`EventFeed`).
pub const FEED_SHARDS: u16 = 128;
/// Shards of each provider's sync schedule (`SyncShards`).
pub const SYNC_SHARDS: u16 = 64;
/// Shards of the transactions that need a human (`Attention`): written only when a
/// transaction first needs one for a reason, and by the writes of those transactions.
pub const ATTENTION_SHARDS: u16 = 16;

/// Which of `shards` the item keyed `key` belongs to: the same key, the same shard.
pub fn shard(key: &str, shards: u16) -> u16 {
    let digest: [u8; 32] = Sha256::digest(key.as_bytes()).into();
    let [first, second, ..] = digest;
    u16::from_be_bytes([first, second]) % shards.max(1)
}

/// `{prefix}#{shard:02}` for `key`.
pub(crate) fn sharded(prefix: &str, key: &str, shards: u16) -> String {
    format!("{prefix}#{:02}", shard(key, shards))
}

/// Every value of a key sharded `shards` ways under `prefix`, in order.
pub fn all(prefix: &str, shards: u16) -> Vec<String> {
    (0..shards).map(|n| format!("{prefix}#{n:02}")).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_spread_over_every_shard_and_stay_put() {
        let mut counts = vec![0usize; PENDING_SHARDS as usize];
        for n in 0..1_000 * u32::from(PENDING_SHARDS) {
            counts[shard(&format!("azqr#{:012}", n), PENDING_SHARDS) as usize] += 1;
        }
        let (low, high) = (counts.iter().min().copied(), counts.iter().max().copied());
        assert!(low > Some(850) && high < Some(1150), "{low:?}..{high:?} of 1,000 each");
        assert_eq!(shard("azqr#100000000001", 64), shard("azqr#100000000001", 64));
        assert_eq!(sharded("PENDING", "azqr#100000000001", 64).len(), "PENDING#00".len());
        assert_eq!(all("events", 3), ["events#00", "events#01", "events#02"]);
        // A count that doubles keeps every value written under the smaller one.
        for n in 0..1_000 {
            let key = format!("azqr#{n:012}");
            assert_eq!(shard(&key, 128) % 64, shard(&key, 64), "{key}");
        }
    }
}
