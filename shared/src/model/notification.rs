//! The notification lifecycle, in one place: a final transition marks the record pending
//! notification (in the same write), its terminal event is built from the record alone
//! (so every resend is byte-identical), a write that changes nothing sends the event again
//! while the record is still pending (an earlier send may have been lost), and the
//! notifier's outcome clears the marker. The pipeline, the reconciler and the notifier
//! use these; the store only translates them.

use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};
use time::OffsetDateTime;

use super::{Conflict, MismatchKind, Refund, RefundStatus, Status, TransactionRecord};

/// The record's field that holds the marker (and keys the sparse index of pending records).
pub(crate) const PENDING_FIELD: &str = "notification_pending";

/// Marker present while the final outcome has not yet been delivered to the merchant.
/// Shown as `PENDING`; stored as `PENDING#<shard>` ([`NotificationPending::marker`]), so
/// that it keys the sparse `PendingNotifications` index over
/// [`super::shard::PENDING_SHARDS`] partitions. Items written before the sharding hold
/// `PENDING` itself, which readers still query ([`NotificationPending::index_values`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub enum NotificationPending {
    #[serde(rename = "PENDING")]
    Pending,
}

/// The marker's value, and its sharded values' prefix.
const PENDING: &str = "PENDING";
/// The prefix of the marker once the event has reached the notifier and its delivery
/// failed: still pending (shown as `PENDING`), but in the queue's hands (retries, then the
/// dead-letter queue and its alarm), so the reconciler, which looks for events that never
/// reached the queue, no longer reads it.
const QUEUED: &str = "QUEUED";

impl NotificationPending {
    /// The stored marker of a transaction: `PENDING#<shard>` by its key.
    pub(crate) fn marker(provider: &str, reference: &str) -> String {
        super::shard::sharded(PENDING, &super::transaction_key(provider, reference), super::shard::PENDING_SHARDS)
    }

    /// The stored marker of a transaction whose event is in the queue's hands:
    /// `QUEUED#<shard>`, the same shard.
    pub fn queued_marker(provider: &str, reference: &str) -> String {
        super::shard::sharded(QUEUED, &super::transaction_key(provider, reference), super::shard::PENDING_SHARDS)
    }

    /// Every value the index's partition key takes for an event that has not reached the
    /// notifier: each shard's, then the unsharded one.
    pub fn index_values() -> Vec<String> {
        let mut values = super::shard::all(PENDING, super::shard::PENDING_SHARDS);
        values.push(PENDING.to_owned());
        values
    }

    /// Every value it takes for an event in the queue's hands.
    pub(crate) fn queued_index_values() -> Vec<String> {
        super::shard::all(QUEUED, super::shard::PENDING_SHARDS)
    }
}

impl<'de> Deserialize<'de> for NotificationPending {
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let text = String::deserialize(deserializer)?;
        let shard = |prefix: &str| text.strip_prefix(prefix).is_some_and(|rest| rest.starts_with('#'));
        match text == PENDING || shard(PENDING) || shard(QUEUED) {
            true => Ok(NotificationPending::Pending),
            false => Err(serde::de::Error::custom(format!("not a notification marker: {text:?}"))),
        }
    }
}

/// What became of a terminal event at the merchant; the notifier records it, which clears
/// the pending marker.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum NotificationOutcome {
    Delivered,
    /// Refused for good (410): the event is in the dead-letter queue.
    Refused,
}

impl NotificationOutcome {
    /// The record's field that holds when it happened.
    pub(crate) fn recorded_as(self) -> &'static str {
        match self {
            NotificationOutcome::Delivered => "notified_at",
            NotificationOutcome::Refused => "notification_refused_at",
        }
    }
}

/// What `requeue_failed(false)` removes.
const REQUEUE_FAILED: &str = "requeue_failed";

impl super::Change {
    /// What became of `status`'s terminal event at the merchant (`outcome`, at `now`):
    /// the marker removed and the time set, while the record is at that status and
    /// pending; a redelivered message finds it cleared and changes nothing. A refusal puts
    /// the transaction in the `Attention` index, in the same write.
    pub fn notified(
        provider: &str,
        reference: &str,
        status: Status,
        outcome: NotificationOutcome,
        now: OffsetDateTime,
    ) -> super::Change {
        let mut fields = vec![(outcome.recorded_as(), super::Edit::Set, super::Value::Time(now))];
        if outcome == NotificationOutcome::Refused {
            let reasons = [super::Attention::MerchantRefused];
            fields.extend(super::attention::fields(provider, reference, &reasons, now));
        }
        super::Change { condition: super::Condition::NotificationPending(status), fields, removed: &[PENDING_FIELD] }
    }

