//! When the status sync asks a provider about a transaction no webhook has settled.
//!
//! Every write that leaves a transaction non-final schedules its next sync
//! (`next_sync_at`, the range key of the sparse `SyncSchedule` index); a final write
//! removes it. A sync that learns nothing new backs off along [`LADDER`]; a transaction
//! unchanged for [`GIVE_UP_AFTER`] is given up (left non-final, an alarm raised).
//!
//! A known expiry (the provider's, e.g. a Pix charge's `calendario`, or the one the
//! merchant registered) bounds the ladder: the provider is asked [`EXPIRY_MARGIN`] after
//! it, when its answer can be final. One within [`EXPIRY_WINDOW`] is the next ask: before
//! it, only a lost payment webhook could change the transaction, and the never-paid
//! charges of a Pix checkout are then asked about once, not along the ladder.

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
    pub(crate) fn as_str(self) -> &'static str {
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
pub(crate) const LADDER: [u32; 5] = [1, 3, 12, 72, 288];

/// How long after a known expiry the provider is asked: its own clock and its last
/// payment's settlement have had time to agree that the charge expired.
pub(crate) const EXPIRY_MARGIN: Duration = Duration::from_secs(60);

/// An expiry this close is the next ask, whatever the ladder's rung.
pub(crate) const EXPIRY_WINDOW: Duration = Duration::from_secs(60 * 60);

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

/// A time as the index sorts it: whole seconds, UTC (every key the same length). A time
/// with no UTC form (an offset past year 9999) is kept as it is; the store refuses it.
pub fn index_time(at: OffsetDateTime) -> OffsetDateTime {
    let utc = at.checked_to_offset(time::UtcOffset::UTC).unwrap_or(at);
    utc.replace_nanosecond(0).unwrap_or(utc)
}

/// When to ask, given the ladder's time `ladder` and a known `expires_at`: just after the
/// expiry if that is sooner, or within [`EXPIRY_WINDOW`] of `now`; otherwise the ladder.
fn bounded_by_expiry(
    now: OffsetDateTime,
    ladder: OffsetDateTime,
    expires_at: Option<OffsetDateTime>,
) -> OffsetDateTime {
    let Some(expires_at) = expires_at else {
        return ladder;
    };
    // No time after an expiry at the end of time: the ladder.
    let Some(ask) = expires_at.checked_add(time::Duration::seconds(EXPIRY_MARGIN.as_secs() as i64)) else {
        return ladder;
    };
    let within_window = expires_at - now <= EXPIRY_WINDOW;
    match ask > now && (ask < ladder || within_window) {
        true => ask,
        false => ladder,
    }
}

impl SyncPolicy {
    /// The schedule a write that leaves a transaction non-final at `now` sets: the first
    /// sync `after` later, or just after `expires_at` (see [`EXPIRY_WINDOW`]); for a
    /// provider without a status API, the give-up check.
    pub(crate) fn first(&self, supported: bool, now: OffsetDateTime, expires_at: Option<OffsetDateTime>) -> SyncStep {
        let (state, at) = match supported {
            true => (SyncState::Scheduled, bounded_by_expiry(now, now + self.after, expires_at)),
            false => (SyncState::Unsupported, now + GIVE_UP_AFTER),
        };
        SyncStep::Retry { state, at: index_time(at), attempts: 0 }
    }

    /// After a sync of `record` at `now` learned nothing new (or the provider cannot be
    /// asked, `supported` false): the next rung of the ladder, bounded by the give-up
    /// time, or just after the record's expiry (see [`EXPIRY_WINDOW`]); or give up.
    pub fn next(&self, record: &TransactionRecord, supported: bool, now: OffsetDateTime) -> SyncStep {
        let give_up_at = record.changed_at() + GIVE_UP_AFTER;
        if now >= give_up_at {
            return SyncStep::GiveUp;
        }
        if !supported {
            return SyncStep::Retry { state: SyncState::Unsupported, at: index_time(give_up_at), attempts: 0 };
        }
        let attempts = record.sync_attempts.saturating_add(1);
        let rung = LADDER.get(usize::try_from(attempts).unwrap_or(usize::MAX)).or(LADDER.last()).copied().unwrap_or(1);
        let at = bounded_by_expiry(now, (now + self.after * rung).min(give_up_at), record.expires_at);
        SyncStep::Retry { state: SyncState::Scheduled, at: index_time(at.min(give_up_at)), attempts }
    }
}

/// What giving up removes: the schedule, in both its forms, and its attempts.
const GIVE_UP_REMOVED: [&str; 4] = [super::SYNC_AT, super::LEGACY_SYNC_AT, "sync_attempts", super::SYNC_SHARD];

