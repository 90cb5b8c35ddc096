//! The invariants of a chaos run, checked once it healed. Each violation is a sentence
//! naming the transaction or request it is about.

use std::collections::{BTreeSet, HashMap, HashSet};

use futures_util::StreamExt;
use shared::model::event_id;
use shared::TransactionStore;

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

pub async fn check(run: Run<'_>) -> Result<Report, Error> {
    let mut report = Report { transactions: run.transactions.len(), ..Report::default() };
    let violations = &mut report.violations;

    // Requests: no 5xx without a fault it met; no genuine webhook refused.
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
                        violations.push(format!(
                            "{id} ({} {} {}) was answered {status} and met no injected fault",
                            transaction.name, transaction.reference, delivery.word
                        ));
                    }
                }
                Some(status) if *status >= 300 => violations.push(format!(
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

    // What the merchant saw.
    report.deliveries = run.received.len();
    let mut ids_seen = HashSet::new();
    let mut outcomes: HashMap<(String, String), HashSet<shared::Status>> = HashMap::new();
    let mut delivered: HashSet<&str> = HashSet::new();
    let mut refused: BTreeSet<String> = BTreeSet::new();
    let mut accepted: HashSet<&str> = HashSet::new();
    for received in run.received {
        if !ids_seen.insert(received.webhook_id.as_str()) {
            report.duplicates += 1;
        }
        if !received.verified {
            violations.push(format!("delivery {} did not verify with the notify secret", received.webhook_id));
        }
        match received.answer {
            Some(410) => {
                refused.insert(received.webhook_id.clone());
            }
            Some(status) if (200..300).contains(&status) => {
                accepted.insert(received.webhook_id.as_str());
            }
            Some(_) | None => {}
        }
        let Some(event) = &received.event else {
            violations.push(format!("delivery {} is not a terminal event", received.webhook_id));
            continue;
        };
        if let Some(status) = event.outcome() {
            let (provider, reference) = (event.data.provider.as_str(), event.data.reference.as_str());
            delivered.insert(received.webhook_id.as_str());
            outcomes.entry((provider.to_owned(), reference.to_owned())).or_default().insert(status);
            let expected = event_id(provider, reference, status);
            if received.webhook_id != expected {
                violations.push(format!(
                    "{provider} {reference} {status}: delivered with webhook-id {}, not {expected}",
                    received.webhook_id
                ));
            }
        }
    }

    // The dead-letter queue: every event refused with 410 is there.
    let dead_letters = dead_letter_ids(run.sqs, run.dead_letter_url).await?;
    report.dead_letters = dead_letters.len();

    // The events API lists every event.
    let listed = listed_events(run.client, run.base).await?;
    report.listed_events = listed.len();

    // Every transaction, as stored.
    let records = futures_util::stream::iter(run.transactions.iter().filter(|t| t.reached))
        .map(|t| async move { (t, run.store.get(t.name, &t.stored).await) })
        .buffer_unordered(16)
        .collect::<Vec<_>>()
        .await;
    for (transaction, record) in records {
        let label = format!("{} {}", transaction.name, transaction.stored);
        let record = match record {
            Ok(Some(record)) => record,
            Ok(None) => {
                violations.push(format!("{label}: not stored (expected {})", transaction.expected));
                continue;
            }
            Err(error) => return Err(format!("{label}: cannot read it: {error}").into()),
        };
        if !transaction.accepts(record.status) {
            let word = match transaction.alternative {
                Some(other) => format!("{} or {other}", transaction.expected),
                None => transaction.expected.to_string(),
            };
            violations.push(format!("{label}: status {}, its provider's final word says {word}", record.status));
        }
        if !record.conflicts.is_empty() {
            report.conflicts += 1;
        }
        let delivered_statuses = outcomes.get(&(transaction.name.to_owned(), transaction.stored.clone()));
        if delivered_statuses.is_some_and(|s| s.len() > 1) && record.conflicts.is_empty() {
            violations.push(format!(
                "{label}: two different outcomes delivered ({delivered_statuses:?}) and no conflict recorded"
            ));
        }
        let other = delivered_statuses.and_then(|s| s.iter().find(|status| **status != record.status));
        if let (Some(other), true) = (other, record.conflicts.is_empty()) {
            violations.push(format!("{label}: outcome {other} delivered, and the record says {}", record.status));
        }
        if !transaction.expected.is_final() {
            if delivered_statuses.is_some() {
                violations.push(format!("{label}: an outcome was delivered for a transaction that is not final"));
            }
            continue;
        }
        // The outcome that stood (for conflicting words, whichever landed first).
        let id = event_id(transaction.name, &transaction.stored, record.status);
        let pending = record.notification_pending.is_some_and(|p| p == shared::model::NotificationPending::Pending);
        if !delivered.contains(id.as_str()) {
            report.lost += 1;
            violations.push(format!("{label}: its outcome {} never reached the merchant (event {id})", record.status));
        }
        // Refused with 410 and never accepted after (a copy of the message may still have
        // been delivered once the burst was over).
        if refused.contains(&id) && !accepted.contains(id.as_str()) {
            report.refused_410.push(format!("{label} {id}"));
            if dead_letters.contains(&id) {
                report.refused_in_dead_letters += 1;
            } else {
                violations
                    .push(format!("{label}: event {id} was refused with 410 and is not in the dead-letter queue"));
            }
        } else if pending {
            violations.push(format!("{label}: final, and still pending notification"));
        }
        if !listed.contains(&id) {
            violations.push(format!("{label}: event {id} is not listed by GET /events"));
        }
    }
    Ok(report)
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
