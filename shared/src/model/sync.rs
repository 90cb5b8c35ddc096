//! When the status sync asks a provider about a transaction no webhook has settled.
//!
//! Every write that leaves a transaction non-final schedules its next sync
//! (`next_sync_at`, the range key of the sparse `SyncSchedule` index); a final write
//! removes it. A sync that learns nothing new backs off along [`LADDER`]; a transaction
//! unchanged for [`GIVE_UP_AFTER`] is given up (left non-final, an alarm raised).

use std::time::Duration;

use serde::{Deserialize, Serialize};
use time::OffsetDateTime;

use super::TransactionRecord;

/// The record's sync state, shown by the status API for non-final transactions.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum SyncState {
    /// The provider will be asked at `next_sync_at`.
    Scheduled,
    /// The provider has no status API we can call: only the give-up alarm covers it.
    Unsupported,
    /// Unchanged for [`GIVE_UP_AFTER`]: no longer asked, an alarm was raised.
    GaveUp,
}

impl SyncState {
    pub fn as_str(self) -> &'static str {
        match self {
            SyncState::Scheduled => "scheduled",
            SyncState::Unsupported => "unsupported",
            SyncState::GaveUp => "gave_up",
        }
    }
}

/// A transaction unchanged for this long is given up.
pub const GIVE_UP_AFTER: Duration = Duration::from_secs(7 * 24 * 60 * 60);

/// The delay before each sync, in multiples of the first one (`STATUS_SYNC_AFTER_SECONDS`):
/// with the default 300 s, 5 min after the last change, then 15 min, 1 h, 6 h, then daily.
pub const LADDER: [u32; 5] = [1, 3, 12, 72, 288];

/// How the sync is scheduled: the delay after a change before the provider is first
/// asked (`STATUS_SYNC_AFTER_SECONDS`), and whether the provider can be asked at all.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SyncPolicy {
    pub after: Duration,
}

impl Default for SyncPolicy {
    fn default() -> Self {
        SyncPolicy { after: Duration::from_secs(300) }
    }
}

/// What the sync does next with a transaction.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SyncStep {
    /// Ask again at `at`; `attempts` syncs have learned nothing since the last change.
    Retry { state: SyncState, at: OffsetDateTime, attempts: u32 },
    /// Unchanged for [`GIVE_UP_AFTER`]: stop, leave it non-final, raise the alarm.
    GiveUp,
}

/// A time as the index sorts it: whole seconds, UTC (every key the same length).
pub fn index_time(at: OffsetDateTime) -> OffsetDateTime {
    at.to_offset(time::UtcOffset::UTC).replace_nanosecond(0).unwrap_or(at)
}

impl SyncPolicy {
    /// The schedule a write that leaves a transaction non-final at `now` sets: the first
    /// sync `after` later (or at `expires_at`, if sooner); for a provider without a status
    /// API, the give-up check.
    pub fn first(&self, supported: bool, now: OffsetDateTime, expires_at: Option<OffsetDateTime>) -> SyncStep {
        let (state, at) = match supported {
            true => {
                let at = now + self.after;
                (SyncState::Scheduled, expires_at.filter(|e| *e > now && *e < at).unwrap_or(at))
            }
            false => (SyncState::Unsupported, now + GIVE_UP_AFTER),
        };
        SyncStep::Retry { state, at: index_time(at), attempts: 0 }
    }

