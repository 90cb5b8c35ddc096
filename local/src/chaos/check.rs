//! The invariants of a chaos run, checked once it healed. Each violation is a sentence
//! naming the transaction or request it is about.

use std::collections::{BTreeSet, HashMap, HashSet};

use futures_util::StreamExt;
use shared::model::{event_id, mismatch_event_id, refund_event_id};
use shared::storage::TransactionStore;

use super::faults::Fault;
use super::merchant::Received;
use super::traffic::{Delivery, Sent, Transaction};
use super::{Error, Report};

/// What the run produced.
#[derive(Debug)]
pub struct Run<'a> {
    pub transactions: &'a [Transaction],
    pub sent: &'a [(Delivery, Sent)],
    pub faults: &'a [(Fault, String)],
    pub received: &'a [Received],
    pub store: &'a TransactionStore,
    pub sqs: &'a aws_sdk_sqs::Client,
    pub dead_letter_url: &'a str,
    pub client: &'a reqwest::Client,
    /// The pipeline's URL.
    pub base: &'a str,
}

/// Checks every invariant of `run`, one function each.
pub async fn check(run: Run<'_>) -> Result<Report, Error> {
    let mut report = Report { transactions: run.transactions.len(), ..Report::default() };
    requests_answered(&run, &mut report);
    let seen = merchant_saw(&run, &mut report);
    let dead_letters = dead_letter_ids(run.sqs, run.dead_letter_url).await?;
    report.dead_letters = dead_letters.len();
    let listed = listed_events(run.client, run.base).await?;
    report.listed_events = listed.len();
    // The words after the final one that reached the pipeline, by transaction.
    let mut heard: HashMap<usize, BTreeSet<&str>> = HashMap::new();
    for (delivery, sent) in run.sent {
        if sent.accepted && run.transactions[delivery.transaction].after_final.contains(&delivery.word) {
            heard.entry(delivery.transaction).or_default().insert(delivery.word);
        }
    }
    let records = futures_util::stream::iter(run.transactions.iter().enumerate().filter(|(_, t)| t.reached))
        .map(|(i, t)| async move { (i, t, run.store.get(t.name, &t.stored).await) })
        .buffer_unordered(16)
        .collect::<Vec<_>>()
        .await;
    for (index, transaction, record) in records {
        let label = format!("{} {}", transaction.name, transaction.stored);
        let record = match record {
            Ok(Some(record)) => record,
            Ok(None) => {
                report.violations.push(format!("{label}: not stored (expected {})", transaction.expected));
                continue;
            }
            Err(error) => return Err(format!("{label}: cannot read it: {error}").into()),
        };
        let delivered = seen.outcomes.get(&(transaction.name.to_owned(), transaction.stored.clone()));
        stored_as_its_provider_said(transaction, &record, delivered, &label, &mut report);
        if let Some(words) = heard.get(&index) {
            money_after_was_kept_and_told(transaction, words, &record, &seen, &label, &mut report);
        }
        if transaction.expected.is_final() {
            outcome_reached_the_merchant(transaction, &record, &seen, (&dead_letters, &listed), &label, &mut report);
        } else if delivered.is_some() {
            report.violations.push(format!("{label}: an outcome was delivered for a transaction that is not final"));
        }
    }
    Ok(report)
}

/// Requests: no 5xx without a fault it met; no genuine webhook refused.
fn requests_answered(run: &Run<'_>, report: &mut Report) {
    let hit: HashSet<&str> = run.faults.iter().map(|(_, hit)| hit.as_str()).collect();
    let api_paths: Vec<&str> = run
        .faults
        .iter()
        .filter(|(fault, _)| matches!(fault, Fault::ApiError | Fault::ApiStall))
        .map(|(_, hit)| hit.as_str())
        .collect();
    for (delivery, sent) in run.sent {
        let transaction = &run.transactions[delivery.transaction];
        report.sends += 1;
        for (id, answer) in &sent.attempts {
            report.attempts += 1;
            match answer {
                None => report.unanswered += 1,
                Some(status) if *status >= 500 => {
                    report.answered_5xx += 1;
                    let explained = hit.contains(id.as_str())
                        || api_paths.iter().any(|path| path.contains(transaction.reference.as_str()));
                    if !explained {
                        report.unexplained_5xx += 1;
                        report.violations.push(format!(
                            "{id} ({} {} {}) was answered {status} and met no injected fault",
                            transaction.name, transaction.reference, delivery.word
                        ));
                    }
                }
                Some(status) if *status >= 300 => report.violations.push(format!(
                    "{id} ({} {} {}): a genuine webhook was answered {status}",
                    transaction.name, transaction.reference, delivery.word
                )),
                Some(_) => {}
            }
        }
        if !sent.accepted {
            *report.gave_up.entry(transaction.name).or_default() += 1;
        }
    }
}

