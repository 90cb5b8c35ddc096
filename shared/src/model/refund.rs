//! Money after the outcome: refunds, each with its own status, and the words a provider
//! says after a final status. Both are written by the one conditional write of any word,
//! whatever the transaction's status, each (refund, status) and each word in an attribute
//! of its own set only where absent: a repeat changes nothing, and order does not matter,
//! because what the record shows is worked out from them when it is read
//! ([`refunds_of`]). A refund's first final status absorbs, as a transaction's does: it is
//! also written to `refund#<id>#final`, set only where absent, so that of two finals
//! written at once the one DynamoDB applied first wins, whatever the clocks say.

use serde::{Deserialize, Serialize};
use time::OffsetDateTime;

use super::Amount;

/// The stored attributes of refunds begin with this: `refund#<id>#<status>`, and
/// `refund#<id>#final` for the final status that won.
pub(crate) const REFUND_PREFIX: &str = "refund#";
/// The suffix of a refund's settled attribute.
pub(crate) const SETTLED_SUFFIX: &str = "#final";
/// The stored attributes of after-final words begin with this: `word#<word>`.
pub(crate) const WORD_PREFIX: &str = "word#";
/// Most refunds one word of a provider's may carry; more are dropped (logged). A provider's
/// list of refunds (Pagstar's `devolucoes`) is read in its order, so the same ones are kept
/// each time.
pub(crate) const MAX_REFUNDS: usize = 10;
/// Longest refund id kept (BACEN's are at most 35 characters, Pay3's derived ones 71); a
/// longer one, or one with other characters than printable ASCII, is not a refund id we
/// can key on (dropped, logged).
pub(crate) const MAX_REFUND_ID_CHARS: usize = 72;
/// Longest provider word for a refund's status kept.
pub(crate) const MAX_REFUND_WORD_CHARS: usize = 32;

/// A refund's own status: `pending` until it settles, then `succeeded` or `failed`, which
/// nothing changes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum RefundStatus {
    Pending,
    Succeeded,
    Failed,
}

impl RefundStatus {
    /// The status as shown (`pending`…).
    pub fn as_str(self) -> &'static str {
        match self {
            RefundStatus::Pending => "pending",
            RefundStatus::Succeeded => "succeeded",
            RefundStatus::Failed => "failed",
        }
    }

    /// Whether nothing changes it any more.
    pub fn is_final(self) -> bool {
        match self {
            RefundStatus::Pending => false,
            RefundStatus::Succeeded | RefundStatus::Failed => true,
        }
    }
}

/// What a provider says about one refund of a transaction.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RefundObservation {
    /// The provider's id of the refund (Pagstar's `devolucoes[].id`), or one derived from
    /// the order where the provider gives none (Pay3).
    pub id: String,
    pub status: RefundStatus,
    /// The provider's own word for it, kept verbatim (bounded).
    pub provider_status: String,
    /// The amount refunded, where the provider says (Pay3 does not).
    pub amount: Option<Amount>,
    pub currency: Option<String>,
}

/// One (refund, status) as stored, in an attribute of its own, set once: when it was first
/// heard of, and what came with it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub(crate) struct RefundEntry {
    pub(crate) id: String,
    pub(crate) status: RefundStatus,
    pub(crate) provider_status: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub(crate) amount: Option<Amount>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub(crate) currency: Option<String>,
    #[serde(with = "time::serde::rfc3339")]
    pub(crate) received_at: OffsetDateTime,
}

impl RefundEntry {
    /// Its attribute: `refund#<id>#<status>`.
    pub(crate) fn attribute(&self) -> String {
        format!("{REFUND_PREFIX}{}#{}", self.id, self.status.as_str())
    }

    /// The attribute of its refund's final status, which holds the status alone:
    /// `refund#<id>#final`.
    pub(crate) fn settled_attribute(&self) -> String {
        format!("{REFUND_PREFIX}{}{SETTLED_SUFFIX}", self.id)
    }
}

/// A refund of the transaction, as the record shows it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Refund {
    /// The provider's id of the refund, or the one derived for it (Pay3).
    pub id: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub amount: Option<Amount>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub currency: Option<String>,
    pub status: RefundStatus,
    /// The provider's word for the status shown.
    pub provider_status: String,
    /// When the status shown was first heard of.
    #[serde(with = "time::serde::rfc3339")]
    pub updated_at: OffsetDateTime,
}

