//! The canonical transaction model: statuses, the transition rule, the stored record
//! and the terminal event sent to the merchant.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};
use time::OffsetDateTime;

pub mod notification;

pub use notification::{event_id, NotificationPending, TerminalEvent};

/// Canonical status of a transaction. The first four are in progress and ordered;
/// the last four are final outcomes that nothing changes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Status {
    Created,
    Pending,
    Processing,
    Canceling,
    Completed,
    Failed,
    Canceled,
    Expired,
}

/// Every final status shares this rank, above every in-progress status. The stored
/// `rank` attribute lets DynamoDB evaluate the transition rule in one condition:
/// a transition applies exactly when `current rank < new rank`.
pub const FINAL_RANK: u8 = 4;

impl Status {
    pub const ALL: [Status; 8] = [
        Status::Created,
        Status::Pending,
        Status::Processing,
        Status::Canceling,
        Status::Completed,
        Status::Failed,
        Status::Canceled,
        Status::Expired,
    ];

    pub fn rank(self) -> u8 {
        match self {
            Status::Created => 0,
            Status::Pending => 1,
            Status::Processing => 2,
            Status::Canceling => 3,
            Status::Completed | Status::Failed | Status::Canceled | Status::Expired => FINAL_RANK,
        }
    }

    pub fn is_final(self) -> bool {
        self.rank() == FINAL_RANK
    }

    pub fn as_str(self) -> &'static str {
        match self {
            Status::Created => "created",
            Status::Pending => "pending",
            Status::Processing => "processing",
            Status::Canceling => "canceling",
            Status::Completed => "completed",
            Status::Failed => "failed",
            Status::Canceled => "canceled",
            Status::Expired => "expired",
        }
    }
}

impl std::fmt::Display for Status {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// What an incoming status does to a transaction whose current status is `current`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Decision {
    /// The transition is applied.
    Apply,
    /// The same status again: nothing changes, acknowledged.
    Duplicate,
    /// A lower status, or anything after a final status other than a different final one.
    Stale,
    /// A final status after a different final status: not applied, logged as an error.
    Conflict,
}

/// Why an observation changed nothing.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Skip {
    Duplicate,
    Stale,
    Conflict,
}

impl Skip {
    /// Why `new` does not apply to a record at `current`, given that it does not (`new`
    /// ranks no higher than `current`): total, so a failed condition in the store always
    /// has its reason.
    pub fn of(current: Status, new: Status) -> Skip {
        if current == new {
            Skip::Duplicate
        } else if current.is_final() && new.is_final() {
            Skip::Conflict
        } else {
            Skip::Stale
        }
    }
}

impl From<Skip> for Decision {
    fn from(skip: Skip) -> Self {
        match skip {
            Skip::Duplicate => Decision::Duplicate,
            Skip::Stale => Decision::Stale,
            Skip::Conflict => Decision::Conflict,
        }
    }
}

/// Whether `new` applies to a record at `current` (none: no record yet). This is the
/// condition of the store's one write: `attribute_not_exists(pk) OR rank < :rank`.
pub fn applies(current: Option<Status>, new: Status) -> bool {
    current.is_none_or(|current| current.rank() < new.rank())
}

/// The transition rule: [`applies`], and otherwise why not ([`Skip::of`]).
pub fn decide(current: Option<Status>, new: Status) -> Decision {
    match current {
        Some(current) if !applies(Some(current), new) => Skip::of(current, new).into(),
        Some(_) | None => Decision::Apply,
    }
}

/// A text that is not an amount: a non-negative decimal number of at most 20 digits on
/// each side of the point.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("must be a non-negative decimal number")]
pub struct InvalidAmount;

/// A money amount as the provider wrote it: a non-negative decimal string, never a float.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub struct Amount(String);

impl Amount {
    pub fn parse(value: &str) -> Result<Self, InvalidAmount> {
        let (int, frac) = value.split_once('.').unwrap_or((value, "0"));
        let digits = |s: &str| !s.is_empty() && s.len() <= 20 && s.bytes().all(|b| b.is_ascii_digit());
        if digits(int) && digits(frac) {
            Ok(Amount(value.to_owned()))
        } else {
            Err(InvalidAmount)
        }
    }