    /// `status`'s pending notification handed to the queue (a delivery failed: SQS
    /// retries it): the marker becomes `QUEUED#<shard>`, once.
    pub fn queued(provider: &str, reference: &str, status: Status) -> super::Change {
        let marker = NotificationPending::queued_marker(provider, reference);
        super::Change {
            condition: super::Condition::NotYetQueued(status),
            fields: vec![(PENDING_FIELD, super::Edit::Set, super::Value::Text(marker))],
            removed: &[],
        }
    }

    /// Events of a final record at `status` whose send failed where no provider retries
    /// (the status sync's batch: an amount mismatch, a refund): the record marked pending
    /// again and its send failed, so that the reconciler's next run sends its events again
    /// ([`MerchantEvent::for_reconciler`]), under the same ids.
    pub fn unsent(provider: &str, reference: &str, status: Status) -> super::Change {
        let marker = NotificationPending::marker(provider, reference);
        super::Change {
            condition: super::Condition::AtStatus(status),
            fields: vec![
                (PENDING_FIELD, super::Edit::Set, super::Value::Text(marker)),
                (REQUEUE_FAILED, super::Edit::Set, super::Value::Flag(true)),
            ],
            removed: &[],
        }
    }

    /// Whether the reconciler's last send of a pending record's event failed (so that it
    /// is sent again on its next run).
    pub(crate) fn requeue_failed(failed: bool) -> super::Change {
        let condition = super::Condition::AnyNotificationPending;
        match failed {
            true => super::Change {
                condition,
                fields: vec![(REQUEUE_FAILED, super::Edit::Set, super::Value::Flag(true))],
                removed: &[],
            },
            false => super::Change { condition, fields: Vec::new(), removed: &[REQUEUE_FAILED] },
        }
    }
}

/// The prefix of every marker of an event not yet in the queue's hands.
pub(crate) const UNQUEUED_PREFIX: &str = PENDING;

/// The terminal event to send after a write: the record's event when the write applied a
/// final status, or, when the write changed nothing, again while the record is still
/// pending notification (an earlier send may have been lost; SQS and the merchant
/// deduplicate by id). `None` otherwise.
pub(crate) fn to_send(applied: bool, record: &TransactionRecord) -> Option<MerchantEvent> {
    if applied || record.is_notification_pending() {
        MerchantEvent::for_record(record)
    } else {
        None
    }
}

/// The deterministic id of the terminal event of a transaction: the same
/// (provider, reference, final status) always gives the same id, so every retry
/// is deduplicated by SQS and by the merchant.
pub fn event_id(provider: &str, reference: &str, status: Status) -> String {
    hashed_id(&[provider, reference, status.as_str()])
}

/// The deterministic id of the progress event for `status` (non-final): one per
/// (provider, reference, status), so a resend is deduplicated like any event.
pub fn updated_event_id(provider: &str, reference: &str, status: Status) -> String {
    hashed_id(&[provider, reference, "updated", status.as_str()])
}

/// The deterministic id of the conflict event for `status` reported after a transaction's
/// final status: one per (provider, reference, conflicting status).
pub fn conflict_event_id(provider: &str, reference: &str, status: Status) -> String {
    hashed_id(&[provider, reference, "conflict", status.as_str()])
}

/// The deterministic id of the amount-mismatch event of a transaction: one per
/// (provider, reference, kind), so the same mismatch is told once however often it is
/// seen again, and a new kind (an under-payment reported later) is told too.
pub fn mismatch_event_id(provider: &str, reference: &str, kind: MismatchKind) -> String {
    hashed_id(&[provider, reference, "amount_mismatch", kind.as_str()])
}

/// The deterministic id of a refund's event: one per (provider, reference, refund id,
/// refund status).
pub fn refund_event_id(provider: &str, reference: &str, refund: &str, status: RefundStatus) -> String {
    hashed_id(&[provider, reference, "refund", refund, status.as_str()])
}

