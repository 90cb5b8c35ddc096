//! The AZQR webhook end to end against DynamoDB Local and the SQS server, with the
//! pipeline's outages (the store, the queue) at its final transition. The scenarios every
//! provider shares are in tests/it/providers.rs; this file is compiled into that test
//! binary (see the workspace's build.rs), so that the tests link the AWS SDK once.

use crate::support::{unique_rrn, Harness};
use azqr_webhook::simulator::put;
use azqr_webhook::Azqr;
use shared::model::{event_id, NotificationPending, Status};
use shared::storage::{EventQueue, TransactionStore};
use shared::runtime::config::Secret;
use shared::pipeline::Webhook;
use time::OffsetDateTime;

const KEY: &str = "integration-test-azqr-key";

fn at(seconds: i64) -> OffsetDateTime {
    OffsetDateTime::from_unix_timestamp(1_795_000_000 + seconds).expect("timestamp")
}

fn webhook(store: &TransactionStore, queue: &EventQueue) -> Webhook<Azqr> {
    Webhook::new(Azqr::new(Secret::new(KEY)), store.clone(), queue.clone())
}

fn status_body(status: &str) -> String {
    format!(r#"{{"status":"{status}","description":"AM04 InsufficientFunds"}}"#)
}

/// Sends one status webhook with the right key; returns the HTTP status.
async fn send(webhook: &Webhook<Azqr>, rrn: &str, status: &str, t: i64) -> u16 {
    webhook.answer(&put(rrn, Some(KEY), &status_body(status)), at(t)).await.status().as_u16()
}

#[tokio::test]
async fn normal_sequence_ends_completed_with_one_terminal_event() {
    let h = Harness::new().await;
    let webhook = webhook(&h.store, &h.queue);
    let rrn = unique_rrn();

    for (t, status) in ["read", "paid", "completed"].into_iter().enumerate() {
        assert_eq!(send(&webhook, &rrn, status, t as i64).await, 204, "{status}");
    }

    let record = h.store.get("azqr", &rrn).await.expect("get").expect("item exists");
    assert_eq!(record.status, Status::Completed);
    assert_eq!(record.provider_status, "completed");
    assert_eq!(record.reason, None);
    let history: Vec<(Status, &str)> = record.history.iter().map(|e| (e.status, e.provider_status.as_str())).collect();
    assert_eq!(history, [(Status::Pending, "read"), (Status::Processing, "paid"), (Status::Completed, "completed")]);
    assert_eq!(record.first_seen_at, at(0));
    assert_eq!(record.updated_at, at(2));
    assert_eq!(record.final_at, Some(at(2)));
    assert_eq!(record.notification_pending, Some(NotificationPending::Pending));

    let events = h.drain_events().await;
    assert_eq!(events.len(), 1, "{events:?}");
    let event = &events[0];
    assert_eq!(event.id, event_id("azqr", &rrn, Status::Completed));
    assert_eq!(event.kind.as_str(), "transaction.completed");
    assert_eq!(event.created_at, at(2));
    assert_eq!(event.data, record);
}

#[tokio::test]
async fn failure_keeps_the_description_as_reason() {
    let h = Harness::new().await;
    let webhook = webhook(&h.store, &h.queue);
    let rrn = unique_rrn();
    assert_eq!(send(&webhook, &rrn, "read", 0).await, 204);
    assert_eq!(send(&webhook, &rrn, "incompleted", 1).await, 204);
    let record = h.store.get("azqr", &rrn).await.expect("get").expect("item");
    assert_eq!(record.status, Status::Failed);
    assert_eq!(record.reason.as_deref(), Some("AM04 InsufficientFunds"));
    let events = h.drain_events().await;
    assert_eq!(events.iter().map(|e| e.kind.as_str()).collect::<Vec<_>>(), ["transaction.failed"]);
}

#[tokio::test]
async fn cancel_is_informational_and_the_outcome_follows() {
    let h = Harness::new().await;
    let webhook = webhook(&h.store, &h.queue);
    let rrn = unique_rrn();
    for (t, status) in ["read", "canceled"].into_iter().enumerate() {
        assert_eq!(send(&webhook, &rrn, status, t as i64).await, 204);
    }
    let record = h.store.get("azqr", &rrn).await.expect("get").expect("item");
    assert_eq!(record.status, Status::Canceling);
    assert!(h.drain_events().await.is_empty(), "canceling is not final");

    assert_eq!(send(&webhook, &rrn, "expired", 5).await, 204);
    let record = h.store.get("azqr", &rrn).await.expect("get").expect("item");
    assert_eq!(record.status, Status::Expired);
    let events = h.drain_events().await;
    assert_eq!(events.iter().map(|e| e.kind.as_str()).collect::<Vec<_>>(), ["transaction.expired"]);
}

#[tokio::test]
async fn every_event_delivered_twice_changes_nothing_the_second_time() {
    let h = Harness::new().await;
    let webhook = webhook(&h.store, &h.queue);
    let rrn = unique_rrn();
    let mut t = 0;
    for status in ["read", "paid", "completed"] {
        for _ in 0..2 {
            assert_eq!(send(&webhook, &rrn, status, t).await, 204);
            t += 1;
        }
    }
    let record = h.store.get("azqr", &rrn).await.expect("get").expect("item");
    assert_eq!(record.status, Status::Completed);
    assert_eq!(record.history.len(), 3, "duplicates are not history: {:?}", record.history);
    // The first delivery of each status is the one recorded.
    assert_eq!(record.history.iter().map(|e| e.received_at).collect::<Vec<_>>(), [at(0), at(2), at(4)]);
    assert_eq!(record.final_at, Some(at(4)));
    assert_eq!(h.drain_events().await.len(), 1, "one terminal event for two final deliveries");
    assert_eq!(h.item_count().await, 1);
}

#[tokio::test]
async fn out_of_order_events_never_move_a_transaction_back() {
    let h = Harness::new().await;
    let webhook = webhook(&h.store, &h.queue);

    // Final first, then the informational ones: all acknowledged, none applied.
    let rrn = unique_rrn();
    for (t, status) in ["completed", "paid", "read", "canceled"].into_iter().enumerate() {
        assert_eq!(send(&webhook, &rrn, status, t as i64).await, 204, "{status}");
    }
    let record = h.store.get("azqr", &rrn).await.expect("get").expect("item");
    assert_eq!(record.status, Status::Completed);
    assert_eq!(record.history.len(), 1);
    assert_eq!(record.updated_at, at(0));

    // Non-final out of order: paid then read stays processing.
    let other = unique_rrn();
    assert_eq!(send(&webhook, &other, "paid", 10).await, 204);
    assert_eq!(send(&webhook, &other, "read", 11).await, 204);
    let record = h.store.get("azqr", &other).await.expect("get").expect("item");
    assert_eq!(record.status, Status::Processing);
    assert_eq!(record.history.len(), 1);

    let events = h.drain_events().await;
    assert_eq!(events.len(), 1);
    assert_eq!(events[0].data.reference, rrn);
}

#[tokio::test]
async fn conflicting_final_statuses_are_kept_on_the_record_and_sent_once_each() {
    let h = Harness::new().await;
    let webhook = webhook(&h.store, &h.queue);
    let rrn = unique_rrn();
    assert_eq!(send(&webhook, &rrn, "completed", 0).await, 204);
    assert_eq!(send(&webhook, &rrn, "incompleted", 1).await, 204);
    assert_eq!(send(&webhook, &rrn, "expired", 2).await, 204);

    let record = h.store.get("azqr", &rrn).await.expect("get").expect("item");
    assert_eq!(record.status, Status::Completed);
    assert_eq!(record.reason, None);
    assert_eq!(record.history.len(), 1);
    let kept: Vec<(Status, &str)> = record.conflicts.iter().map(|c| (c.status, c.provider_status.as_str())).collect();
    assert_eq!(kept, [(Status::Failed, "incompleted"), (Status::Expired, "expired")]);
    let events = h.drain_events().await;
    let sent: Vec<(&str, &str)> = events.iter().map(|e| (e.id.as_str(), e.kind.as_str())).collect();
    let conflict = |status| shared::model::conflict_event_id("azqr", &rrn, status);
    let (failed, expired) = (conflict(Status::Failed), conflict(Status::Expired));
    let expected = [
        (event_id("azqr", &rrn, Status::Completed), "transaction.completed"),
        (failed, "transaction.conflict"),
        (expired, "transaction.conflict"),
    ];
    let expected: Vec<(&str, &str)> = expected.iter().map(|(id, kind)| (id.as_str(), *kind)).collect();
    assert_eq!(sent, expected, "the outcome, then each conflict once");
    assert!(events.iter().all(|e| e.data.status == Status::Completed), "the stored outcome never changes");
}

#[tokio::test]
async fn queue_outage_at_the_final_transition_answers_5xx_and_the_retry_enqueues_exactly_once() {
    let h = Harness::new().await;
    let healthy = webhook(&h.store, &h.queue);
    let broken = webhook(&h.store, &h.unreachable_queue());
    let rrn = unique_rrn();

    assert_eq!(send(&healthy, &rrn, "paid", 0).await, 204);
    let response = broken.answer(&put(&rrn, Some(KEY), &status_body("completed")), at(1)).await;
    assert_eq!(response.status().as_u16(), 500);
    let body: serde_json::Value = serde_json::from_slice(response.body().as_ref()).expect("JSON error body");
    assert_eq!(body["error"]["code"], "internal_error");
    assert!(!body.to_string().contains("127.0.0.1"), "nothing internal in the body: {body}");

    // The state is whole: completed and still pending notification; nothing was queued.
    let record = h.store.get("azqr", &rrn).await.expect("get").expect("item");
    assert_eq!(record.status, Status::Completed);
    assert!(record.is_notification_pending());
    assert!(h.drain_events().await.is_empty());

    // AZQR retries: the write is a duplicate, the pending record is enqueued again.
    assert_eq!(send(&healthy, &rrn, "completed", 30).await, 204);
    assert_eq!(send(&healthy, &rrn, "completed", 31).await, 204);
    let events = h.drain_events().await;
    assert_eq!(events.len(), 1, "exactly one message after the retries: {events:?}");
    assert_eq!(events[0].id, event_id("azqr", &rrn, Status::Completed));
    assert_eq!(events[0].data, record, "the event carries the record as first stored");
    let record_after = h.store.get("azqr", &rrn).await.expect("get").expect("item");
    assert_eq!(record_after, record, "retries changed nothing stored");
}

#[tokio::test]
async fn store_outage_answers_5xx_and_queues_nothing() {
    let h = Harness::new().await;
    let broken = webhook(&h.unreachable_store(), &h.queue);
    let rrn = unique_rrn();
    let response = broken.answer(&put(&rrn, Some(KEY), &status_body("completed")), at(0)).await;
    assert_eq!(response.status().as_u16(), 500);
    assert!(h.drain_events().await.is_empty());
    assert_eq!(h.item_count().await, 0);
}

#[tokio::test]
async fn bad_inputs_answer_4xx_with_a_stable_code_and_write_nothing() {
    let h = Harness::new().await;
    let webhook = webhook(&h.store, &h.queue);
    let rrn = unique_rrn();
    let completed = status_body("completed");
    let oversized = format!(r#"{{"status":"completed","description":"{}"}}"#, "x".repeat(300 * 1024));
    let mut wrong_type = put(&rrn, Some(KEY), &completed);
    wrong_type.headers.insert("content-type", http::HeaderValue::from_static("text/plain"));

    let cases = [
        ("missing key", put(&rrn, None, &completed), 401, "unauthorized"),
        ("wrong key", put(&rrn, Some("integration-test-azqr-kex"), &completed), 401, "unauthorized"),
        ("short rrn", put("12345678901", Some(KEY), &completed), 400, "invalid_field"),
        ("letters in rrn", put("1234567890ab", Some(KEY), &completed), 400, "invalid_field"),
        ("malformed JSON", put(&rrn, Some(KEY), r#"{"status":"#), 400, "malformed_json"),
        ("wrong shape", put(&rrn, Some(KEY), r#"["completed"]"#), 400, "malformed_json"),
        ("empty body", put(&rrn, Some(KEY), ""), 400, "malformed_json"),
        ("unknown status", put(&rrn, Some(KEY), &status_body("refunded")), 422, "unsupported_value"),
        ("oversized body", put(&rrn, Some(KEY), &oversized), 413, "payload_too_large"),
        ("wrong content type", wrong_type, 415, "unsupported_media_type"),
    ];
    for (name, request, status, code) in cases {
        let response = webhook.answer(&request, at(0)).await;
        assert_eq!(response.status().as_u16(), status, "{name}");
        let body: serde_json::Value = serde_json::from_slice(response.body().as_ref()).expect("JSON error body");
        assert_eq!(body["error"]["code"], code, "{name}");
        assert!(body["error"]["message"].as_str().is_some_and(|m| !m.is_empty()), "{name}");
        assert!(!body.to_string().contains(KEY), "{name}: key echoed");
    }
    assert_eq!(h.item_count().await, 0, "bad input wrote an item");
    assert!(h.drain_events().await.is_empty(), "bad input queued an event");
}

#[tokio::test]
async fn store_throttled_answers_5xx_and_queues_nothing() {
    use wiremock::{matchers::method, Mock, MockServer, ResponseTemplate};
    let h = Harness::new().await;
    // DynamoDB Local cannot throttle: a fake endpoint answers every call as DynamoDB does
    // when throttling, so the SDK retries and then gives up.
    let throttling = MockServer::start().await;
    let error = r#"{"__type":"com.amazonaws.dynamodb.v20120810#ProvisionedThroughputExceededException","message":"Rate exceeded"}"#;
    Mock::given(method("POST"))
        .respond_with(ResponseTemplate::new(400).set_body_raw(error, "application/x-amz-json-1.0"))
        .mount(&throttling)
        .await;
    let store = TransactionStore::new(local_pipeline::dynamodb_client(&throttling.uri()), &h.resources.table_name);
    let throttled = webhook(&store, &h.queue);
    let response = throttled.answer(&put(&unique_rrn(), Some(KEY), &status_body("completed")), at(0)).await;
    assert_eq!(response.status().as_u16(), 500);
    let attempts = throttling.received_requests().await.expect("recorded").len();
    assert!(attempts >= 2, "the SDK retried a throttled write ({attempts} attempts)");
    assert!(h.drain_events().await.is_empty());
    assert_eq!(h.item_count().await, 0);
}