    /// From a JSON value as the provider wrote it, a number (`150.00`) or a numeric
    /// string (`"150.00"`), keeping the text exactly (no float round trip).
    pub fn from_json(raw: &serde_json::value::RawValue) -> Result<Self, InvalidAmount> {
        let text = raw.get();
        Amount::parse(text.strip_prefix('"').and_then(|t| t.strip_suffix('"')).unwrap_or(text))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl TryFrom<String> for Amount {
    type Error = InvalidAmount;
    fn try_from(value: String) -> Result<Self, Self::Error> {
        Amount::parse(&value)
    }
}

impl From<Amount> for String {
    fn from(value: Amount) -> Self {
        value.0
    }
}

/// What a verified webhook says about one transaction, in canonical terms.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Observation {
    pub reference: String,
    pub status: Status,
    /// The provider's own status word, kept verbatim for the record.
    pub provider_status: String,
    pub amount: Option<Amount>,
    pub currency: Option<String>,
    pub reason: Option<String>,
    /// Provider facts worth keeping that the model has no field for (e.g. a merchant code).
    pub details: BTreeMap<String, String>,
}

/// Longest failure reason kept from a provider.
pub const MAX_REASON_CHARS: usize = 500;

impl Observation {
    /// Sets the failure reason from the provider's text: at most [`MAX_REASON_CHARS`]
    /// characters, none if it is blank.
    pub fn set_reason(&mut self, text: Option<String>) {
        self.reason =
            text.map(|t| t.chars().take(MAX_REASON_CHARS).collect()).filter(|t: &String| !t.trim().is_empty());
    }

    pub fn new(reference: impl Into<String>, status: Status, provider_status: impl Into<String>) -> Self {
        Observation {
            reference: reference.into(),
            status,
            provider_status: provider_status.into(),
            amount: None,
            currency: None,
            reason: None,
            details: BTreeMap::new(),
        }
    }
}

/// One applied transition.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct HistoryEntry {
    pub status: Status,
    pub provider_status: String,
    #[serde(with = "time::serde::rfc3339")]
    pub received_at: OffsetDateTime,
}

/// The stored transaction, also the `data` of a terminal event.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct TransactionRecord {
    pub provider: String,
    pub reference: String,
    pub status: Status,
    pub provider_status: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub amount: Option<Amount>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub currency: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub details: BTreeMap<String, String>,
    pub history: Vec<HistoryEntry>,
    #[serde(with = "time::serde::rfc3339")]
    pub first_seen_at: OffsetDateTime,
    #[serde(with = "time::serde::rfc3339")]
    pub updated_at: OffsetDateTime,
    #[serde(default, with = "time::serde::rfc3339::option", skip_serializing_if = "Option::is_none")]
    pub final_at: Option<OffsetDateTime>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub notification_pending: Option<NotificationPending>,
    #[serde(default, with = "time::serde::rfc3339::option", skip_serializing_if = "Option::is_none")]
    pub notified_at: Option<OffsetDateTime>,
    /// Set when the merchant refused the event for good (410); the event is in the dead-letter queue.
    #[serde(default, with = "time::serde::rfc3339::option", skip_serializing_if = "Option::is_none")]
    pub notification_refused_at: Option<OffsetDateTime>,
}

impl TransactionRecord {
    pub fn is_notification_pending(&self) -> bool {
        self.notification_pending.is_some()
    }
}

/// The key of a transaction: one per (provider, reference).
pub fn transaction_key(provider: &str, reference: &str) -> String {
    format!("{provider}#{reference}")
}

/// A field's new value, in the model's terms; the store writes each as its attribute type.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Value {
    Text(String),
    Number(u8),
    Time(OffsetDateTime),
    History(HistoryEntry),
    Details(BTreeMap<String, String>),
    Pending(NotificationPending),
}

/// How a field changes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Edit {
    Set,
    /// Only when the record does not have the field yet.
    SetIfAbsent,
    /// Appended to the list (created empty when absent).
    Append,
}

/// What a record becomes when an observation applies: every field it sets, keeps or
/// appends to. The store translates this into its one conditional write, applied only
/// where [`applies`] holds for `rank`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Change {
    /// The rank the record must stay below for the change to apply.
    pub rank: u8,
    pub fields: Vec<(&'static str, Edit, Value)>,
}