/// What an event for the merchant says: its `type`, as sent, logged and listed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum EventType {
    /// The transaction reached `completed`.
    #[serde(rename = "transaction.completed")]
    Completed,
    /// The transaction reached `failed`.
    #[serde(rename = "transaction.failed")]
    Failed,
    /// The transaction reached `canceled`.
    #[serde(rename = "transaction.canceled")]
    Canceled,
    /// The transaction reached `expired`.
    #[serde(rename = "transaction.expired")]
    Expired,
    /// A final status contradicted the stored one.
    #[serde(rename = "transaction.conflict")]
    Conflict,
    /// An applied non-final transition (opt-in).
    #[serde(rename = "transaction.updated")]
    Updated,
    /// The amount paid differs from the amount expected, or could not be read.
    #[serde(rename = "transaction.amount_mismatch")]
    AmountMismatch,
    /// A refund of the transaction changed status.
    #[serde(rename = "transaction.refund_updated")]
    RefundUpdated,
}

impl EventType {
    /// Every event type, in the order `NOTIFY_EVENT_TYPES` is documented.
    pub const ALL: [EventType; 8] = [
        EventType::Completed,
        EventType::Failed,
        EventType::Canceled,
        EventType::Expired,
        EventType::Conflict,
        EventType::Updated,
        EventType::AmountMismatch,
        EventType::RefundUpdated,
    ];

    /// The type as sent (`transaction.completed`…).
    pub fn as_str(self) -> &'static str {
        match self {
            EventType::Completed => "transaction.completed",
            EventType::Failed => "transaction.failed",
            EventType::Canceled => "transaction.canceled",
            EventType::Expired => "transaction.expired",
            EventType::Conflict => "transaction.conflict",
            EventType::Updated => "transaction.updated",
            EventType::AmountMismatch => "transaction.amount_mismatch",
            EventType::RefundUpdated => "transaction.refund_updated",
        }
    }

    /// The outcome event of a final status; `None` for a status that is not final.
    pub fn outcome(status: Status) -> Option<Self> {
        match status {
            Status::Completed => Some(EventType::Completed),
            Status::Failed => Some(EventType::Failed),
            Status::Canceled => Some(EventType::Canceled),
            Status::Expired => Some(EventType::Expired),
            Status::Created | Status::Pending | Status::Processing | Status::Canceling => None,
        }
    }

    fn bit(self) -> u8 {
        1 << (self as u8)
    }
}

impl std::fmt::Display for EventType {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

impl std::str::FromStr for EventType {
    type Err = UnknownEventType;

    fn from_str(text: &str) -> Result<Self, UnknownEventType> {
        EventType::ALL.into_iter().find(|t| t.as_str() == text).ok_or_else(|| UnknownEventType(text.to_owned()))
    }
}

/// The event types the merchant receives (`NOTIFY_EVENT_TYPES`). Events of other types
/// are neither queued nor stored; a final status whose type is off is not marked pending.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct EventTypes(u8);

impl Default for EventTypes {
    /// Every type but `transaction.updated`.
    fn default() -> Self {
        EventType::ALL.into_iter().filter(|t| *t != EventType::Updated).collect()
    }
}

impl FromIterator<EventType> for EventTypes {
    fn from_iter<I: IntoIterator<Item = EventType>>(types: I) -> Self {
        EventTypes(types.into_iter().fold(0, |set, t| set | t.bit()))
    }
}

/// A `NOTIFY_EVENT_TYPES` entry that is no event type.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("unknown event type {0:?} (known: transaction.completed, .failed, .canceled, .expired, .conflict, .updated, .amount_mismatch, .refund_updated)")]
pub struct UnknownEventType(pub String);

impl EventTypes {
    /// A comma list of event types; blanks around entries are ignored.
    pub fn parse(list: &str) -> Result<Self, UnknownEventType> {
        list.split(',').map(str::trim).filter(|e| !e.is_empty()).map(str::parse).collect()
    }

    /// Whether events of type `kind` are sent.
    pub fn enabled(&self, kind: EventType) -> bool {
        self.0 & kind.bit() != 0
    }

    /// Whether reaching `status` (final) is notified.
    pub(crate) fn notifies(&self, status: Status) -> bool {
        EventType::outcome(status).is_some_and(|kind| self.enabled(kind))
    }
}

fn hashed_id(parts: &[&str]) -> String {
    let mut hash = Sha256::new();
    for part in parts {
        hash.update((part.len() as u64).to_be_bytes());
        hash.update(part.as_bytes());
    }
    let digest = hash.finalize();
    format!("evt_{}", hex::encode(digest.get(..16).unwrap_or_default()))
}

/// An event for the merchant, as queued, logged and delivered: a transaction's outcome
/// (a final status), its progress (`transaction.updated`) or a conflict.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct MerchantEvent {
    pub id: String,
    #[serde(rename = "type")]
    pub kind: EventType,
    #[serde(with = "time::serde::rfc3339")]
    pub created_at: OffsetDateTime,
    pub data: TransactionRecord,
}

