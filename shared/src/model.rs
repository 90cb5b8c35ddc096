//! The canonical transaction model: statuses, the transition rule, the stored record
//! and the terminal event sent to the merchant.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};
use time::OffsetDateTime;

pub(crate) mod attention;
pub(crate) mod notification;
pub(crate) mod refund;
pub mod shard;
pub(crate) mod sync;

pub use attention::{flagged_at, is_attention_cursor, Attention, ATTENTION_AT, ATTENTION_SHARD};
pub use notification::{
    conflict_event_id, event_id, mismatch_event_id, refund_event_id, updated_event_id, EventType, EventTypes,
    MerchantEvent, NotificationOutcome, NotificationPending, UnknownEventType,
};
pub use refund::{AfterFinalWord, Refund, RefundObservation, RefundStatus};
pub use sync::{index_time, SyncPolicy, SyncState, SyncStep, GIVE_UP_AFTER};

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
pub(crate) const FINAL_RANK: u8 = 4;

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

impl Decision {
    /// Why `new` does not apply to a record at `current`, given that it does not (`new`
    /// ranks no higher than `current`): never [`Decision::Apply`], and total, so a failed
    /// condition in the store always has its reason.
    pub(crate) fn not_applied(current: Status, new: Status) -> Decision {
        if current == new {
            Decision::Duplicate
        } else if current.is_final() && new.is_final() {
            Decision::Conflict
        } else {
            Decision::Stale
        }
    }
}

/// Whether `new` applies to a record at `current` (none: no record yet). This is the
/// condition of the store's one write: `attribute_not_exists(pk) OR rank < :rank`.
pub fn applies(current: Option<Status>, new: Status) -> bool {
    current.is_none_or(|current| current.rank() < new.rank())
}

