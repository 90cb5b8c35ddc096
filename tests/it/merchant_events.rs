//! What the merchant receives besides outcomes, against DynamoDB Local, the SQS server
//! and a merchant endpoint served over HTTP: progress events (`transaction.updated`, opt
//! in) in order and never after the outcome, event types switched off, and AZQR's
//! customer message on the record and its events.

use std::time::Duration;

use crate::support::{unique_rrn, Harness};
use shared::model::notification::{updated_event_id, EventTypes};
use shared::model::{event_id, SyncPolicy};
use shared::{Recorder, Secret, Status, TerminalEvent, Webhook};
use time::OffsetDateTime;
use wiremock::matchers::method;
use wiremock::{Mock, MockServer, ResponseTemplate};

const KEY: &str = "merchant-events-azqr-key";

fn azqr(h: &Harness, events: EventTypes) -> Webhook<azqr_webhook::Azqr> {
    let recorder = Recorder::new(h.store.clone(), h.queue.clone(), SyncPolicy::default()).with_events(events);
    Webhook::with_recorder(azqr_webhook::Azqr::new(Secret::new(KEY)), recorder)
}

async fn send(webhook: &Webhook<azqr_webhook::Azqr>, rrn: &str, word: &str, t: i64) {
    let body = format!(r#"{{"status":"{word}","description":"AM04"}}"#);
    let request = azqr_webhook::simulator::put(rrn, Some(KEY), &body);
    let at = OffsetDateTime::from_unix_timestamp(1_795_000_000 + t).expect("time");
    assert_eq!(webhook.answer(&request, at).await.status().as_u16(), 204, "{word}");
}

#[tokio::test]
async fn progress_events_arrive_in_order_and_stop_at_the_final_event() {
    let h = Harness::new().await;
    let types = EventTypes::parse("transaction.completed, transaction.updated").expect("types");
    let webhook = azqr(&h, types);
    let rrn = unique_rrn();
    // A duplicate (resent with the same id: SQS drops it), then the outcome, then stale
    // words and a conflicting final, whose type is off.
    for (t, word) in ["read", "paid", "paid", "canceled", "completed", "paid", "read", "expired"].iter().enumerate() {
        send(&webhook, &rrn, word, t as i64).await;
    }
    let events = h.drain_events().await;
    let sent: Vec<(&str, Status, &str)> =
        events.iter().map(|e| (e.kind.as_str(), e.data.status, e.id.as_str())).collect();
    let updated = |status| updated_event_id("azqr", &rrn, status);
    let (pending, processing, canceling) =
        (updated(Status::Pending), updated(Status::Processing), updated(Status::Canceling));
    let completed = event_id("azqr", &rrn, Status::Completed);
    assert_eq!(
        sent,
        [
            ("transaction.updated", Status::Pending, pending.as_str()),
            ("transaction.updated", Status::Processing, processing.as_str()),
            ("transaction.updated", Status::Canceling, canceling.as_str()),
            ("transaction.completed", Status::Completed, completed.as_str()),
        ],
        "in order, one per transition, nothing after the outcome, no conflict event (off)"
    );
    assert_eq!(events[0].data.customer_message.as_deref(), Some("QR code oxuduldu. Zəhmət olmasa ödənişi təsdiqləyin"));
    let record = h.store.get("azqr", &rrn).await.expect("get").expect("item");
    assert_eq!(record.customer_message.as_deref(), Some("Əməliyyatınız uğurla başa çatmışdır"));
    assert_eq!(events[3].data.customer_message, record.customer_message);

    // With the default types: no progress events at all, and an outcome whose type is
    // off is neither queued nor left pending.
    let quiet = azqr(&h, EventTypes::parse("transaction.failed").expect("types"));
    let other = unique_rrn();
    for (t, word) in ["read", "paid", "completed"].iter().enumerate() {
        send(&quiet, &other, word, t as i64).await;
    }
    assert!(h.drain_events().await.is_empty());
    let record = h.store.get("azqr", &other).await.expect("get").expect("item");
    assert_eq!((record.status, record.notification_pending), (Status::Completed, None));
}

/// A progress event that reaches the notifier after its transaction's outcome (a late
/// resend) is dropped; the outcome is delivered.
#[tokio::test]
async fn a_progress_event_after_the_outcome_is_never_delivered() {
    let h = Harness::new().await;
    let webhook = azqr(&h, EventTypes::default());
    let rrn = unique_rrn();
    send(&webhook, &rrn, "paid", 0).await;
    let before = h.store.get("azqr", &rrn).await.expect("get").expect("item");
    send(&webhook, &rrn, "completed", 1).await;
    h.queue.send(&TerminalEvent::for_update(&before).expect("non-final")).await.expect("send");

    let merchant = MockServer::start().await;
    Mock::given(method("POST")).respond_with(ResponseTemplate::new(204)).mount(&merchant).await;
    let config = notifier::NotifierConfig {
        notify_url: merchant.uri(),
        secret: Secret::new("whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw"),
        table_name: h.resources.table_name.clone(),
        queue_url: h.resources.queue_url.clone(),
        dead_letter_queue_url: h.resources.dead_letter_queue_url.clone(),
        event_retention: Duration::from_secs(86_400),
    };
    let notifier =
        notifier::Notifier::new(config, h.store.clone(), h.sqs.clone(), Duration::from_secs(5)).expect("notifier");
    for _ in 0..2 {
        notifier::poll_once(&notifier, 1).await.expect("poll");
    }
    let delivered: Vec<String> = merchant
        .received_requests()
        .await
        .expect("recorded")
        .iter()
        .map(|r| r.headers["webhook-id"].to_str().expect("ascii").to_owned())
        .collect();
    assert_eq!(delivered, [event_id("azqr", &rrn, Status::Completed)]);
    assert!(h.drain_queue().await.is_empty(), "the progress event was consumed, not retried");
}

fn notifier_for(h: &Harness, merchant: &MockServer) -> notifier::Notifier {
    let config = notifier::NotifierConfig { notify_url: merchant.uri(), ..notifier_config(h) };
    notifier::Notifier::new(config, h.store.clone(), h.sqs.clone(), Duration::from_secs(5))
        .expect("notifier")
        .with_backoff(vec![Duration::ZERO])
}

/// Every attempt is kept: its time, status, duration and the first 256 bytes of what the
/// endpoint answered, through two failures and then the success.
#[tokio::test]
async fn attempts_are_recorded_through_failures_then_success() {
    let h = Harness::new().await;
    let webhook = azqr(&h, EventTypes::default());
    let rrn = unique_rrn();
    send(&webhook, &rrn, "completed", 0).await;
    let merchant = MockServer::start().await;
    Mock::given(method("POST"))
        .respond_with(ResponseTemplate::new(500).set_body_string("é".repeat(200)))
        .up_to_n_times(2)
        .mount(&merchant)
        .await;
    Mock::given(method("POST")).respond_with(ResponseTemplate::new(204)).mount(&merchant).await;
    let notifier = notifier_for(&h, &merchant);
    let id = event_id("azqr", &rrn, Status::Completed);
    let log = h.store.event_log(Duration::from_secs(30 * 86_400));
    for _ in 0..20 {
        notifier::poll_once(&notifier, 1).await.expect("poll");
        if log.get(&id).await.expect("get").is_some_and(|e| e.delivered_at.is_some()) {
            break;
        }
    }
    let stored = log.get(&id).await.expect("get").expect("stored");
    let statuses: Vec<Option<u16>> = stored.attempts.iter().map(|a| a.status).collect();
    assert_eq!(statuses, [Some(500), Some(500), Some(204)]);
    assert_eq!(stored.attempt_count, 3);
    assert!(stored.delivered_at.is_some());
    let first = stored.attempts[0].response.as_deref().expect("the start of the answer");
    assert!(first.len() <= 256 && first.len() >= 254 && first.starts_with("éé"), "{} bytes", first.len());
    assert_eq!(stored.attempts[2].response, None, "204 has no body");
    assert!(stored.attempts.iter().all(|a| a.kind == shared::event_log::AttemptKind::Automatic && a.error.is_none()));
    assert_eq!(stored.event["id"], id.as_str());
    assert_eq!(stored.event["type"], "transaction.completed");
    let sent: Vec<String> = merchant
        .received_requests()
        .await
        .expect("recorded")
        .iter()
        .map(|r| String::from_utf8_lossy(&r.body).into_owned())
        .collect();
    assert!(sent.iter().all(|body| *body == stored.body), "the stored body is what was sent");

    // A transport error is kept as such.
    let closed = notifier::Notifier::new(
        notifier::NotifierConfig { notify_url: crate::support::closed_port_endpoint(), ..notifier_config(&h) },
        h.store.clone(),
        h.sqs.clone(),
        Duration::from_secs(2),
    )
    .expect("notifier");
    let other = unique_rrn();
    send(&webhook, &other, "completed", 1).await;
    notifier::poll_once(&closed, 1).await.expect("poll");
    let failed = log.get(&event_id("azqr", &other, Status::Completed)).await.expect("get").expect("stored");
    assert_eq!((failed.attempts[0].status, failed.attempts[0].error.as_deref()), (None, Some("connection failed")));
    assert_eq!(failed.delivered_at, None);
}

fn notifier_config(h: &Harness) -> notifier::NotifierConfig {
    notifier::NotifierConfig {
        notify_url: String::new(),
        secret: Secret::new("whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw"),
        table_name: h.resources.table_name.clone(),
        queue_url: h.resources.queue_url.clone(),
        dead_letter_queue_url: h.resources.dead_letter_queue_url.clone(),
        event_retention: Duration::from_secs(30 * 86_400),
    }
}