/// The record's refunds from their stored entries (`settled`: the final status that won,
/// by refund id), in the order they were first heard of: each at its settled status when it
/// has one (a final absorbs: a `failed` heard after `succeeded` changes nothing), otherwise
/// at its first final, otherwise `pending`. Amount and currency come from the entry shown,
/// or else from any entry of the refund that had them.
pub(crate) fn refunds_of(mut entries: Vec<RefundEntry>, settled: &[(String, RefundStatus)]) -> Vec<Refund> {
    let rank = |status: RefundStatus| status as u8;
    entries.sort_by(|a, b| (a.received_at, &a.id, rank(a.status)).cmp(&(b.received_at, &b.id, rank(b.status))));
    let mut ids: Vec<&str> = Vec::new();
    for entry in &entries {
        if !ids.contains(&entry.id.as_str()) {
            ids.push(&entry.id);
        }
    }
    ids.into_iter()
        .filter_map(|id| {
            let mine: Vec<&RefundEntry> = entries.iter().filter(|e| e.id == id).collect();
            let won = settled.iter().find(|(settled, _)| settled == id).map(|(_, status)| *status);
            let won = won.and_then(|status| mine.iter().find(|e| e.status == status).copied());
            let shown =
                won.or_else(|| mine.iter().find(|e| e.status.is_final()).copied()).or_else(|| mine.first().copied())?;
            Some(Refund {
                id: id.to_owned(),
                amount: shown.amount.clone().or_else(|| mine.iter().find_map(|e| e.amount.clone())),
                currency: shown.currency.clone().or_else(|| mine.iter().find_map(|e| e.currency.clone())),
                status: shown.status,
                provider_status: shown.provider_status.clone(),
                updated_at: shown.received_at,
            })
        })
        .collect()
}

/// A word the provider said after the transaction's final status that changes nothing else
/// (Pay3's `REVIEW_CREATED`), kept once, when first heard.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct AfterFinalWord {
    pub provider_status: String,
    #[serde(with = "time::serde::rfc3339")]
    pub received_at: OffsetDateTime,
}

impl AfterFinalWord {
    /// Its attribute: `word#<word>`.
    pub(crate) fn attribute(&self) -> String {
        format!("{WORD_PREFIX}{}", self.provider_status)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn entry(id: &str, status: RefundStatus, seconds: i64) -> RefundEntry {
        RefundEntry {
            id: id.into(),
            status,
            provider_status: status.as_str().to_uppercase(),
            amount: (status == RefundStatus::Pending).then(|| Amount::parse("10.00").expect("amount")),
            currency: None,
            received_at: OffsetDateTime::UNIX_EPOCH + time::Duration::seconds(seconds),
        }
    }

    #[test]
    fn a_refund_shows_its_first_final_whatever_the_order_heard() {
        use RefundStatus::*;
        // Heard in order, out of order, twice, and a final after another final.
        let refunds = refunds_of(
            vec![
                entry("b", Succeeded, 5),
                entry("a", Pending, 1),
                entry("a", Succeeded, 3),
                entry("b", Pending, 9),
                entry("a", Failed, 4),
                entry("c", Pending, 2),
            ],
            &[],
        );
        let shown: Vec<(&str, RefundStatus, i64)> =
            refunds.iter().map(|r| (r.id.as_str(), r.status, r.updated_at.unix_timestamp())).collect();
        assert_eq!(shown, [("a", Succeeded, 3), ("c", Pending, 2), ("b", Succeeded, 5)]);
        assert_eq!(refunds[0].amount.as_ref().map(Amount::as_str), Some("10.00"), "from the pending entry");
        assert_eq!(refunds[0].provider_status, "SUCCEEDED");
        assert_eq!(refunds_of(Vec::new(), &[]), Vec::new());
        // The final that won the settled attribute is shown, whatever the clocks said.
        let raced = refunds_of(vec![entry("a", Succeeded, 3), entry("a", Failed, 2)], &[("a".into(), Succeeded)]);
        assert_eq!((raced[0].status, raced[0].updated_at.unix_timestamp()), (Succeeded, 3));
        // Two finals heard at the same instant, and none settled: the same one every time.
        let tied = |entries: Vec<RefundEntry>| refunds_of(entries, &[])[0].status;
        assert_eq!(tied(vec![entry("a", Failed, 1), entry("a", Succeeded, 1)]), Succeeded);
        assert_eq!(tied(vec![entry("a", Succeeded, 1), entry("a", Failed, 1)]), Succeeded);
    }

    #[test]
    fn entries_and_words_have_attributes_of_their_own() {
        let e = entry("D1", RefundStatus::Pending, 0);
        assert_eq!(e.attribute(), "refund#D1#pending");
        assert_ne!(e.attribute(), entry("D1", RefundStatus::Succeeded, 0).attribute());
        let word = AfterFinalWord { provider_status: "REVIEW_CREATED".into(), received_at: OffsetDateTime::UNIX_EPOCH };
        assert_eq!(word.attribute(), "word#REVIEW_CREATED");
    }
}