/// The transition rule: [`applies`], and otherwise why not.
pub fn decide(current: Option<Status>, new: Status) -> Decision {
    match current {
        Some(current) if !applies(Some(current), new) => Decision::not_applied(current, new),
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
    /// string (`"150.00"`), keeping the text exactly (no float round trip). A number in
    /// exponent form, which JSON allows, is read exactly too: `1.5E2` is `150`, `2e-2` is
    /// `0.02`.
    pub fn from_json(raw: &serde_json::value::RawValue) -> Result<Self, InvalidAmount> {
        let text = raw.get().trim();
        match text.strip_prefix('"').and_then(|t| t.strip_suffix('"')) {
            Some(quoted) => Amount::parse(quoted),
            None => match text.split_once(['e', 'E']) {
                Some((mantissa, exponent)) => Amount::parse(&shift_point(mantissa, exponent)?),
                None => Amount::parse(text),
            },
        }
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// The exact sum of `amounts`, on their digits (`10.5` + `0.25` is `10.75`); `None`
    /// for no amounts, and an error past 20 digits before the point.
    pub fn sum(amounts: &[Amount]) -> Option<Result<Amount, InvalidAmount>> {
        let places = amounts.iter().map(|a| a.0.split_once('.').map_or(0, |(_, f)| f.len())).max()?;
        let mut total: Vec<u8> = Vec::new(); // little-endian digits, `places` of them after the point
        for amount in amounts {
            let (int, frac) = amount.0.split_once('.').unwrap_or((&amount.0, ""));
            let digits = format!("{int}{frac}{}", "0".repeat(places - frac.len()));
            // Digit by digit, then the carry on past the amount's own digits.
            total.resize(total.len().max(digits.len()), 0);
            let mut carry = 0;
            let mut addends = digits.bytes().rev().map(|b| b - b'0');
            for place in total.iter_mut() {
                let sum = *place + addends.next().unwrap_or(0) + carry;
                *place = sum % 10;
                carry = sum / 10;
            }
            if carry > 0 {
                total.push(carry);
            }
        }
        total.resize(total.len().max(places + 1), 0);
        let text: String = total.iter().rev().map(|d| char::from(b'0' + d)).collect();
        let (int, frac) = text.split_at(text.len() - places);
        let int = match int.trim_start_matches('0') {
            "" => "0",
            trimmed => trimmed,
        };
        Some(Amount::parse(&if places == 0 { int.to_owned() } else { format!("{int}.{frac}") }))
    }

    /// Whether two amounts are the same number (`10.5`, `10.50` and `010.5` are).
    pub(crate) fn same_value(&self, other: &Amount) -> bool {
        self.compare(other) == std::cmp::Ordering::Equal
    }

    /// The two amounts compared as numbers, on their digits.
    pub(crate) fn compare(&self, other: &Amount) -> std::cmp::Ordering {
        fn canonical(amount: &Amount) -> (&str, &str) {
            let (int, frac) = amount.0.split_once('.').unwrap_or((&amount.0, ""));
            let int = int.trim_start_matches('0');
            (int, frac.trim_end_matches('0'))
        }
        let ((a_int, a_frac), (b_int, b_frac)) = (canonical(self), canonical(other));
        a_int.len().cmp(&b_int.len()).then_with(|| a_int.cmp(b_int)).then_with(|| a_frac.cmp(b_frac))
    }
}

/// `mantissa` (digits with an optional point) times ten to `exponent`, as a decimal text,
/// computed on the digits: the exact value, never a float's.
fn shift_point(mantissa: &str, exponent: &str) -> Result<String, InvalidAmount> {
    let (int, frac) = mantissa.split_once('.').unwrap_or((mantissa, ""));
    let digits_only = |s: &str| s.bytes().all(|b| b.is_ascii_digit());
    if int.is_empty() || !digits_only(int) || !digits_only(frac) || (mantissa.contains('.') && frac.is_empty()) {
        return Err(InvalidAmount);
    }
    let unsigned = exponent.strip_prefix(['+', '-']).unwrap_or(exponent);
    if unsigned.is_empty() || !digits_only(unsigned) {
        return Err(InvalidAmount);
    }
    // An exponent of more than 3 digits moves the point too far for any amount of at most
    // 20 digits on each side to come out (the mantissa is bounded by the request's size).
    let significant = unsigned.trim_start_matches('0');
    if significant.len() > 3 {
        return Err(InvalidAmount);
    }
    let places: i64 = if significant.is_empty() { 0 } else { significant.parse().map_err(|_| InvalidAmount)? };
    let places = if exponent.starts_with('-') { -places } else { places };
    let digits = format!("{int}{frac}");
    let point = i64::try_from(int.len()).map_err(|_| InvalidAmount)? + places;
    let (whole, fraction) = if point <= 0 {
        (String::from("0"), format!("{}{digits}", "0".repeat(usize::try_from(-point).unwrap_or(0))))
    } else {
        let point = usize::try_from(point).map_err(|_| InvalidAmount)?;
        if point >= digits.len() {
            (format!("{digits}{}", "0".repeat(point - digits.len())), String::new())
        } else {
            (digits[..point].to_owned(), digits[point..].to_owned())
        }
    };
    let whole = match whole.trim_start_matches('0') {
        "" => "0",
        trimmed => trimmed,
    };
    Ok(if fraction.is_empty() { whole.to_owned() } else { format!("{whole}.{fraction}") })
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

/// Which way the money moves, seen from the merchant: `in` (a payment) or `out` (a payout,
/// a withdrawal). A record whose provider never said is `in`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Direction {
    #[default]
    In,
    Out,
}

impl Direction {
    pub fn as_str(self) -> &'static str {
        match self {
            Direction::In => "in",
            Direction::Out => "out",
        }
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
    /// The amount the provider says was asked (Pagstar's `valor.original`): the expected
    /// amount when the merchant registered none. Kept apart from the registration.
    pub asked_amount: Option<Amount>,
    /// The provider reports amounts, and this word should have carried one but did not: on
    /// a final, with an amount registered, the record's `amount_mismatch` says `not_reported`.
    pub amount_missing: bool,
    /// What the provider wrote for the amount or the currency when it could not be read
    /// (bounded): kept as received, and the record's `amount_mismatch` says `unreadable`.
    pub unreadable_amount: Option<String>,
    pub unreadable_currency: Option<String>,
    /// Which way the money moves, where the provider says (none: the record keeps what it
    /// has, `in` if nothing).
    pub direction: Option<Direction>,
    pub reason: Option<String>,
    /// Provider facts worth keeping that the model has no field for (e.g. a merchant code).
    pub details: BTreeMap<String, String>,
    /// What the provider recommends showing the payer for this status (AZQR), if anything.
    pub customer_message: Option<String>,
    /// When the provider says the payment stops being payable (a Pix charge's
    /// `calendario`), if it says: the sync asks at that time rather than along its ladder.
    pub expires_at: Option<OffsetDateTime>,
    /// The transaction's refunds the provider reports ([`Observation::add_refund`]).
    pub refunds: Vec<RefundObservation>,
    /// The provider says the payer sent less than asked, with or without amounts (Pay3's
    /// `UNDER_PAID`): the record's `amount_mismatch` says `underpaid`.
    pub underpaid: bool,
    /// A word that follows a final status and says nothing of the status (Pay3's
    /// `REVIEW_CREATED`, `REFUNDED`…): kept on the record's `after_final`. Its `status` is
    /// `created`, which moves no record; where none exists yet, it creates one at
    /// `created`, which the sync then asks the provider about.
    pub follows_final: bool,
}

/// Longest failure reason kept from a provider.
pub(crate) const MAX_REASON_CHARS: usize = 500;
/// Longest provider text kept in any other field (a customer message, a detail's value),
/// so that no record or event grows with what a provider sends.
pub(crate) const MAX_TEXT_CHARS: usize = 500;
/// Most details kept on a record, and the longest name of one.
pub(crate) const MAX_DETAILS: usize = 16;
pub(crate) const MAX_DETAIL_NAME_CHARS: usize = 64;
/// Longest provider status word and currency kept.
pub(crate) const MAX_PROVIDER_STATUS_CHARS: usize = 64;
pub(crate) const MAX_CURRENCY_CHARS: usize = 16;

/// At most `max` characters of `text`.
/// At most `max` characters of `text`, the two SQS refuses in a message (U+FFFE and U+FFFF,
/// noncharacters that serde_json writes unescaped) replaced by U+FFFD: a provider's text
/// can never make the event that carries it impossible to enqueue.
fn bounded(text: &str, max: usize) -> String {
    text.chars().take(max).map(|c| if matches!(c, '\u{FFFE}' | '\u{FFFF}') { '\u{FFFD}' } else { c }).collect()
}

/// A provider's currency as ISO 4217 writes it (three letters, kept in capitals), or
/// `None` for anything else.
fn iso_currency(text: &str) -> Option<String> {
    (text.len() == 3 && text.bytes().all(|b| b.is_ascii_alphabetic())).then(|| text.to_ascii_uppercase())
}

/// Longest text kept of an amount or a currency that could not be read.
pub(crate) const MAX_UNREADABLE_CHARS: usize = 64;

impl Observation {
    /// The amount as the provider wrote it in JSON ([`Amount::from_json`]); one that cannot
    /// be read is kept as received ([`Observation::unreadable_amount`]), never refused: only
    /// what identifies the transaction or its status may refuse a verified webhook.
    pub fn set_amount_json(&mut self, raw: &serde_json::value::RawValue) {
        match Amount::from_json(raw) {
            Ok(amount) => self.amount = Some(amount),
            Err(InvalidAmount) => self.unreadable_amount = Some(bounded(raw.get(), MAX_UNREADABLE_CHARS)),
        }
    }

    /// The currency as the provider wrote it: three letters (ISO 4217), kept in capitals;
    /// anything else is kept as received ([`Observation::unreadable_currency`]).
    pub fn set_currency(&mut self, text: &str) {
        match iso_currency(text) {
            Some(currency) => self.currency = Some(currency),
            None => self.unreadable_currency = Some(bounded(text, MAX_UNREADABLE_CHARS)),
        }
    }

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
            asked_amount: None,
            amount_missing: false,
            unreadable_amount: None,
            unreadable_currency: None,
            direction: None,
            reason: None,
            details: BTreeMap::new(),
            customer_message: None,
            expires_at: None,
            refunds: Vec::new(),
            underpaid: false,
            follows_final: false,
        }
    }

    /// A word that follows a final status ([`Observation::follows_final`]).
    pub fn after_final(reference: impl Into<String>, provider_status: impl Into<String>) -> Self {
        Observation { follows_final: true, ..Observation::new(reference, Status::Created, provider_status) }
    }

    /// Adds a refund the provider reports; one with an id that is empty, longer than 72
    /// characters, not printable ASCII or already reported by this word, or past the tenth,
    /// is dropped (logged): the rest of the word is kept.
    pub fn add_refund(&mut self, refund: RefundObservation) {
        let id_chars = refund.id.len();
        let printable = refund.id.bytes().all(|b| b.is_ascii_graphic());
        let repeated = self.refunds.iter().any(|r| r.id == refund.id);
        let full = self.refunds.len() >= refund::MAX_REFUNDS;
        if id_chars == 0 || id_chars > refund::MAX_REFUND_ID_CHARS || !printable || repeated || full {
            tracing::error!(reference = %self.reference, refund_chars = id_chars, refunds = self.refunds.len(), "a refund without a usable id, repeated, or past the most one word may carry: not kept");
            return;
        }
        self.refunds.push(refund);
    }

    /// Whether the word reports a refund still pending.
    pub(crate) fn reports_pending_refund(&self) -> bool {
        self.refunds.iter().any(|r| r.status == RefundStatus::Pending)
    }

    /// Whether the word says anything about the money after the outcome (refunds, an
    /// under-payment, an after-final word): written whatever the transaction's status.
    pub(crate) fn has_money_after(&self) -> bool {
        !self.refunds.is_empty() || self.underpaid || self.follows_final
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
    /// Which way the money moves (`in` unless the provider said `out`).
    #[serde(default)]
    pub direction: Direction,
    /// The provider's own word; empty (and left out) until the provider first speaks
    /// about a registered transaction.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub provider_status: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub amount: Option<Amount>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub currency: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub details: BTreeMap<String, String>,
    /// What the provider recommends showing the payer for the current status (AZQR).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub customer_message: Option<String>,
    #[serde(default)]
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
    /// What the merchant registered (`PUT /transactions/{provider}/{reference}`), if it did.
    #[serde(default, with = "time::serde::rfc3339::option", skip_serializing_if = "Option::is_none")]
    pub registered_at: Option<OffsetDateTime>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub expected_amount: Option<Amount>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub expected_currency: Option<String>,
    #[serde(default, with = "time::serde::rfc3339::option", skip_serializing_if = "Option::is_none")]
    pub expires_at: Option<OffsetDateTime>,
    /// What the provider wrote for an amount or a currency that could not be read, as
    /// received. Kept in the store, shown through `amount_mismatch`.
    #[serde(default, skip_serializing)]
    pub unreadable_amount: Option<String>,
    #[serde(default, skip_serializing)]
    pub unreadable_currency: Option<String>,
    /// The final came from a provider that reports amounts, without one. Kept in the
    /// store only, shown through `amount_mismatch` (`not_reported`).
    #[serde(default, skip_serializing)]
    pub amount_not_reported: bool,
    /// What the provider says was asked (Pagstar's `valor.original`): the expected amount
    /// when the merchant registered none. Kept in the store only, shown through
    /// `amount_mismatch.expected`.
    #[serde(default, skip_serializing)]
    pub asked_amount: Option<Amount>,
    /// When the provider first said the payer sent less than asked, with or without
    /// amounts (Pay3's `UNDER_PAID`). Kept in the store only, shown through
    /// `amount_mismatch` (`underpaid`).
    #[serde(default, with = "time::serde::rfc3339::option", skip_serializing)]
    pub underpaid_reported_at: Option<OffsetDateTime>,
    /// How the amount reported differs from the amount expected, when it does. Derived
    /// from the stored fields when the record is read ([`TransactionRecord::derive`]),
    /// never stored.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub amount_mismatch: Option<AmountMismatch>,
    /// The transaction's refunds, each with its own status (stored one attribute per
    /// refund and status, shown as worked out by [`refund::refunds_of`]).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub refunds: Vec<Refund>,
    /// Words the provider said after the final status that changed nothing else, once
    /// each, in the order first heard.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub after_final: Vec<AfterFinalWord>,
    /// Final statuses the provider reported after a different final one; at most
    /// [`MAX_CONFLICTS`], one per status.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub conflicts: Vec<Conflict>,
    /// Non-final transactions only: whether and when the status sync asks the provider.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sync: Option<SyncState>,
    /// Stored as [`SYNC_AT`] (or, before the sharding, as `next_sync_at`); filled in from
    /// the stored one by [`TransactionRecord::derive`].
    #[serde(default, with = "time::serde::rfc3339::option", skip_serializing_if = "Option::is_none")]
    pub next_sync_at: Option<OffsetDateTime>,
    /// The next sync as stored since the sharding ([`SYNC_AT`]). Read apart from
    /// `next_sync_at`, because a write of the previous release can leave both on one item
    /// during an upgrade; this one wins. Never shown.
    #[serde(default, with = "time::serde::rfc3339::option", skip_serializing)]
    pub sync_at: Option<OffsetDateTime>,
    /// Syncs since the last change that learned nothing new (the backoff's rung).
    #[serde(default, skip_serializing_if = "is_zero")]
    pub sync_attempts: u32,
    /// The reconciler's send of its event failed: it is sent again on the next run, not
    /// a repeat period later. Kept in the store only, never shown.
    #[serde(default, skip_serializing)]
    pub requeue_failed: bool,
    /// The reasons the `Attention` index holds the transaction for ([`Attention`]); what
    /// needs a human is shown through [`TransactionRecord::attention`]. Never shown.
    #[serde(default, skip_serializing)]
    pub attention_reasons: Vec<String>,
}

fn is_zero(value: &u32) -> bool {
    *value == 0
}

/// How the amount reported differs from the amount expected.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum MismatchKind {
    /// Less than expected, in the expected currency.
    Underpaid,
    /// More than expected, in the expected currency.
    Overpaid,
    /// Another currency than the one expected.
    OtherCurrency,
    /// An amount was registered, and the final came from a provider that reports amounts
    /// without one.
    NotReported,
    /// The provider sent an amount or a currency that could not be read; it is kept as
    /// received in `reported` or `reported_currency`, and the status was applied.
    Unreadable,
}