    /// After a sync of `record` at `now` learned nothing new (or the provider cannot be
    /// asked, `supported` false): the next rung of the ladder, bounded by the give-up
    /// time and brought forward to `expires_at`; or give up.
    pub fn next(&self, record: &TransactionRecord, supported: bool, now: OffsetDateTime) -> SyncStep {
        let give_up_at = record.updated_at + GIVE_UP_AFTER;
        if now >= give_up_at {
            return SyncStep::GiveUp;
        }
        if !supported {
            return SyncStep::Retry { state: SyncState::Unsupported, at: index_time(give_up_at), attempts: 0 };
        }
        let attempts = record.sync_attempts.saturating_add(1);
        let rung = LADDER[(attempts as usize).min(LADDER.len() - 1)];
        let mut at = (now + self.after * rung).min(give_up_at);
        if let Some(expires_at) = record.expires_at.filter(|e| *e > now && *e < at) {
            at = expires_at;
        }
        SyncStep::Retry { state: SyncState::Scheduled, at: index_time(at), attempts }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::Status;

    fn at(seconds: i64) -> OffsetDateTime {
        OffsetDateTime::from_unix_timestamp(1_795_000_000 + seconds).expect("time")
    }

    fn record(updated: OffsetDateTime, attempts: u32) -> TransactionRecord {
        let mut record = crate::model::tests::record("azqr", "100000000001", Status::Pending, updated);
        record.sync_attempts = attempts;
        record
    }

    #[test]
    fn the_first_sync_comes_after_the_delay_or_at_expiry() {
        let policy = SyncPolicy::default();
        let expected = SyncStep::Retry { state: SyncState::Scheduled, at: at(300), attempts: 0 };
        assert_eq!(policy.first(true, at(0), None), expected);
        assert_eq!(policy.first(true, at(0), Some(at(9_000))), expected, "expiry later than the first sync");
        assert_eq!(policy.first(true, at(0), Some(at(-5))), expected, "expiry already past");
        let early = SyncStep::Retry { state: SyncState::Scheduled, at: at(60), attempts: 0 };
        assert_eq!(policy.first(true, at(0), Some(at(60))), early);
        let unsupported = policy.first(false, at(0), None);
        let week = GIVE_UP_AFTER.as_secs() as i64;
        assert_eq!(unsupported, SyncStep::Retry { state: SyncState::Unsupported, at: at(week), attempts: 0 });
    }

    #[test]
    fn syncs_that_learn_nothing_back_off_then_give_up_after_a_week_unchanged() {
        let policy = SyncPolicy::default();
        let mut now = at(300);
        let mut record = record(at(0), 0);
        let mut delays = Vec::new();
        while let SyncStep::Retry { at: next, attempts, state } = policy.next(&record, true, now) {
            assert_eq!(state, SyncState::Scheduled);
            delays.push((next - now).whole_minutes());
            record.sync_attempts = attempts;
            now = next;
        }
        assert_eq!(&delays[..5], &[15, 60, 360, 1440, 1440], "{delays:?}");
        assert_eq!(now, record.updated_at + GIVE_UP_AFTER, "the last sync is at the give-up time");
        assert!(delays.len() < 12, "a week of backoff is a handful of calls: {}", delays.len());
    }

    #[test]
    fn an_expiry_brings_the_next_sync_forward_and_unsupported_waits_for_the_give_up() {
        let policy = SyncPolicy { after: Duration::from_secs(1) };
        let mut record = record(at(0), 3);
        record.expires_at = Some(at(20));
        let step = policy.next(&record, true, at(10));
        assert_eq!(step, SyncStep::Retry { state: SyncState::Scheduled, at: at(20), attempts: 4 });
        let week = GIVE_UP_AFTER.as_secs() as i64;
        let step = policy.next(&record, false, at(10));
        assert_eq!(step, SyncStep::Retry { state: SyncState::Unsupported, at: at(week), attempts: 0 });
        assert_eq!(policy.next(&record, false, at(week)), SyncStep::GiveUp);
    }

    #[test]
    fn index_times_are_whole_utc_seconds() {
        let offset = time::UtcOffset::from_hms(3, 0, 0).expect("offset");
        let t = (at(0) + Duration::from_millis(1_500)).to_offset(offset);
        let indexed = index_time(t);
        assert_eq!(indexed, at(1));
        assert_eq!(indexed.offset(), time::UtcOffset::UTC);
    }
}