impl MerchantEvent {
    /// The terminal event of a final record, or `None` if the record is not final.
    /// Every field derives from the stored record, so a resend is byte-identical.
    pub fn for_record(record: &TransactionRecord) -> Option<Self> {
        if !record.status.is_final() {
            return None;
        }
        Some(MerchantEvent {
            id: event_id(&record.provider, &record.reference, record.status),
            kind: EventType::outcome(record.status)?,
            created_at: record.final_at.unwrap_or(record.updated_at),
            data: record.clone(),
        })
    }

    /// The progress event of a non-final record (`transaction.updated`); `None` if final.
    pub fn for_update(record: &TransactionRecord) -> Option<Self> {
        if record.status.is_final() {
            return None;
        }
        Some(MerchantEvent {
            id: updated_event_id(&record.provider, &record.reference, record.status),
            kind: EventType::Updated,
            created_at: record.updated_at,
            data: record.clone(),
        })
    }

    /// The conflict event for `conflict`, kept on `record` (whose status is the stored final).
    pub(crate) fn for_conflict(record: &TransactionRecord, conflict: &Conflict) -> Self {
        MerchantEvent {
            id: conflict_event_id(&record.provider, &record.reference, conflict.status),
            kind: EventType::Conflict,
            created_at: conflict.received_at,
            data: record.clone(),
        }
    }

    /// The amount-mismatch event of a final record that has one ([`super::AmountMismatch`]);
    /// `None` otherwise. It is dated when the mismatch became known: the final status, or a
    /// later word of the provider's reporting an under-payment.
    pub fn for_mismatch(record: &TransactionRecord) -> Option<Self> {
        let mismatch = record.amount_mismatch.as_ref().filter(|_| record.status.is_final())?;
        let final_at = record.final_at.unwrap_or(record.updated_at);
        let known_at = match (mismatch.kind, record.underpaid_reported_at) {
            (MismatchKind::Underpaid, Some(reported)) => reported.max(final_at),
            _ => final_at,
        };
        Some(MerchantEvent {
            id: mismatch_event_id(&record.provider, &record.reference, mismatch.kind),
            kind: EventType::AmountMismatch,
            created_at: known_at,
            data: record.clone(),
        })
    }

    /// The event of `refund`, as `record` shows it: dated when its status was first heard.
    pub fn for_refund(record: &TransactionRecord, refund: &Refund) -> Self {
        MerchantEvent {
            id: refund_event_id(&record.provider, &record.reference, &refund.id, refund.status),
            kind: EventType::RefundUpdated,
            created_at: refund.updated_at,
            data: record.clone(),
        }
    }

    /// The events the reconciler sends again for a final record still pending notification:
    /// its outcome, then what the record shows besides (its amount mismatch, each refund),
    /// each under its own deterministic id, of the types `events` enables. Whatever of them
    /// the merchant has already, it has under the same ids.
    pub fn for_reconciler(record: &TransactionRecord, events: EventTypes) -> Vec<Self> {
        let outcome = MerchantEvent::for_record(record);
        let mismatch = MerchantEvent::for_mismatch(record);
        let refunds = record.refunds.iter().map(|refund| MerchantEvent::for_refund(record, refund));
        outcome.into_iter().chain(mismatch).chain(refunds).filter(|e| events.enabled(e.kind)).collect()
    }