impl MismatchKind {
    /// The kind as sent (`underpaid`…).
    pub fn as_str(self) -> &'static str {
        match self {
            MismatchKind::Underpaid => "underpaid",
            MismatchKind::Overpaid => "overpaid",
            MismatchKind::OtherCurrency => "other_currency",
            MismatchKind::NotReported => "not_reported",
            MismatchKind::Unreadable => "unreadable",
        }
    }
}

/// The amount expected (registered by the merchant) and the one the provider reported,
/// when they differ, or when what the provider reported could not be read.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(from = "MismatchAsSent")]
pub struct AmountMismatch {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub expected: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reported: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub expected_currency: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reported_currency: Option<String>,
    pub kind: MismatchKind,
}

/// An `amount_mismatch` as read from an event: those the previous release queued and
/// logged have no `kind` (both amounts were always there), so it is worked out again.
#[derive(Deserialize)]
struct MismatchAsSent {
    #[serde(default)]
    expected: Option<String>,
    #[serde(default)]
    reported: Option<String>,
    #[serde(default)]
    expected_currency: Option<String>,
    #[serde(default)]
    reported_currency: Option<String>,
    #[serde(default)]
    kind: Option<MismatchKind>,
}

impl From<MismatchAsSent> for AmountMismatch {
    fn from(sent: MismatchAsSent) -> Self {
        let amount = |text: &Option<String>| text.as_deref().and_then(|t| Amount::parse(t).ok());
        // The previous release sent a mismatch only when the two amounts differed.
        let kind = sent.kind.unwrap_or_else(|| match (amount(&sent.expected), amount(&sent.reported)) {
            (Some(expected), Some(reported)) => paid_against(&reported, &expected).unwrap_or(MismatchKind::Overpaid),
            (Some(_), None) | (None, Some(_)) | (None, None) => MismatchKind::Unreadable,
        });
        AmountMismatch {
            expected: sent.expected,
            reported: sent.reported,
            expected_currency: sent.expected_currency,
            reported_currency: sent.reported_currency,
            kind,
        }
    }
}

/// Under- or over-payment: `reported` against `expected`, compared as numbers; none when
/// they are the same number.
fn paid_against(reported: &Amount, expected: &Amount) -> Option<MismatchKind> {
    match reported.compare(expected) {
        std::cmp::Ordering::Less => Some(MismatchKind::Underpaid),
        std::cmp::Ordering::Greater => Some(MismatchKind::Overpaid),
        std::cmp::Ordering::Equal => None,
    }
}

/// A final status reported after a different final status: kept, never applied.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Conflict {
    pub provider_status: String,
    pub status: Status,
    #[serde(with = "time::serde::rfc3339")]
    pub received_at: OffsetDateTime,
}

/// Most conflicts kept on one record.
pub(crate) const MAX_CONFLICTS: usize = 10;

impl TransactionRecord {
    pub fn is_notification_pending(&self) -> bool {
        self.notification_pending.is_some()
    }

    /// Whether a refund of the transaction is still pending: the sync keeps asking about it,
    /// final or not, where the provider's status API can say.
    pub fn awaits_refund(&self) -> bool {
        self.refunds.iter().any(|r| r.status == RefundStatus::Pending)
    }

    /// When the provider last said something new: the last transition, or a refund's.
    pub(crate) fn changed_at(&self) -> OffsetDateTime {
        self.refunds.iter().map(|r| r.updated_at).fold(self.updated_at, OffsetDateTime::max)
    }

    /// The record with the refunds and after-final words read from their own attributes.
    pub(crate) fn with_money_after(
        mut self,
        refunds: Vec<refund::RefundEntry>,
        settled: &[(String, RefundStatus)],
        mut words: Vec<AfterFinalWord>,
    ) -> Self {
        self.refunds = refund::refunds_of(refunds, settled);
        words.sort_by(|a, b| a.received_at.cmp(&b.received_at).then_with(|| a.provider_status.cmp(&b.provider_status)));
        self.after_final = words;
        self
    }

    /// Fills in what is derived from stored fields (`amount_mismatch`); the store calls
    /// this on every record it reads.
    pub(crate) fn derive(mut self) -> Self {
        if let Some(at) = self.sync_at.take() {
            self.next_sync_at = Some(at);
        }
        self.amount_mismatch = self.mismatch();
        self
    }

    /// What `amount_mismatch` says: an unreadable amount or currency first, then another
    /// currency than the one expected, then an under-payment the provider reported, then an
    /// amount below or above the one expected.
    fn mismatch(&self) -> Option<AmountMismatch> {
        let reported = self.unreadable_amount.clone().or_else(|| self.amount.as_ref().map(|a| a.as_str().to_owned()));
        let reported_currency = self.unreadable_currency.clone().or_else(|| self.currency.clone());
        let kind = if self.unreadable_amount.is_some() || self.unreadable_currency.is_some() {
            MismatchKind::Unreadable
        } else if self
            .expected_currency
            .as_ref()
            .zip(self.currency.as_ref())
            .is_some_and(|(e, c)| !e.eq_ignore_ascii_case(c))
        {
            MismatchKind::OtherCurrency
        } else if self.underpaid_reported_at.is_some() {
            // The provider's own word, whatever amounts are (or are not) known.
            MismatchKind::Underpaid
        } else {
            self.amount_kind()?
        };
        Some(AmountMismatch {
            expected: self.expected().map(|a| a.as_str().to_owned()),
            reported,
            expected_currency: self.expected_currency.clone(),
            reported_currency,
            kind,
        })
    }