impl super::Change {
    /// What a sync that learned nothing new about `record` writes: the next sync (its
    /// shard set again, so that one scheduled before the sharding moves to it), or giving
    /// up (`sync` = `gave_up`, out of the index). Only while the record is at the status
    /// the sync saw and still scheduled. The record's expiry is kept with it (the provider
    /// may have stated it in an answer that changed nothing else). Giving up at `now` puts
    /// the transaction in the `Attention` index, in the same write.
    pub fn reschedule(record: &TransactionRecord, step: SyncStep, now: OffsetDateTime) -> super::Change {
        let condition = super::Condition::Scheduled(record.status);
        let text = |value: &str| super::Value::Text(value.to_owned());
        match step {
            SyncStep::Retry { state, at, attempts } => {
                let shard = super::sync_shard(&record.provider, &record.reference);
                let mut fields = vec![
                    ("sync", super::Edit::Set, text(state.as_str())),
                    (super::SYNC_AT, super::Edit::Set, super::Value::Time(at)),
                    ("sync_attempts", super::Edit::Set, super::Value::Number(attempts)),
                    (super::SYNC_SHARD, super::Edit::Set, text(&shard)),
                ];
                if let Some(expires_at) = record.expires_at {
                    fields.push(("expires_at", super::Edit::Set, super::Value::Time(expires_at)));
                }
                super::Change { condition, fields, removed: &super::LEGACY_SYNC_FIELDS }
            }
            SyncStep::GiveUp => {
                let mut fields = vec![("sync", super::Edit::Set, text(SyncState::GaveUp.as_str()))];
                let mut reasons = record.attention();
                reasons.push(super::Attention::SyncGaveUp);
                reasons.sort();
                reasons.dedup();
                fields.extend(super::attention::fields(&record.provider, &record.reference, &reasons, now));
                super::Change { condition, fields, removed: &GIVE_UP_REMOVED }
            }
        }
    }

    /// Ends the schedule of a record final at `status` that an index still lists.
    pub fn end_schedule(status: super::Status) -> super::Change {
        super::Change {
            condition: super::Condition::AtStatus(status),
            fields: Vec::new(),
            removed: &super::SYNC_FIELDS,
        }
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
        let asked = |seconds| SyncStep::Retry { state: SyncState::Scheduled, at: at(seconds), attempts: 0 };
        assert_eq!(policy.first(true, at(0), Some(at(-5))), asked(55), "expired a moment ago: asked after the margin");
        assert_eq!(policy.first(true, at(0), Some(at(-60))), expected, "long expired: the ladder");
        assert_eq!(policy.first(true, at(0), Some(at(60))), asked(120));
        assert_eq!(
            policy.first(true, at(0), Some(at(40 * 60))),
            asked(41 * 60),
            "an expiry within the hour is the first ask, not the 5-minute rung"
        );
        let far = OffsetDateTime::new_utc(time::Date::MAX, time::Time::MIDNIGHT);
        assert_eq!(policy.first(true, at(0), Some(far)), expected, "an expiry with no time after it");
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
        assert_eq!(step, SyncStep::Retry { state: SyncState::Scheduled, at: at(80), attempts: 4 });
        let week = GIVE_UP_AFTER.as_secs() as i64;
        let step = policy.next(&record, false, at(10));
        assert_eq!(step, SyncStep::Retry { state: SyncState::Unsupported, at: at(week), attempts: 0 });
        assert_eq!(policy.next(&record, false, at(week)), SyncStep::GiveUp);
    }

    #[test]
    fn a_charge_expiring_within_the_hour_is_asked_once_after_its_expiry() {
        let policy = SyncPolicy::default();
        let mut record = record(at(0), 0);
        record.expires_at = Some(at(3_600));
        let SyncStep::Retry { at: first, .. } = policy.first(true, at(0), record.expires_at) else {
            panic!("scheduled")
        };
        assert_eq!(first, at(3_660));
        // A day-long charge: the ladder until the expiry is the nearer ask.
        record.expires_at = Some(at(86_400));
        let mut now = at(300);
        let mut asks = vec![now];
        while let SyncStep::Retry { at: next, attempts, .. } = policy.next(&record, true, now) {
            if now > at(86_400) {
                break;
            }
            record.sync_attempts = attempts;
            now = next;
            asks.push(now);
        }
        let minutes: Vec<i64> = asks.iter().map(|t| (*t - at(0)).whole_minutes()).collect();
        assert_eq!(minutes[..5], [5, 20, 80, 440, 1441], "{minutes:?}");
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