impl Change {
    /// What `observation`, received at `now`, makes of `provider`'s record. A final status
    /// also sets `final_at` and the notification-pending marker, in the same write.
    pub fn of(provider: &str, observation: &Observation, now: OffsetDateTime) -> Change {
        let status = observation.status;
        let text = |value: &str| Value::Text(value.to_owned());
        let mut fields = Vec::with_capacity(14);
        fields.push(("provider", Edit::Set, text(provider)));
        fields.push(("reference", Edit::Set, text(&observation.reference)));
        fields.push(("status", Edit::Set, text(status.as_str())));
        fields.push(("provider_status", Edit::Set, text(&observation.provider_status)));
        fields.push(("rank", Edit::Set, Value::Number(status.rank())));
        fields.push(("updated_at", Edit::Set, Value::Time(now)));
        fields.push(("first_seen_at", Edit::SetIfAbsent, Value::Time(now)));
        let entry = HistoryEntry { status, provider_status: observation.provider_status.clone(), received_at: now };
        fields.push(("history", Edit::Append, Value::History(entry)));
        if let Some(amount) = &observation.amount {
            fields.push(("amount", Edit::Set, text(amount.as_str())));
        }
        if let Some(currency) = &observation.currency {
            fields.push(("currency", Edit::Set, text(currency)));
        }
        if let Some(reason) = &observation.reason {
            fields.push(("reason", Edit::Set, text(reason)));
        }
        if !observation.details.is_empty() {
            fields.push(("details", Edit::Set, Value::Details(observation.details.clone())));
        }
        if status.is_final() {
            fields.push(("final_at", Edit::Set, Value::Time(now)));
            fields.push((notification::PENDING_FIELD, Edit::Set, Value::Pending(NotificationPending::Pending)));
        }
        Change { rank: status.rank(), fields }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ranks_order_in_progress_statuses_and_put_finals_on_top() {
        let ranks: Vec<u8> = Status::ALL.iter().map(|s| s.rank()).collect();
        assert_eq!(ranks, [0, 1, 2, 3, 4, 4, 4, 4]);
        let finals: Vec<Status> = Status::ALL.into_iter().filter(|s| s.is_final()).collect();
        assert_eq!(finals, [Status::Completed, Status::Failed, Status::Canceled, Status::Expired]);
    }

    /// The rule from the spec, stated directly, checked against `decide` for every pair.
    #[test]
    fn transition_rule_for_every_pair_of_statuses() {
        for current in Status::ALL {
            for new in Status::ALL {
                let expected = if current == new {
                    Decision::Duplicate
                } else if current.is_final() && new.is_final() {
                    Decision::Conflict
                } else if !current.is_final() && (new.is_final() || new.rank() > current.rank()) {
                    Decision::Apply
                } else {
                    Decision::Stale
                };
                assert_eq!(decide(Some(current), new), expected, "{current} -> {new}");
                // The storage condition (`rank < new rank`) applies exactly the same transitions.
                assert_eq!(applies(Some(current), new), expected == Decision::Apply, "{current} -> {new}");
                assert_eq!(
                    current.rank() < new.rank(),
                    expected == Decision::Apply,
                    "condition disagrees for {current} -> {new}"
                );
            }
            assert_eq!(decide(None, current), Decision::Apply);
        }
    }

    #[test]
    fn some_named_transitions() {
        use Status::*;
        assert_eq!(decide(Some(Pending), Processing), Decision::Apply);
        assert_eq!(decide(Some(Canceling), Completed), Decision::Apply);
        assert_eq!(decide(Some(Processing), Pending), Decision::Stale);
        assert_eq!(decide(Some(Completed), Pending), Decision::Stale);
        assert_eq!(decide(Some(Completed), Completed), Decision::Duplicate);
        assert_eq!(decide(Some(Completed), Failed), Decision::Conflict);
    }

    #[test]
    fn reasons_are_bounded_and_never_blank() {
        let mut observation = Observation::new("r", Status::Failed, "x");
        observation.set_reason(Some("AM04 InsufficientFunds".into()));
        assert_eq!(observation.reason.as_deref(), Some("AM04 InsufficientFunds"));
        observation.set_reason(Some("é".repeat(MAX_REASON_CHARS + 10)));
        assert_eq!(observation.reason.as_ref().map(|r| r.chars().count()), Some(MAX_REASON_CHARS));
        observation.set_reason(Some("   ".into()));
        assert_eq!(observation.reason, None);
    }

    #[test]
    fn amounts_are_decimal_strings() {
        assert_eq!(Amount::parse("100.00").map(|a| a.as_str().to_owned()).ok().as_deref(), Some("100.00"));
        assert!(Amount::parse("7").is_ok());
        for bad in ["", "-1", "1e3", "1.", ".5", "1,00", "NaN", "1.2.3"] {
            assert!(Amount::parse(bad).is_err(), "{bad:?} accepted");
        }
        let raw = |text: &str| serde_json::value::RawValue::from_string(text.to_owned()).expect("raw JSON");
        assert_eq!(Amount::from_json(&raw("150.00")).expect("number").as_str(), "150.00");
        assert_eq!(Amount::from_json(&raw("\"2000.00\"")).expect("string").as_str(), "2000.00");
        assert!(Amount::from_json(&raw("1.5e2")).is_err());
        assert!(Amount::from_json(&raw("null")).is_err());
    }
}