    /// The amount expected: the one registered, or else the one the provider says was asked.
    fn expected(&self) -> Option<&Amount> {
        self.expected_amount.as_ref().or(self.asked_amount.as_ref())
    }

    /// Under- or over-payment, when both amounts are known and differ; not reported, when
    /// an amount is expected and the final that should have carried one did not.
    fn amount_kind(&self) -> Option<MismatchKind> {
        let expected = self.expected()?;
        let Some(reported) = self.amount.as_ref() else {
            return self.amount_not_reported.then_some(MismatchKind::NotReported);
        };
        paid_against(reported, expected)
    }
}

/// What a merchant registers about a transaction before any webhook
/// (`PUT /transactions/{provider}/{reference}`).
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Registration {
    pub amount: Option<Amount>,
    /// ISO 4217: three capital letters.
    pub currency: Option<String>,
    pub expires_at: Option<OffsetDateTime>,
}

/// What a registration does to a record that already exists.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RegistrationMatch {
    /// Not registered yet (a webhook came first): the registration is attached.
    Unregistered,
    /// Registered with the same amount and currency: nothing changes.
    Same,
    /// Registered with a different amount or currency: refused.
    Different,
}

impl Registration {
    /// How this registration compares with `record`'s.
    pub(crate) fn compare(&self, record: &TransactionRecord) -> RegistrationMatch {
        if record.registered_at.is_none() {
            return RegistrationMatch::Unregistered;
        }
        let same_amount = match (&self.amount, &record.expected_amount) {
            (Some(a), Some(b)) => a.same_value(b),
            (None, None) => true,
            (Some(_), None) | (None, Some(_)) => false,
        };
        match same_amount && self.currency == record.expected_currency {
            true => RegistrationMatch::Same,
            false => RegistrationMatch::Different,
        }
    }
}

/// The key of a transaction: one per (provider, reference).
pub fn transaction_key(provider: &str, reference: &str) -> String {
    format!("{provider}#{reference}")
}

/// A field's new value, in the model's terms; the store writes each as its attribute type.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Value {
    Text(String),
    /// Texts added to a set at once ([`Edit::AddToSet`]).
    Texts(Vec<String>),
    Number(u32),
    Flag(bool),
    Time(OffsetDateTime),
    History(HistoryEntry),
    Conflict(Conflict),
    Details(BTreeMap<String, String>),
    /// A (refund, status), in its own attribute ([`refund::RefundEntry::attribute`]).
    Refund(refund::RefundEntry),
    /// A refund's final status, in its refund's settled attribute
    /// ([`refund::RefundEntry::settled_attribute`]).
    RefundSettled(refund::RefundEntry),
    /// An after-final word, in its own attribute ([`AfterFinalWord::attribute`]).
    Word(AfterFinalWord),
}

/// How a field changes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Edit {
    Set,
    /// Only when the record does not have the field yet.
    SetIfAbsent,
    /// Appended to the list (created empty when absent).
    Append,
    /// Added to the set of texts (created when absent).
    AddToSet,
}

/// When a change applies.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Condition {
    /// No record yet, or one whose rank is below this ([`applies`]).
    RankBelow(u8),
    /// A record whose rank is at least this: a word whose status does not apply, with
    /// money after the outcome to keep ([`Change::money_after`]).
    RankAtLeast(u8),
    /// No record yet (a registration creating one).
    Absent,
    /// A record that exists and is not registered (a registration attached to it).
    Unregistered,
    /// A record at this status with a sync scheduled (the sync's reschedule: a webhook
    /// that moved it meanwhile has scheduled it afresh).
    Scheduled(Status),
    /// A record at this status.
    AtStatus(Status),
    /// A record at this status whose notification is pending (the notifier's outcome).
    NotificationPending(Status),
    /// A record at this status whose pending notification has not reached the queue's
    /// hands yet (its marker is still `PENDING…`).
    NotYetQueued(Status),
    /// A record whose notification is pending, at any status.
    AnyNotificationPending,
    /// A record final at `stored` that has not kept a conflict for `status` yet, and
    /// keeps fewer than [`MAX_CONFLICTS`].
    NewConflict { stored: Status, status: Status },
}

/// The stored attribute of the next sync's time (shown as `next_sync_at`), the sort key of
/// the sparse `SyncShards` index.
pub(crate) const SYNC_AT: &str = "sync_at";
/// The stored attribute of the sync's shard (`{provider}#<shard>`), the partition key of
/// `SyncShards`: one of [`shard::SYNC_SHARDS`] per provider, by the transaction's key.
pub const SYNC_SHARD: &str = "sync_shard";
/// Where the next sync's time was stored before the sharding (the `SyncSchedule` index's
/// sort key). Every write that schedules removes it, so an item has one or the other.
pub(crate) const LEGACY_SYNC_AT: &str = "next_sync_at";

/// The record's fields a final write removes: a final transaction is never synced.
pub(crate) const SYNC_FIELDS: [&str; 5] = ["sync", SYNC_AT, "sync_attempts", SYNC_SHARD, LEGACY_SYNC_AT];
/// What a write that schedules the sync removes: the schedule as stored before sharding.
pub(crate) const LEGACY_SYNC_FIELDS: [&str; 1] = [LEGACY_SYNC_AT];

/// The sync shard of a transaction: `{provider}#<shard>`.
pub fn sync_shard(provider: &str, reference: &str) -> String {
    shard::sharded(provider, &transaction_key(provider, reference), shard::SYNC_SHARDS)
}

/// What a record becomes: every field a write sets, keeps, appends to or removes, and
/// when it applies. The store translates this into its one conditional write.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Change {
    pub(crate) condition: Condition,
    pub(crate) fields: Vec<(&'static str, Edit, Value)>,
    pub(crate) removed: &'static [&'static str],
}