/// What the merchant saw: each delivery verified and a terminal event under its
/// deterministic id.
#[derive(Debug, Default)]
struct Seen<'a> {
    /// (provider, reference) → the outcomes delivered.
    outcomes: HashMap<(String, String), HashSet<shared::model::Status>>,
    /// Ids of the outcomes delivered.
    delivered: HashSet<&'a str>,
    /// Ids of every event delivered.
    all: HashSet<&'a str>,
    /// Ids answered 410, and ids answered 2xx.
    refused: BTreeSet<String>,
    accepted: HashSet<&'a str>,
}

fn merchant_saw<'a>(run: &Run<'a>, report: &mut Report) -> Seen<'a> {
    report.deliveries = run.received.len();
    let mut seen = Seen::default();
    let mut ids_seen = HashSet::new();
    for received in run.received {
        if !ids_seen.insert(received.webhook_id.as_str()) {
            report.duplicates += 1;
        }
        if !received.verified {
            report.violations.push(format!("delivery {} did not verify with the notify secret", received.webhook_id));
        }
        match received.answer {
            Some(410) => {
                seen.refused.insert(received.webhook_id.clone());
            }
            Some(status) if (200..300).contains(&status) => {
                seen.accepted.insert(received.webhook_id.as_str());
            }
            Some(_) | None => {}
        }
        let Some(event) = &received.event else {
            report.violations.push(format!("delivery {} is not a terminal event", received.webhook_id));
            continue;
        };
        seen.all.insert(received.webhook_id.as_str());
        if let Some(status) = event.outcome() {
            let (provider, reference) = (event.data.provider.as_str(), event.data.reference.as_str());
            seen.delivered.insert(received.webhook_id.as_str());
            seen.outcomes.entry((provider.to_owned(), reference.to_owned())).or_default().insert(status);
            let expected = event_id(provider, reference, status);
            if received.webhook_id != expected {
                report.violations.push(format!(
                    "{provider} {reference} {status}: delivered with webhook-id {}, not {expected}",
                    received.webhook_id
                ));
            }
        }
    }
    seen
}

/// The record says what its provider's final word says, and two outcomes delivered
/// are a conflict recorded.
fn stored_as_its_provider_said(
    transaction: &Transaction,
    record: &shared::model::TransactionRecord,
    delivered: Option<&HashSet<shared::model::Status>>,
    label: &str,
    report: &mut Report,
) {
    if !transaction.accepts(record.status) {
        let word = match transaction.alternative {
            Some(other) => format!("{} or {other}", transaction.expected),
            None => transaction.expected.to_string(),
        };
        report.violations.push(format!("{label}: status {}, its provider's final word says {word}", record.status));
    }
    if !record.conflicts.is_empty() {
        report.conflicts += 1;
    }
    if delivered.is_some_and(|s| s.len() > 1) && record.conflicts.is_empty() {
        report
            .violations
            .push(format!("{label}: two different outcomes delivered ({delivered:?}) and no conflict recorded"));
    }
    let other = delivered.and_then(|s| s.iter().find(|status| **status != record.status));
    if let (Some(other), true) = (other, record.conflicts.is_empty()) {
        report.violations.push(format!("{label}: outcome {other} delivered, and the record says {}", record.status));
    }
}

