//! What needs a human: a transaction the pipeline applied as the provider said, but that a
//! person should look at. Each reason is worked out from the record; a write that gives a
//! record a reason the sparse `Attention` index does not hold it for yet puts it there
//! (`attention_shard`, one of [`shard::ATTENTION_SHARDS`] by the transaction's key, and
//! `attention_at`, the time and the key), so `GET /transactions?attention=true` lists them
//! newest first without a scan.

use serde::{Deserialize, Serialize};
use time::OffsetDateTime;

use super::{shard, transaction_key, Change, Condition, Edit, RefundStatus, SyncState, TransactionRecord, Value};

/// Why a transaction needs a human.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Attention {
    /// The provider reported a final status contradicting the stored final one.
    Conflict,
    /// The final amount differs from the one expected, could not be read, was not
    /// reported, or was reported short.
    AmountMismatch,
    /// A refund failed at the provider.
    RefundFailed,
    /// The status sync gave up: no final status after seven days unchanged.
    SyncGaveUp,
    /// The merchant refused the outcome's event for good (410).
    MerchantRefused,
}

impl Attention {
    pub const ALL: [Attention; 5] = [
        Attention::Conflict,
        Attention::AmountMismatch,
        Attention::RefundFailed,
        Attention::SyncGaveUp,
        Attention::MerchantRefused,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            Attention::Conflict => "conflict",
            Attention::AmountMismatch => "amount_mismatch",
            Attention::RefundFailed => "refund_failed",
            Attention::SyncGaveUp => "sync_gave_up",
            Attention::MerchantRefused => "merchant_refused",
        }
    }
}

/// The stored partition key of the `Attention` index: `attention#<shard>`.
pub const ATTENTION_SHARD: &str = "attention_shard";
/// The stored sort key of the `Attention` index: when the latest reason was flagged (in
/// nanoseconds, zero-padded so the text sorts as the time) and the transaction's key, so
/// that every value is distinct and a page's last one is its cursor.
pub const ATTENTION_AT: &str = "attention_at";
/// The reasons the index holds the transaction for (a set of texts).
pub(crate) const ATTENTION_REASONS: &str = "attention_reasons";

/// The `attention_at` of the transaction `key` flagged at `now`.
pub(crate) fn attention_at(now: OffsetDateTime, key: &str) -> String {
    format!("{:020}#{key}", now.unix_timestamp_nanos().max(0))
}

/// Whether `text` is an `attention_at` (a cursor a client may send back).
pub fn is_attention_cursor(text: &str) -> bool {
    text.split_once('#').is_some_and(|(nanos, key)| {
        nanos.len() == 20 && nanos.bytes().all(|b| b.is_ascii_digit()) && key.contains('#') && key.len() <= 300
    })
}

/// When the reason was flagged, read from an `attention_at`.
pub fn flagged_at(attention_at: &str) -> Option<OffsetDateTime> {
    let nanos: i128 = attention_at.split_once('#')?.0.parse().ok()?;
    OffsetDateTime::from_unix_timestamp_nanos(nanos).ok()
}

/// The fields that put the transaction in the index for `reasons` at `now`.
pub(crate) fn fields(
    provider: &str,
    reference: &str,
    reasons: &[Attention],
    now: OffsetDateTime,
) -> Vec<(&'static str, Edit, Value)> {
    let key = transaction_key(provider, reference);
    vec![
        (ATTENTION_SHARD, Edit::Set, Value::Text(shard::sharded("attention", &key, shard::ATTENTION_SHARDS))),
        (ATTENTION_AT, Edit::Set, Value::Text(attention_at(now, &key))),
        (ATTENTION_REASONS, Edit::AddToSet, Value::Texts(reasons.iter().map(|r| r.as_str().to_owned()).collect())),
    ]
}

impl TransactionRecord {
    /// Why the transaction needs a human, worked out from the record (read through the
    /// store, so that `amount_mismatch` is derived).
    pub fn attention(&self) -> Vec<Attention> {
        Attention::ALL
            .into_iter()
            .filter(|reason| match reason {
                Attention::Conflict => !self.conflicts.is_empty(),
                Attention::AmountMismatch => self.status.is_final() && self.amount_mismatch.is_some(),
                Attention::RefundFailed => self.refunds.iter().any(|r| r.status == RefundStatus::Failed),
                Attention::SyncGaveUp => self.sync == Some(SyncState::GaveUp),
                Attention::MerchantRefused => self.notification_refused_at.is_some(),
            })
            .collect()
    }

    /// The reasons the `Attention` index does not hold the transaction for yet.
    pub fn attention_unflagged(&self) -> Vec<Attention> {
        self.attention().into_iter().filter(|r| !self.attention_reasons.iter().any(|s| s == r.as_str())).collect()
    }
}

impl Change {
    /// What puts `record` in the `Attention` index for the reasons it has and the index
    /// does not hold yet, at `now`; `None` when there is none. Only while the record is at
    /// the status read: a write that moved it meanwhile returns the record it made, and
    /// whoever made it flags that.
    pub fn attention(record: &TransactionRecord, now: OffsetDateTime) -> Option<Change> {
        let reasons = record.attention_unflagged();
        if reasons.is_empty() {
            return None;
        }
        let mut all = record.attention();
        all.retain(|r| reasons.contains(r) || record.attention_reasons.iter().any(|s| s == r.as_str()));
        Some(Change {
            condition: Condition::AtStatus(record.status),
            fields: fields(&record.provider, &record.reference, &all, now),
            removed: &[],
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::{Conflict, Status};

    #[test]
    fn a_conflict_is_flagged_once_and_the_cursor_is_checked() {
        let at = OffsetDateTime::from_unix_timestamp(1_796_040_000).unwrap();
        let mut record = crate::model::tests::record("azqr", "123456789012", Status::Completed, at);
        assert_eq!(record.attention(), Vec::<Attention>::new());
        assert_eq!(Change::attention(&record, at), None, "nothing to flag");
        record.conflicts.push(Conflict { provider_status: "FAILED".into(), status: Status::Failed, received_at: at });
        let change = Change::attention(&record, at).expect("a conflict is flagged");
        assert_eq!(change.condition, Condition::AtStatus(Status::Completed));
        let cursor = change
            .fields
            .iter()
            .find_map(|(name, _, value)| match (name, value) {
                (&ATTENTION_AT, Value::Text(text)) => Some(text.clone()),
                _ => None,
            })
            .expect("attention_at");
        assert!(is_attention_cursor(&cursor), "{cursor}");
        assert_eq!(flagged_at(&cursor), Some(at));
        assert!(!is_attention_cursor("00000000000000000001#nokey") && !is_attention_cursor("1#azqr#1"));
        record.attention_reasons = vec!["conflict".into()];
        assert_eq!(Change::attention(&record, at), None, "already flagged for it");
        record.sync = Some(SyncState::GaveUp);
        let change = Change::attention(&record, at).expect("a new reason");
        let reasons = change.fields.iter().find_map(|(name, _, value)| match (name, value) {
            (&ATTENTION_REASONS, Value::Texts(texts)) => Some(texts.clone()),
            _ => None,
        });
        assert_eq!(reasons, Some(vec!["conflict".to_owned(), "sync_gave_up".to_owned()]));
    }
}