impl Change {
    /// What `observation`, received at `now`, makes of `provider`'s record, applied where
    /// [`applies`] holds. A final status also sets `final_at` and the notification-pending
    /// marker, and ends the sync, in the same write; a non-final one schedules the next
    /// sync (`sync`: whether `provider` has a status API we ask, and the policy).
    pub fn observed(provider: &str, observation: &Observation, now: OffsetDateTime, sync: WritePlan) -> Change {
        let status = observation.status;
        let text = |value: &str| Value::Text(value.to_owned());
        let mut fields = Vec::with_capacity(16);
        fields.push(("provider", Edit::Set, text(provider)));
        fields.push(("reference", Edit::Set, text(&observation.reference)));
        fields.push(("status", Edit::Set, text(status.as_str())));
        let provider_status = bounded(&observation.provider_status, MAX_PROVIDER_STATUS_CHARS);
        fields.push(("provider_status", Edit::Set, Value::Text(provider_status.clone())));
        fields.push(("rank", Edit::Set, Value::Number(status.rank().into())));
        fields.push(("updated_at", Edit::Set, Value::Time(now)));
        fields.push(("first_seen_at", Edit::SetIfAbsent, Value::Time(now)));
        let entry = HistoryEntry { status, provider_status, received_at: now };
        fields.push(("history", Edit::Append, Value::History(entry)));
        if let Some(amount) = &observation.amount {
            fields.push(("amount", Edit::Set, text(amount.as_str())));
        }
        if let Some(currency) = &observation.currency {
            fields.push(("currency", Edit::Set, Value::Text(bounded(currency, MAX_CURRENCY_CHARS))));
        }
        // Apart from what the merchant registered, which wins when both are there.
        if let Some(asked) = &observation.asked_amount {
            fields.push(("asked_amount", Edit::Set, text(asked.as_str())));
        }
        // Kept once seen: a human should look, even if a later word is readable.
        if let Some(text) = &observation.unreadable_amount {
            fields.push(("unreadable_amount", Edit::Set, Value::Text(bounded(text, MAX_UNREADABLE_CHARS))));
        }
        if let Some(text) = &observation.unreadable_currency {
            fields.push(("unreadable_currency", Edit::Set, Value::Text(bounded(text, MAX_UNREADABLE_CHARS))));
        }
        if let Some(direction) = observation.direction {
            fields.push(("direction", Edit::Set, text(direction.as_str())));
        }
        if let Some(reason) = &observation.reason {
            fields.push(("reason", Edit::Set, Value::Text(bounded(reason, MAX_REASON_CHARS))));
        }
        if !observation.details.is_empty() {
            let details = observation.details.iter().take(MAX_DETAILS);
            let details = details.map(|(k, v)| (bounded(k, MAX_DETAIL_NAME_CHARS), bounded(v, MAX_TEXT_CHARS)));
            fields.push(("details", Edit::Set, Value::Details(details.collect())));
        }
        if let Some(message) = &observation.customer_message {
            fields.push(("customer_message", Edit::Set, Value::Text(bounded(message, MAX_TEXT_CHARS))));
        }
        // The provider's expiry is the fact; one the merchant registered was its intent.
        if let Some(expires_at) = observation.expires_at {
            fields.push(("expires_at", Edit::Set, Value::Time(sync::index_time(expires_at))));
        }
        money_after(&mut fields, provider, observation, now);
        let removed: &'static [&'static str] = if status.is_final() {
            fields.push(("final_at", Edit::Set, Value::Time(now)));
            // Only a payment that completed moved money whose amount should have been said.
            let silent = observation.amount.is_none() && observation.unreadable_amount.is_none();
            if status == Status::Completed && observation.amount_missing && silent {
                fields.push(("amount_not_reported", Edit::Set, Value::Flag(true)));
            }
            if sync.events.notifies(status) {
                let marker = NotificationPending::marker(provider, &observation.reference);
                fields.push((notification::PENDING_FIELD, Edit::Set, Value::Text(marker)));
            }
            // A refund still pending keeps the sync asking, final or not.
            if observation.reports_pending_refund() && sync.supported {
                schedule(&mut fields, sync.policy.first(true, now, None), provider, &observation.reference);
                &LEGACY_SYNC_FIELDS
            } else {
                &SYNC_FIELDS
            }
        } else {
            let first = sync.policy.first(sync.supported, now, observation.expires_at);
            schedule(&mut fields, first, provider, &observation.reference);
            &LEGACY_SYNC_FIELDS
        };
        Change { condition: Condition::RankBelow(status.rank()), fields, removed }
    }

    /// What `observation`, received at `now`, says of the money after the outcome (its
    /// refunds, an under-payment, an after-final word), kept on a record whose status the
    /// word does not move (its rank is at least the word's): the status untouched. A word
    /// whose status applies carries the same fields in [`Change::observed`].
    /// A pending refund schedules the sync where the provider's status API can say how it
    /// settles (`sync.supported`), unless a sync is scheduled already.
    pub fn money_after(provider: &str, observation: &Observation, now: OffsetDateTime, sync: WritePlan) -> Change {
        let mut fields = Vec::with_capacity(observation.refunds.len() + 6);
        money_after(&mut fields, provider, observation, now);
        if observation.reports_pending_refund() && sync.supported {
            schedule_if_none(&mut fields, sync.policy.first(true, now, None), provider, &observation.reference);
        }
        Change { condition: Condition::RankAtLeast(observation.status.rank()), fields, removed: &[] }
    }

    /// A new `created` record for `registration`, made at `now`; only if none exists.
    pub(crate) fn register(
        provider: &str,
        reference: &str,
        registration: &Registration,
        now: OffsetDateTime,
        sync: WritePlan,
    ) -> Change {
        let text = |value: &str| Value::Text(value.to_owned());
        let mut fields = Vec::with_capacity(14);
        fields.push(("provider", Edit::Set, text(provider)));
        fields.push(("reference", Edit::Set, text(reference)));
        fields.push(("status", Edit::Set, text(Status::Created.as_str())));
        fields.push(("rank", Edit::Set, Value::Number(Status::Created.rank().into())));
        fields.push(("updated_at", Edit::Set, Value::Time(now)));
        fields.push(("first_seen_at", Edit::Set, Value::Time(now)));
        registration_fields(&mut fields, registration, now);
        schedule(&mut fields, sync.policy.first(sync.supported, now, registration.expires_at), provider, reference);
        Change { condition: Condition::Absent, fields, removed: &[] }
    }

    /// `observation`, a final status contradicting the stored final `stored`, kept on the
    /// record (`conflicts`, and its status in `conflict_statuses`), once per status and at
    /// most [`MAX_CONFLICTS`]; the status is untouched. The same write lists the
    /// transaction among what needs a human.
    pub(crate) fn conflict(
        provider: &str,
        observation: &Observation,
        stored: Status,
        now: OffsetDateTime,
    ) -> (Change, Conflict) {
        let conflict = Conflict {
            provider_status: bounded(&observation.provider_status, MAX_PROVIDER_STATUS_CHARS),
            status: observation.status,
            received_at: now,
        };
        let change = Change {
            condition: Condition::NewConflict { stored, status: observation.status },
            fields: [
                ("conflicts", Edit::Append, Value::Conflict(conflict.clone())),
                ("conflict_statuses", Edit::AddToSet, Value::Text(observation.status.as_str().to_owned())),
            ]
            .into_iter()
            .chain(attention::fields(provider, &observation.reference, &[Attention::Conflict], now))
            .collect(),
            removed: &[],
        };
        (change, conflict)
    }

    /// `registration` attached to a record a webhook created first; its status is untouched.
    pub(crate) fn attach(registration: &Registration, now: OffsetDateTime) -> Change {
        let mut fields = Vec::with_capacity(4);
        registration_fields(&mut fields, registration, now);
        Change { condition: Condition::Unregistered, fields, removed: &[] }
    }
}