/// The words after the final one that reached the pipeline are on the record, each once;
/// each refund it shows was told at the status it stands at, and an amount mismatch of a
/// final record was told too.
fn money_after_was_kept_and_told(
    transaction: &Transaction,
    heard: &BTreeSet<&str>,
    record: &shared::model::TransactionRecord,
    seen: &Seen<'_>,
    label: &str,
    report: &mut Report,
) {
    report.money_after += 1;
    let kept: Vec<&str> = record.after_final.iter().map(|w| w.provider_status.as_str()).collect();
    for word in heard {
        match kept.iter().filter(|k| *k == word).count() {
            1 => {}
            n => report.violations.push(format!("{label}: after-final word {word} kept {n} times, not once")),
        }
    }
    for refund in &record.refunds {
        report.refunds += 1;
        let id = refund_event_id(transaction.name, &transaction.stored, &refund.id, refund.status);
        if !seen.all.contains(id.as_str()) {
            report.violations.push(format!(
                "{label}: refund {} {} never reached the merchant (event {id})",
                refund.id,
                refund.status.as_str()
            ));
        }
    }
    if let (true, Some(mismatch)) = (record.status.is_final(), &record.amount_mismatch) {
        report.mismatches += 1;
        let id = mismatch_event_id(transaction.name, &transaction.stored, mismatch.kind);
        if !seen.all.contains(id.as_str()) {
            report.violations.push(format!("{label}: amount mismatch never reached the merchant (event {id})"));
        }
    }
}

/// A final transaction's outcome (the one that stood) reached the merchant, or was
/// refused with 410 and kept in the dead-letter queue; nothing is left pending; the
/// events API lists it.
fn outcome_reached_the_merchant(
    transaction: &Transaction,
    record: &shared::model::TransactionRecord,
    seen: &Seen<'_>,
    (dead_letters, listed): (&BTreeSet<String>, &BTreeSet<String>),
    label: &str,
    report: &mut Report,
) {
    let id = event_id(transaction.name, &transaction.stored, record.status);
    let pending = record.notification_pending.is_some_and(|p| p == shared::model::NotificationPending::Pending);
    if !seen.delivered.contains(id.as_str()) {
        report.lost += 1;
        report
            .violations
            .push(format!("{label}: its outcome {} never reached the merchant (event {id})", record.status));
    }
    // Refused with 410 and never accepted after (a copy of the message may still have
    // been delivered once the burst was over).
    if seen.refused.contains(&id) && !seen.accepted.contains(id.as_str()) {
        report.refused_410.push(format!("{label} {id}"));
        if dead_letters.contains(&id) {
            report.refused_in_dead_letters += 1;
        } else {
            report
                .violations
                .push(format!("{label}: event {id} was refused with 410 and is not in the dead-letter queue"));
        }
    } else if pending {
        report.violations.push(format!("{label}: final, and still pending notification"));
    }
    if !listed.contains(&id) {
        report.violations.push(format!("{label}: event {id} is not listed by GET /events"));
    }
}

/// The ids of the events in the dead-letter queue (read and left there, hidden for 5 minutes).
async fn dead_letter_ids(sqs: &aws_sdk_sqs::Client, url: &str) -> Result<BTreeSet<String>, Error> {
    let mut ids = BTreeSet::new();
    loop {
        let output =
            sqs.receive_message().queue_url(url).max_number_of_messages(10).visibility_timeout(300).send().await?;
        let messages = output.messages.unwrap_or_default();
        if messages.is_empty() {
            return Ok(ids);
        }
        for message in messages {
            let body: serde_json::Value = serde_json::from_str(message.body().unwrap_or_default()).unwrap_or_default();
            if let Some(id) = body["id"].as_str() {
                ids.insert(id.to_owned());
            }
        }
    }
}

/// Every event id `GET /events` lists, page after page.
async fn listed_events(client: &reqwest::Client, base: &str) -> Result<BTreeSet<String>, Error> {
    let mut ids = BTreeSet::new();
    let mut after: Option<String> = None;
    loop {
        let mut query = vec![("limit", "100".to_owned())];
        if let Some(after) = &after {
            query.push(("after", after.clone()));
        }
        let response = client.get(format!("{base}/events")).query(&query).send().await?;
        let status = response.status();
        let page: serde_json::Value = response.json().await?;
        if !status.is_success() {
            return Err(format!("GET /events answered {status}: {page}").into());
        }
        for event in page["data"].as_array().into_iter().flatten() {
            if let Some(id) = event["id"].as_str() {
                ids.insert(id.to_owned());
            }
        }
        match page["next"].as_str() {
            Some(next) => after = Some(next.to_owned()),
            None => return Ok(ids),
        }
    }
}