    /// The final status whose notification this event is (its delivery clears the
    /// record's pending marker); `None` for a conflict event.
    pub fn outcome(&self) -> Option<Status> {
        let status = self.data.status;
        (EventType::outcome(status) == Some(self.kind)).then_some(status)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn event_id_is_deterministic_and_distinguishes_its_inputs() {
        let a = event_id("azqr", "123456789012", Status::Completed);
        assert_eq!(a, event_id("azqr", "123456789012", Status::Completed));
        assert!(a.starts_with("evt_") && a.len() == 36);
        assert_ne!(a, event_id("azqr", "123456789012", Status::Failed));
        assert_ne!(a, event_id("azqr", "123456789013", Status::Completed));
        assert_ne!(a, event_id("pay3", "123456789012", Status::Completed));
        // Length-prefixed parts: moving a boundary changes the id.
        assert_ne!(event_id("ab", "c", Status::Completed), event_id("a", "bc", Status::Completed));
    }

    #[test]
    fn event_types_parse_from_a_comma_list() {
        let default = EventTypes::default();
        assert!(default.notifies(Status::Completed) && default.enabled(EventType::Conflict));
        assert!(!default.enabled(EventType::Updated) && !default.notifies(Status::Pending));
        let listed: Vec<&str> = EventType::ALL.iter().map(|t| t.as_str()).collect();
        let all = EventTypes::parse(&listed.join(" , ")).expect("all");
        assert!(EventType::ALL.iter().all(|t| all.enabled(*t)));
        let some = EventTypes::parse("transaction.completed,transaction.updated,").expect("some");
        assert!(
            some.notifies(Status::Completed) && !some.notifies(Status::Expired) && some.enabled(EventType::Updated)
        );
        assert_eq!(EventTypes::parse("transaction.paid"), Err(UnknownEventType("transaction.paid".into())));
        assert!(!some.enabled(EventType::Conflict), "not listed");
        assert_eq!("transaction.updated".parse(), Ok(EventType::Updated));
        assert!(EventType::ALL.iter().all(|t| t.as_str().parse() == Ok(*t)));
    }

    #[test]
    fn a_final_with_a_mismatch_has_an_event_of_its_kind_dated_when_it_became_known() {
        let at = OffsetDateTime::from_unix_timestamp(1_795_000_000).expect("time");
        let mut record = crate::model::tests::record("pay3", "o:CRYPTO", Status::Processing, at);
        record.underpaid_reported_at = Some(at);
        assert_eq!(MerchantEvent::for_mismatch(&record.clone().derive()), None, "not final yet");
        record.status = Status::Completed;
        record.final_at = Some(at + time::Duration::seconds(5));
        let event = MerchantEvent::for_mismatch(&record.clone().derive()).expect("underpaid");
        assert_eq!(event.id, mismatch_event_id("pay3", "o:CRYPTO", MismatchKind::Underpaid));
        assert_eq!((event.kind, event.created_at), (EventType::AmountMismatch, at + time::Duration::seconds(5)));
        assert_eq!(event.outcome(), None, "no outcome: its delivery clears no marker");
        record.underpaid_reported_at = Some(at + time::Duration::seconds(60));
        let later = MerchantEvent::for_mismatch(&record.clone().derive()).expect("underpaid");
        assert_eq!((later.id, later.created_at), (event.id, at + time::Duration::seconds(60)), "said after the final");
        record.underpaid_reported_at = None;
        assert_eq!(MerchantEvent::for_mismatch(&record.derive()), None, "nothing differs");
        assert_ne!(
            mismatch_event_id("pay3", "o:CRYPTO", MismatchKind::Underpaid),
            mismatch_event_id("pay3", "o:CRYPTO", MismatchKind::Overpaid)
        );
    }

    #[test]
    fn sent_on_the_final_transition_and_again_while_pending() {
        let at = OffsetDateTime::from_unix_timestamp(1_795_000_000).expect("time");
        let mut record = crate::model::tests::record("azqr", "100000000006", Status::Processing, at);
        record.provider_status = "paid".into();
        assert_eq!(to_send(true, &record), None, "not final");
        record.status = Status::Completed;
        record.final_at = Some(at);
        record.notification_pending = Some(NotificationPending::Pending);
        let event = to_send(true, &record).expect("final transition");
        assert_eq!(event.id, event_id("azqr", "100000000006", Status::Completed));
        assert_eq!(event.kind, EventType::Completed);
        assert_eq!(to_send(false, &record).as_ref(), Some(&event), "still pending: the same event again");
        record.notification_pending = None;
        assert_eq!(to_send(false, &record), None, "delivered: nothing more");
        assert_eq!(event.outcome(), Some(Status::Completed));
        let conflict = Conflict { provider_status: "expired".into(), status: Status::Expired, received_at: at };
        let conflict_event = MerchantEvent::for_conflict(&record, &conflict);
        assert_eq!(conflict_event.kind, EventType::Conflict);
        assert_eq!(conflict_event.outcome(), None, "a conflict event is no outcome");
        assert_ne!(conflict_event.id, event.id);
        assert_ne!(conflict_event.id, event_id("azqr", "100000000006", Status::Expired));
        assert_eq!(conflict_event.id, conflict_event_id("azqr", "100000000006", Status::Expired));
    }
}