/// As [`schedule`], every field set only where absent: a record scheduled already keeps
/// its schedule and its rung.
fn schedule_if_none(fields: &mut Vec<(&'static str, Edit, Value)>, step: SyncStep, provider: &str, reference: &str) {
    let start = fields.len();
    schedule(fields, step, provider, reference);
    for (_, edit, _) in fields.iter_mut().skip(start) {
        *edit = Edit::SetIfAbsent;
    }
}

/// The fields of the money after the outcome, each set only where absent: a refund's
/// status and an after-final word when first heard, an under-payment when first reported.
fn money_after(
    fields: &mut Vec<(&'static str, Edit, Value)>,
    provider: &str,
    observation: &Observation,
    now: OffsetDateTime,
) {
    // A failed refund needs a human: listed in the same write that keeps it.
    if observation.refunds.iter().take(refund::MAX_REFUNDS).any(|r| r.status == RefundStatus::Failed) {
        fields.extend(attention::fields(provider, &observation.reference, &[Attention::RefundFailed], now));
    }
    for refund in observation.refunds.iter().take(refund::MAX_REFUNDS) {
        let entry = refund::RefundEntry {
            id: refund.id.clone(),
            status: refund.status,
            provider_status: bounded(&refund.provider_status, refund::MAX_REFUND_WORD_CHARS),
            amount: refund.amount.clone(),
            // ISO 4217 only: a refund's currency is informational, and each one is stored thrice.
            currency: refund.currency.as_deref().and_then(iso_currency),
            received_at: now,
        };
        if entry.status.is_final() {
            fields.push((refund::REFUND_PREFIX, Edit::SetIfAbsent, Value::RefundSettled(entry.clone())));
        }
        fields.push((refund::REFUND_PREFIX, Edit::SetIfAbsent, Value::Refund(entry)));
    }
    if observation.follows_final {
        let provider_status = bounded(&observation.provider_status, MAX_PROVIDER_STATUS_CHARS);
        fields.push((
            refund::WORD_PREFIX,
            Edit::SetIfAbsent,
            Value::Word(AfterFinalWord { provider_status, received_at: now }),
        ));
    }
    if observation.underpaid {
        fields.push(("underpaid_reported_at", Edit::SetIfAbsent, Value::Time(now)));
    }
}

/// What a write schedules besides the record: whether and when the provider's status API
/// is asked (`policy`, `supported`), and whether a final status is notified (`events`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct WritePlan {
    pub policy: SyncPolicy,
    pub supported: bool,
    pub events: notification::EventTypes,
}

fn registration_fields(
    fields: &mut Vec<(&'static str, Edit, Value)>,
    registration: &Registration,
    now: OffsetDateTime,
) {
    fields.push(("registered_at", Edit::Set, Value::Time(now)));
    if let Some(amount) = &registration.amount {
        fields.push(("expected_amount", Edit::Set, Value::Text(amount.as_str().to_owned())));
    }
    if let Some(currency) = &registration.currency {
        fields.push(("expected_currency", Edit::Set, Value::Text(currency.clone())));
    }
    if let Some(expires_at) = registration.expires_at {
        fields.push(("expires_at", Edit::Set, Value::Time(sync::index_time(expires_at))));
    }
}

/// The sync fields a write that leaves a transaction non-final sets. The time is set only
/// where none is (`SetIfAbsent`): a transaction already scheduled keeps its time, so its
/// entry in the `SyncShards` index moves only when the schedule changes (the sync's own
/// reschedule), not on every webhook; it is put there once, at first sight, and deleted
/// once, when final.
fn schedule(fields: &mut Vec<(&'static str, Edit, Value)>, step: SyncStep, provider: &str, reference: &str) {
    if let SyncStep::Retry { state, at, attempts } = step {
        fields.push(("sync", Edit::Set, Value::Text(state.as_str().to_owned())));
        fields.push((SYNC_AT, Edit::SetIfAbsent, Value::Time(at)));
        fields.push(("sync_attempts", Edit::Set, Value::Number(attempts)));
        fields.push((SYNC_SHARD, Edit::SetIfAbsent, Value::Text(sync_shard(provider, reference))));
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;

    /// A bare record, for the model's tests.
    pub(crate) fn record(provider: &str, reference: &str, status: Status, at: OffsetDateTime) -> TransactionRecord {
        TransactionRecord {
            provider: provider.into(),
            reference: reference.into(),
            status,
            direction: Direction::In,
            provider_status: status.as_str().into(),
            amount: None,
            currency: None,
            reason: None,
            details: BTreeMap::new(),
            customer_message: None,
            history: Vec::new(),
            first_seen_at: at,
            updated_at: at,
            final_at: None,
            notification_pending: None,
            notified_at: None,
            notification_refused_at: None,
            registered_at: None,
            expected_amount: None,
            expected_currency: None,
            expires_at: None,
            unreadable_amount: None,
            unreadable_currency: None,
            amount_not_reported: false,
            asked_amount: None,
            underpaid_reported_at: None,
            amount_mismatch: None,
            refunds: Vec::new(),
            after_final: Vec::new(),
            conflicts: Vec::new(),
            sync: None,
            next_sync_at: None,
            sync_attempts: 0,
            sync_at: None,
            requeue_failed: false,
            attention_reasons: Vec::new(),
        }
    }

    #[test]
    fn amounts_compare_as_numbers_and_mismatches_are_derived() {
        let amount = |text: &str| Amount::parse(text).expect("amount");
        assert!(amount("10.5").same_value(&amount("10.50")));
        assert!(amount("010").same_value(&amount("10.00")));
        assert!(amount("0.00").same_value(&amount("0")));
        assert!(!amount("10.5").same_value(&amount("1.05")));
        let at = OffsetDateTime::UNIX_EPOCH;
        let mut record = record("azqr", "r", Status::Completed, at);
        record.expected_amount = Some(amount("10.00"));
        record.amount = Some(amount("10.0"));
        assert_eq!(record.clone().derive().amount_mismatch, None);
        record.amount = Some(amount("12.00"));
        let mismatch = record.clone().derive().amount_mismatch.expect("mismatch");
        assert_eq!((mismatch.expected.as_deref(), mismatch.reported.as_deref()), (Some("10.00"), Some("12.00")));
        assert_eq!(mismatch.kind, MismatchKind::Overpaid);
        let kind = |record: &TransactionRecord| record.clone().derive().amount_mismatch.map(|m| m.kind);
        for (reported, expected) in
            [("9.99", Some(MismatchKind::Underpaid)), ("100", Some(MismatchKind::Overpaid)), ("0010.000", None)]
        {
            record.amount = Some(amount(reported));
            assert_eq!(kind(&record), expected, "{reported}");
        }
        assert!(amount("9.99").compare(&amount("10")).is_lt() && amount("10.01").compare(&amount("10.009")).is_gt());
        // Another currency than the one registered comes before the amounts.
        record.expected_currency = Some("BRL".into());
        record.currency = Some("brl".into());
        assert_eq!(kind(&record), None, "currencies compare without case");
        record.currency = Some("USD".into());
        assert_eq!(kind(&record), Some(MismatchKind::OtherCurrency));
        // What could not be read comes first, kept as received, with or without a registration.
        record.unreadable_amount = Some(r#""""#.into());
        let mismatch = record.clone().derive().amount_mismatch.expect("unreadable");
        assert_eq!((mismatch.kind, mismatch.reported.as_deref()), (MismatchKind::Unreadable, Some(r#""""#)));
        let mut unregistered = super::tests::record("p", "t", Status::Failed, at);
        unregistered.unreadable_currency = Some("PESO".into());
        let mismatch = unregistered.derive().amount_mismatch.expect("unreadable");
        assert_eq!((mismatch.kind, mismatch.reported_currency.as_deref()), (MismatchKind::Unreadable, Some("PESO")));
        // Registered, and the final that should have carried an amount did not.
        let mut missing = super::tests::record("p", "m", Status::Completed, at);
        missing.expected_amount = Some(amount("10.00"));
        assert_eq!(kind(&missing), None, "a provider that does not report amounts");
        missing.amount_not_reported = true;
        assert_eq!(kind(&missing), Some(MismatchKind::NotReported));
        missing.expected_amount = None;
        assert_eq!(kind(&missing), None, "nothing registered, nothing expected");
        // The amount the provider says was asked counts when nothing was registered, and a
        // registration wins over it.
        let mut asked = super::tests::record("p", "a", Status::Completed, at);
        asked.asked_amount = Some(amount("100.00"));
        asked.amount = Some(amount("90.00"));
        assert_eq!(kind(&asked), Some(MismatchKind::Underpaid));
        asked.expected_amount = Some(amount("90"));
        assert_eq!(kind(&asked), None, "the registration is what was expected");
        // Nothing to compare: no mismatch.
        let mut paid = super::tests::record("azqr", "p", Status::Completed, at);
        paid.amount = Some(amount("1"));
        assert_eq!(paid.derive().amount_mismatch, None);
    }

    #[test]
    fn a_final_without_the_amount_its_provider_reports_is_marked_in_the_same_write() {
        let at = OffsetDateTime::UNIX_EPOCH;
        let marked = |status: Status, missing: bool| {
            let mut observation = Observation::new("r", status, "x");
            observation.amount_missing = missing;
            let change = Change::observed("p", &observation, at, WritePlan::default());
            change.fields.iter().any(|(name, _, value)| *name == "amount_not_reported" && *value == Value::Flag(true))
        };
        assert!(marked(Status::Completed, true));
        assert!(!marked(Status::Completed, false), "the provider did not say it was missing");
        assert!(!marked(Status::Processing, true), "only a final should carry the amount");
        assert!(!marked(Status::Failed, true), "a decline moved no money");
    }

    /// Events the previous release queued and logged carry `{expected, reported}` with no
    /// kind: they still decode (the notifier, a resend), the kind worked out again.
    #[test]
    fn a_mismatch_without_a_kind_still_reads() {
        let read = |json: &str| serde_json::from_str::<AmountMismatch>(json).expect("decodes").kind;
        assert_eq!(read(r#"{"expected":"10.00","reported":"12.00"}"#), MismatchKind::Overpaid);
        assert_eq!(read(r#"{"expected":"10.00","reported":"9"}"#), MismatchKind::Underpaid);
        assert_eq!(read(r#"{"reported":"x","kind":"unreadable"}"#), MismatchKind::Unreadable);
        let mismatch = AmountMismatch {
            expected: Some("1".into()),
            reported: None,
            expected_currency: None,
            reported_currency: None,
            kind: MismatchKind::NotReported,
        };
        let json = serde_json::to_string(&mismatch).expect("json");
        assert_eq!(json, r#"{"expected":"1","kind":"not_reported"}"#);
        assert_eq!(serde_json::from_str::<AmountMismatch>(&json).expect("round trip"), mismatch);
    }

    #[test]
    fn amounts_add_up_exactly() {
        let sum = |texts: &[&str]| {
            let amounts: Vec<Amount> = texts.iter().map(|t| Amount::parse(t).expect("amount")).collect();
            Amount::sum(&amounts).map(|r| r.map(|a| a.as_str().to_owned()))
        };
        assert_eq!(sum(&[]), None);
        assert_eq!(sum(&["10.5", "0.25"]), Some(Ok("10.75".into())));
        assert_eq!(sum(&["99.99", "0.01"]), Some(Ok("100.00".into())));
        assert_eq!(sum(&["7"]), Some(Ok("7".into())));
        assert_eq!(sum(&["0.1", "0.2"]), Some(Ok("0.3".into())), "no float");
        assert_eq!(sum(&["999", "1", "0000"]), Some(Ok("1000".into())));
        let big = "9".repeat(20);
        assert_eq!(sum(&[&big, "1"]), Some(Err(InvalidAmount)), "21 digits");
    }

    #[test]
    fn what_cannot_be_read_is_kept_as_received_and_bounded() {
        let raw = |text: &str| serde_json::value::RawValue::from_string(text.to_owned()).expect("raw JSON");
        let mut observation = Observation::new("r", Status::Completed, "x");
        observation.set_amount_json(&raw("1.5E2"));
        observation.set_currency("php");
        assert_eq!(observation.amount.as_ref().map(Amount::as_str), Some("150"));
        assert_eq!((observation.currency.as_deref(), observation.unreadable_amount.as_ref()), (Some("PHP"), None));
        observation.set_amount_json(&raw(&format!("\"{}\"", "9".repeat(200))));
        observation.set_currency("Philippine peso");
        assert_eq!(observation.unreadable_amount.as_ref().map(|t| t.chars().count()), Some(MAX_UNREADABLE_CHARS));
        assert_eq!(observation.unreadable_currency.as_deref(), Some("Philippine peso"));
    }

    /// A write of the previous release during an upgrade can leave both the old
    /// `next_sync_at` and the sharded `sync_at` on one item: it still reads, the sharded
    /// one wins, and only `next_sync_at` is shown.
    #[test]
    fn a_record_with_both_schedules_reads_and_the_sharded_one_wins() {
        let record: TransactionRecord = serde_json::from_value(serde_json::json!({
            "provider": "azqr", "reference": "r", "status": "pending",
            "first_seen_at": "2026-11-30T00:00:00Z", "updated_at": "2026-11-30T00:00:00Z",
            "next_sync_at": "2026-11-30T00:05:00Z", "sync_at": "2026-11-30T00:20:00Z"
        }))
        .expect("both schedules");
        let record = record.derive();
        let shown = serde_json::to_value(&record).expect("JSON");
        assert_eq!(shown["next_sync_at"], "2026-11-30T00:20:00Z");
        assert!(shown.get("sync_at").is_none());
    }

    #[test]
    fn a_registration_is_the_same_only_with_the_same_amount_and_currency() {
        let at = OffsetDateTime::UNIX_EPOCH;
        let registration = Registration {
            amount: Some(Amount::parse("10.00").expect("amount")),
            currency: Some("AZN".into()),
            expires_at: None,
        };
        let mut record = record("azqr", "r", Status::Pending, at);
        assert_eq!(registration.compare(&record), RegistrationMatch::Unregistered);
        record.registered_at = Some(at);
        record.expected_amount = Some(Amount::parse("10.0").expect("amount"));
        record.expected_currency = Some("AZN".into());
        assert_eq!(registration.compare(&record), RegistrationMatch::Same);
        record.expected_currency = Some("USD".into());
        assert_eq!(registration.compare(&record), RegistrationMatch::Different);
        record.expected_currency = Some("AZN".into());
        record.expected_amount = None;
        assert_eq!(registration.compare(&record), RegistrationMatch::Different);
    }

    #[test]
    fn a_final_with_a_refund_pending_stays_scheduled_where_the_sync_can_ask() {
        let at = OffsetDateTime::from_unix_timestamp(1_795_000_000).expect("time");
        let mut observation = Observation::new("t", Status::Completed, "CONCLUIDA");
        observation.add_refund(RefundObservation {
            id: "D1".into(),
            status: RefundStatus::Pending,
            provider_status: "EM_PROCESSAMENTO".into(),
            amount: None,
            currency: None,
        });
        let plan = WritePlan { supported: true, ..WritePlan::default() };
        let change = Change::observed("pagstar", &observation, at, plan);
        assert_eq!(change.removed, LEGACY_SYNC_FIELDS, "the schedule stays");
        let scheduled = change.fields.iter().find(|(name, _, _)| *name == SYNC_AT).map(|(_, _, v)| v.clone());
        assert_eq!(scheduled, Some(Value::Time(at + std::time::Duration::from_secs(300))));
        let unsupported = Change::observed("pagstar", &observation, at, WritePlan::default());
        assert_eq!(unsupported.removed, SYNC_FIELDS, "no status API to say how it settles");
        observation.refunds[0].status = RefundStatus::Succeeded;
        assert_eq!(Change::observed("pagstar", &observation, at, plan).removed, SYNC_FIELDS, "settled");
    }

    #[test]
    fn final_changes_end_the_sync_and_others_schedule_it() {
        let at = OffsetDateTime::from_unix_timestamp(1_795_000_000).expect("time");
        let plan = WritePlan { policy: SyncPolicy::default(), supported: true, ..WritePlan::default() };
        let pending = Change::observed("azqr", &Observation::new("r", Status::Pending, "read"), at, plan);
        assert_eq!(pending.removed, LEGACY_SYNC_FIELDS, "the schedule as stored before sharding goes");
        let shard = pending.fields.iter().find(|(name, _, _)| *name == SYNC_SHARD).expect("sharded");
        assert_eq!(shard.2, Value::Text(sync_shard("azqr", "r")));
        let next = pending.fields.iter().find(|(name, _, _)| *name == SYNC_AT).expect("scheduled");
        assert_eq!(next.2, Value::Time(at + std::time::Duration::from_secs(300)));
        let mut charge = Observation::new("r", Status::Created, "ATIVA");
        charge.expires_at = Some(at + std::time::Duration::from_secs(1_800));
        let charge = Change::observed("pagstar", &charge, at, plan);
        let field = |name: &str| charge.fields.iter().find(|(n, _, _)| *n == name).map(|(_, _, v)| v.clone());
        assert_eq!(field("expires_at"), Some(Value::Time(at + std::time::Duration::from_secs(1_800))), "kept");
        let asked = at + std::time::Duration::from_secs(1_800) + sync::EXPIRY_MARGIN;
        assert_eq!(field(SYNC_AT), Some(Value::Time(asked)), "asked once it can have expired, not in 5 minutes");
        let done = Change::observed("azqr", &Observation::new("r", Status::Completed, "completed"), at, plan);
        assert_eq!(done.removed, SYNC_FIELDS);
        assert!(done.fields.iter().all(|(name, _, _)| !SYNC_FIELDS.contains(name)));
        let unsupported = Change::observed(
            "qitech",
            &Observation::new("r", Status::Processing, "9"),
            at,
            WritePlan { supported: false, ..plan },
        );
        let sync = unsupported.fields.iter().find(|(name, _, _)| *name == "sync").expect("sync");
        assert_eq!(sync.2, Value::Text("unsupported".into()));
        let quiet = WritePlan { events: notification::EventTypes::parse("transaction.failed").expect("types"), ..plan };
        let unnotified = Change::observed("azqr", &Observation::new("r", Status::Completed, "completed"), at, quiet);
        assert!(unnotified.fields.iter().all(|(name, _, _)| *name != notification::PENDING_FIELD), "type off");
        assert!(done.fields.iter().any(|(name, _, _)| *name == notification::PENDING_FIELD));
    }

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

    /// Whatever a provider sends, a change keeps at most the bounded text, and the
    /// largest record those bounds allow (every field at its longest, in 4-byte
    /// characters, the most history entries, conflicts and details) makes an event under
    /// 64 KB.
    #[test]
    fn provider_text_is_bounded_and_the_largest_event_stays_under_64_kb() {
        let huge = "\u{1F4B8}".repeat(10_000);
        let mut observation = Observation::new("r".repeat(100), Status::Failed, huge.clone());
        observation.reason = Some(huge.clone());
        observation.customer_message = Some(huge.clone());
        observation.currency = Some(huge.clone());
        observation.amount = Some(Amount::parse(&format!("{}.{}", "9".repeat(20), "9".repeat(20))).expect("amount"));
        for i in 0..100 {
            observation.details.insert(format!("{i:03}{huge}"), huge.clone());
        }
        let at = OffsetDateTime::from_unix_timestamp(1_795_000_000).expect("time");
        let change = Change::observed("azqrpay3qitech12", &observation, at, WritePlan::default());
        let text = |name: &str| match change.fields.iter().find(|(n, _, _)| *n == name).map(|(_, _, v)| v) {
            Some(Value::Text(text)) => text.clone(),
            other => panic!("{name}: {other:?}"),
        };
        let Some(Value::Details(details)) = change.fields.iter().find(|(n, _, _)| *n == "details").map(|(_, _, v)| v)
        else {
            panic!("details");
        };
        assert_eq!(details.len(), MAX_DETAILS);
        assert!(details
            .iter()
            .all(|(k, v)| k.chars().count() <= MAX_DETAIL_NAME_CHARS && v.chars().count() <= MAX_TEXT_CHARS));
        let (reason, message, status) = (text("reason"), text("customer_message"), text("provider_status"));
        assert_eq!(reason.chars().count(), MAX_REASON_CHARS);
        assert_eq!(message.chars().count(), MAX_TEXT_CHARS);
        assert_eq!(status.chars().count(), MAX_PROVIDER_STATUS_CHARS);
        assert_eq!(text("currency").chars().count(), MAX_CURRENCY_CHARS);

        let mut record = record("azqrpay3qitech12", &"r".repeat(100), Status::Failed, at);
        record.provider_status = status.clone();
        record.reason = Some(reason);
        record.customer_message = Some(message);
        record.currency = Some(text("currency"));
        record.expected_currency = Some(text("currency"));
        record.amount = observation.amount.clone();
        record.expected_amount = observation.amount.clone();
        record.details = details.clone();
        // One entry per rank reached, at most: ranks only rise, and a final absorbs.
        record.history = (0..=FINAL_RANK)
            .map(|_| HistoryEntry { status: Status::Failed, provider_status: status.clone(), received_at: at })
            .collect();
        record.conflicts = (0..MAX_CONFLICTS)
            .map(|_| Conflict { provider_status: status.clone(), status: Status::Expired, received_at: at })
            .collect();
        (record.final_at, record.notified_at, record.registered_at, record.expires_at) =
            (Some(at), Some(at), Some(at), Some(at));
        // The most refunds one word carries, at their bounds, and Pay3's six after-final words.
        let mut refunded = Observation::after_final("r", huge.clone());
        for i in 0..2 * refund::MAX_REFUNDS {
            refunded.add_refund(RefundObservation {
                id: format!("{i:02}{}", "x".repeat(refund::MAX_REFUND_ID_CHARS - 2)),
                status: RefundStatus::Failed,
                provider_status: huge.clone(),
                amount: observation.amount.clone(),
                currency: Some("BRL".into()),
            });
        }
        let kept = Change::money_after("p", &refunded, at, WritePlan::default());
        let entries =
            kept.fields.iter().filter_map(|(_, _, v)| if let Value::Refund(e) = v { Some(e.clone()) } else { None });
        record.refunds = refund::refunds_of(entries.collect(), &[]);
        assert_eq!(record.refunds.len(), refund::MAX_REFUNDS);
        record.after_final = (0..6)
            .map(|i| AfterFinalWord {
                provider_status: format!("{i}{huge}").chars().take(MAX_PROVIDER_STATUS_CHARS).collect(),
                received_at: at,
            })
            .collect();
        let record = record.derive();
        let event = MerchantEvent::for_record(&record).expect("final");
        let size = serde_json::to_string(&event).expect("JSON").len();
        println!("largest event: {size} bytes");
        assert!(size < 64 * 1024, "the largest event is {size} bytes");
    }

    #[test]
    fn provider_text_is_cleaned_of_what_sqs_refuses() {
        let at = OffsetDateTime::UNIX_EPOCH;
        let mut observation = Observation::new("r", Status::Failed, "DECLINED\u{FFFF}");
        observation.reason = Some("no\u{FFFE} funds".into());
        observation.details.insert("merchantcode".into(), "M\u{FFFF}1".into());
        let change = Change::observed("key2pay", &observation, at, WritePlan::default());
        for (name, _, value) in &change.fields {
            let texts: Vec<String> = match value {
                Value::Text(text) => vec![text.clone()],
                Value::Texts(texts) => texts.clone(),
                Value::Details(details) => details.iter().flat_map(|(k, v)| [k.clone(), v.clone()]).collect(),
                Value::History(entry) => vec![entry.provider_status.clone()],
                Value::Number(_) | Value::Flag(_) | Value::Time(_) | Value::Conflict(_) => Vec::new(),
                Value::Refund(_) | Value::RefundSettled(_) | Value::Word(_) => Vec::new(),
            };
            assert!(texts.iter().all(|t| !t.contains(['\u{FFFE}', '\u{FFFF}'])), "{name}: {texts:?}");
        }
        assert_eq!(bounded("a\u{FFFF}b", 10), "a\u{FFFD}b");
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
        assert!(Amount::from_json(&raw("null")).is_err());
        // Every form of a JSON number, read exactly.
        for (json, exact) in [
            ("1.5E2", "150"),
            ("1.5e2", "150"),
            ("1.5e+2", "150"),
            ("15E-1", "1.5"),
            ("2e-2", "0.02"),
            ("1.50E1", "15.0"),
            ("0e0", "0"),
            ("0.0001E4", "1"),
            ("123456789012345678901E-1", "12345678901234567890.1"),
            ("1E19", "10000000000000000000"),
        ] {
            assert_eq!(Amount::from_json(&raw(json)).map(|a| a.as_str().to_owned()), Ok(exact.to_owned()), "{json}");
        }
        assert_eq!(Amount::from_json(&raw("1E0002")).map(|a| a.as_str().to_owned()), Ok("100".to_owned()));
        let long = format!("0.{}1E44", "0".repeat(43));
        assert_eq!(Amount::from_json(&raw(&long)).map(|a| a.as_str().to_owned()), Ok("1".to_owned()));
        for bad in ["-1.5E2", "1E20", "1e-21", "1E999", "1E-9999", "\"1.5E2\"", "-0", "true", "[1]"] {
            assert!(Amount::from_json(&raw(bad)).is_err(), "{bad} accepted");
        }
        // Not JSON, so never a RawValue; the shift refuses them all the same.
        for (mantissa, exponent) in [("1.", "2"), ("", "2"), (".5", "1"), ("1", ""), ("1", "2.5"), ("1", "+-2")] {
            assert_eq!(shift_point(mantissa, exponent), Err(InvalidAmount), "{mantissa}e{exponent}");
        }
    }
}
