//! What the merchant receives besides outcomes, against DynamoDB Local, the SQS server
//! and a merchant endpoint served over HTTP: progress events (`transaction.updated`, opt
//! in) in order and never after the outcome, event types switched off, and AZQR's
//! customer message on the record and its events.

use std::time::Duration;

use crate::support::{unique_rrn, Harness};
use shared::model::{event_id, updated_event_id, EventTypes, MerchantEvent, Status, SyncPolicy};
use shared::pipeline::{Webhook, WritePath};
use shared::runtime::config::Secret;
use time::OffsetDateTime;
use wiremock::matchers::method;
use wiremock::{Mock, MockServer, ResponseTemplate};

const KEY: &str = "merchant-events-azqr-key";

fn azqr(h: &Harness, events: EventTypes) -> Webhook<azqr_webhook::Azqr> {
    let write_path = WritePath::new(h.store.clone(), h.queue.clone(), SyncPolicy::default()).with_events(events);
    Webhook::with_write_path(azqr_webhook::Azqr::new(Secret::new(KEY)), write_path)
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
    h.queue.send(&MerchantEvent::for_update(&before).expect("non-final")).await.expect("send");

    let merchant = MockServer::start().await;
    Mock::given(method("POST")).respond_with(ResponseTemplate::new(204)).mount(&merchant).await;
    let notifier = notifier_for(&h, &merchant);
    for _ in 0..2 {
        h.poll_notifier(&notifier, 1).await.expect("poll");
    }
    let delivered = webhook_ids(&merchant).await;
    assert_eq!(delivered, [event_id("azqr", &rrn, Status::Completed)]);
    assert!(h.drain_queue().await.is_empty(), "the progress event was consumed, not retried");
}

/// A `transaction.updated` and the outcome of one transaction reach the notifier in one
/// batch, long after the outcome was written (the record is final when the progress
/// event is read): the merchant receives both, in order, also when the first delivery
/// fails once; the outcome waits behind the failed progress event, untried.
#[tokio::test]
async fn a_progress_event_and_its_outcome_in_one_batch_arrive_in_order_through_a_failure() {
    let h = Harness::new().await;
    let webhook = azqr(&h, EventTypes::parse("transaction.completed, transaction.updated").expect("types"));
    let rrn = unique_rrn();
    send(&webhook, &rrn, "paid", 0).await;
    send(&webhook, &rrn, "completed", 1).await;
    let merchant = MockServer::start().await;
    Mock::given(method("POST"))
        .respond_with(ResponseTemplate::new(500))
        .up_to_n_times(1)
        .with_priority(1)
        .mount(&merchant)
        .await;
    Mock::given(method("POST")).respond_with(ResponseTemplate::new(204)).with_priority(2).mount(&merchant).await;
    let notifier = notifier_for(&h, &merchant);
    let (progress, outcome) =
        (updated_event_id("azqr", &rrn, Status::Processing), event_id("azqr", &rrn, Status::Completed));

    let batch = h.receive().await;
    assert_eq!(batch.len(), 2, "one batch holds both");
    let response =
        notifier.handle_batch(local_pipeline::triggers::to_sqs_event(&batch), OffsetDateTime::now_utc()).await;
    assert_eq!(response.batch_item_failures.len(), 2, "the outcome is held behind the failed progress event");
    assert_eq!(webhook_ids(&merchant).await, std::slice::from_ref(&progress), "the outcome was not tried");

    let batch = h.receive().await;
    assert_eq!(batch.len(), 2, "both back together, in order");
    let response =
        notifier.handle_batch(local_pipeline::triggers::to_sqs_event(&batch), OffsetDateTime::now_utc()).await;
    assert!(response.batch_item_failures.is_empty());
    assert_eq!(webhook_ids(&merchant).await, [progress.clone(), progress, outcome], "in order");
    let record = h.store.get("azqr", &rrn).await.expect("get").expect("item");
    assert!(record.notified_at.is_some() && record.notification_pending.is_none());
}

/// The `webhook-id` of every delivery the merchant received, in order.
async fn webhook_ids(merchant: &MockServer) -> Vec<String> {
    let requests = merchant.received_requests().await.expect("recorded");
    requests.iter().map(|r| r.headers["webhook-id"].to_str().expect("ascii").to_owned()).collect()
}

fn notifier_for(h: &Harness, merchant: &MockServer) -> notifier::Notifier {
    let config = notifier::NotifierConfig { notify_url: merchant.uri(), ..notifier_config(h) };
    notifier::Notifier::new(
        config,
        notifier::fixed_signers(MERCHANT_SECRET).expect("signers"),
        h.store.clone(),
        h.sqs.clone(),
        Duration::from_secs(5),
    )
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
        h.poll_notifier(&notifier, 1).await.expect("poll");
        if log.get(&id).await.expect("get").is_some_and(|e| e.delivered_at.is_some()) {
            break;
        }
    }
    let stored = log.get(&id).await.expect("get").expect("stored");
    let attempt_bytes: usize = stored.attempts.iter().map(|a| serde_json::to_string(a).map_or(0, |t| t.len())).sum();
    println!("event log: body {} bytes, 3 attempts {} bytes", stored.body.len(), attempt_bytes);
    let statuses: Vec<Option<u16>> = stored.attempts.iter().map(|a| a.status).collect();
    assert_eq!(statuses, [Some(500), Some(500), Some(204)]);
    assert_eq!(stored.attempt_count, 3);
    assert!(stored.delivered_at.is_some());
    let first = stored.attempts[0].response.as_deref().expect("the start of the answer");
    assert!(first.len() <= 256 && first.len() >= 254 && first.starts_with("éé"), "{} bytes", first.len());
    assert_eq!(stored.attempts[2].response, None, "204 has no body");
    assert!(stored.attempts.iter().all(|a| a.kind == shared::storage::AttemptKind::Automatic && a.error.is_none()));
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
        notifier::fixed_signers(MERCHANT_SECRET).expect("signers"),
        h.store.clone(),
        h.sqs.clone(),
        Duration::from_secs(2),
    )
    .expect("notifier");
    let other = unique_rrn();
    send(&webhook, &other, "completed", 1).await;
    h.poll_notifier(&closed, 1).await.expect("poll");
    let failed = log.get(&event_id("azqr", &other, Status::Completed)).await.expect("get").expect("stored");
    assert_eq!((failed.attempts[0].status, failed.attempts[0].error.as_deref()), (None, Some("connection failed")));
    assert_eq!(failed.delivered_at, None);
}

const MERCHANT_SECRET: &str = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw";

fn notifier_config(h: &Harness) -> notifier::NotifierConfig {
    notifier::NotifierConfig {
        notify_url: String::new(),
        table_name: h.resources.table_name.clone(),
        queue_url: h.resources.queue_url.clone(),
        dead_letter_queue_url: h.resources.dead_letter_queue_url.clone(),
        event_retention: Duration::from_secs(30 * 86_400),
        failing_alert: Duration::from_secs(30 * 60),
    }
}

// --- The events API ----------------------------------------------------------------

fn events_api(h: &Harness) -> events_api::EventsApi {
    events_api::EventsApi::new(h.store.event_log(Duration::from_secs(30 * 86_400)), h.queue.clone())
}

async fn call(
    api: &events_api::EventsApi,
    route: events_api::Route,
    request: shared::pipeline::Inbound,
) -> (u16, serde_json::Value) {
    let response = api.answer(route, &request, OffsetDateTime::now_utc()).await;
    let status = response.status().as_u16();
    (status, serde_json::from_slice(response.body().as_ref()).expect("JSON"))
}

fn get(query: &[(&str, &str)]) -> shared::pipeline::Inbound {
    query
        .iter()
        .fold(shared::pipeline::Inbound::new(http::Method::GET, ""), |r, (name, value)| r.with_query(name, value))
}

/// A stored event for a transaction of `reference`, created at `t` seconds, delivered or not.
async fn logged(h: &Harness, reference: &str, t: i64, delivered: bool) -> String {
    let at = OffsetDateTime::from_unix_timestamp(1_795_000_000 + t).expect("time");
    let mut record = shared::model::TransactionRecord {
        final_at: Some(at),
        ..serde_json::from_value(serde_json::json!({
            "provider": "azqr", "reference": reference, "status": "completed", "provider_status": "completed",
            "first_seen_at": "2026-11-18T11:06:40Z", "updated_at": "2026-11-18T11:06:40Z"
        }))
        .expect("record")
    };
    record.updated_at = at;
    let event = MerchantEvent::for_record(&record).expect("final");
    let body = serde_json::to_string(&event).expect("JSON");
    let attempt = shared::storage::Attempt {
        at,
        status: Some(if delivered { 204 } else { 500 }),
        error: None,
        duration_ms: 3,
        response: None,
        kind: shared::storage::AttemptKind::Automatic,
    };
    let log = h.store.event_log(Duration::from_secs(86_400));
    log.record_attempt(&event, &body, &attempt, delivered).await.expect("record");
    event.id
}

/// The catch-up feed pages through 260 events, oldest first, with no gap and no repeat;
/// filters and bad parameters.
#[tokio::test]
async fn the_feed_pages_through_every_event_in_creation_order() {
    let h = Harness::new().await;
    let mut expected = Vec::new();
    for i in 0..260 {
        // Created out of order in time; the feed orders them by creation.
        let t = (i * 7919) % 260;
        expected.push((t, logged(&h, &format!("{:012}", 900_000_000_000_u64 + i as u64), t, i % 3 == 0).await));
    }
    expected.sort();
    let expected: Vec<String> = expected.into_iter().map(|(_, id)| id).collect();
    let api = events_api(&h);
    let mut seen = Vec::new();
    let mut cursor: Option<String> = None;
    let mut pages = 0;
    loop {
        let mut query = vec![("limit", "37")];
        if let Some(after) = &cursor {
            query.push(("after", after.as_str()));
        }
        let (status, page) = call(&api, events_api::Route::List, get(&query)).await;
        assert_eq!(status, 200, "{page}");
        pages += 1;
        let data = page["data"].as_array().expect("data");
        assert!(data.len() <= 37);
        seen.extend(data.iter().map(|e| e["id"].as_str().expect("id").to_owned()));
        match page["next"].as_str() {
            Some(next) => cursor = Some(next.to_owned()),
            None => break,
        }
        assert!(pages < 20, "the feed ends");
    }
    assert_eq!(seen, expected, "every event once, oldest first ({pages} pages)");

    let (_, undelivered) = call(&api, events_api::Route::List, get(&[("delivered", "false"), ("limit", "100")])).await;
    let data = undelivered["data"].as_array().expect("data");
    assert_eq!(data.len(), 100);
    assert!(data.iter().all(|e| e["delivered_at"].is_null() && e["attempt_count"] == 1));
    let since = "2026-11-18T11:10:00Z"; // t >= 200 s
    let (_, recent) = call(&api, events_api::Route::List, get(&[("since", since), ("limit", "100")])).await;
    assert_eq!(recent["data"].as_array().map(Vec::len), Some(60));
    let (_, none) = call(&api, events_api::Route::List, get(&[("type", "transaction.failed")])).await;
    assert_eq!((none["data"].as_array().map(Vec::len), &none["next"]), (Some(0), &serde_json::Value::Null));
    for bad in [("limit", "0"), ("after", "x"), ("since", "today"), ("type", "payment"), ("delivered", "1")] {
        let (status, body) = call(&api, events_api::Route::List, get(&[bad])).await;
        assert_eq!((status, body["error"]["code"].as_str()), (400, Some("invalid_field")), "{bad:?}");
    }
}

/// A filter that matches one event among hundreds, which every other shard holds: the
/// listing returns it (it never waits on a shard that has read past it) and ends, so that
/// `recover` finds every undelivered event.
#[tokio::test]
async fn a_filtered_listing_finds_the_one_match_among_hundreds_across_shards() {
    use futures_util::StreamExt;
    let h = Harness::new().await;
    let undelivered = logged(&h, "800000000000", 0, false).await;
    futures_util::stream::iter(1..=900_i64)
        .for_each_concurrent(16, |i| {
            let h = &h;
            async move {
                logged(h, &format!("{:012}", 800_000_000_000 + i), i, true).await;
            }
        })
        .await;
    let api = events_api(&h);
    let mut found = Vec::new();
    let mut cursor: Option<String> = None;
    for _ in 0..10 {
        let mut query = vec![("delivered", "false"), ("limit", "100")];
        if let Some(after) = &cursor {
            query.push(("after", after.as_str()));
        }
        let (status, page) = call(&api, events_api::Route::List, get(&query)).await;
        assert_eq!(status, 200, "{page}");
        found.extend(page["data"].as_array().expect("data").iter().map(|e| e["id"].as_str().expect("id").to_owned()));
        match page["next"].as_str() {
            Some(next) => {
                assert_ne!(Some(next), cursor.as_deref(), "the cursor moves on");
                cursor = Some(next.to_owned());
            }
            None => break,
        }
    }
    assert_eq!(found, [undelivered]);
}

/// A resend within SQS's 5-minute deduplication window is delivered, with the same
/// `webhook-id`, and recorded as a resend; an unknown id is 404.
#[tokio::test]
async fn a_resend_within_five_minutes_is_delivered_again() {
    let h = Harness::new().await;
    let webhook = azqr(&h, EventTypes::default());
    let rrn = unique_rrn();
    send(&webhook, &rrn, "completed", 0).await;
    let merchant = MockServer::start().await;
    Mock::given(method("POST")).respond_with(ResponseTemplate::new(204)).mount(&merchant).await;
    let notifier = notifier_for(&h, &merchant);
    h.poll_notifier(&notifier, 1).await.expect("poll");
    let id = event_id("azqr", &rrn, Status::Completed);
    let api = events_api(&h);
    let resend = shared::pipeline::Inbound::new(http::Method::POST, "").with_path_parameter("id", &id);
    let (status, body) = call(&api, events_api::Route::Resend, resend).await;
    assert_eq!((status, body["id"].as_str()), (202, Some(id.as_str())));
    h.poll_notifier(&notifier, 1).await.expect("poll");
    let ids = webhook_ids(&merchant).await;
    assert_eq!(ids, [id.clone(), id.clone()], "delivered twice, the same webhook-id");
    let attempts = shared::pipeline::Inbound::new(http::Method::GET, "").with_path_parameter("id", &id);
    let (_, attempts) = call(&api, events_api::Route::Attempts, attempts).await;
    let kinds: Vec<&str> =
        attempts["data"].as_array().expect("data").iter().map(|a| a["kind"].as_str().expect("kind")).collect();
    assert_eq!(kinds, ["automatic", "resend"]);
    let one = shared::pipeline::Inbound::new(http::Method::GET, "").with_path_parameter("id", &id);
    let (status, event) = call(&api, events_api::Route::Get, one).await;
    assert_eq!((status, event["attempt_count"].as_u64(), event["delivered_at"].is_string()), (200, Some(2), true));
    for unknown in ["evt_00000000000000000000000000000000", "nope"] {
        let request = shared::pipeline::Inbound::new(http::Method::POST, "").with_path_parameter("id", unknown);
        assert_eq!(call(&api, events_api::Route::Resend, request).await.0, 404, "{unknown}");
    }
}

/// Recover resends the undelivered events of its window, and only those.
#[tokio::test]
async fn recover_resends_only_undelivered_events_in_its_window() {
    let h = Harness::new().await;
    let delivered = logged(&h, "910000000001", 100, true).await;
    let undelivered = logged(&h, "910000000002", 110, false).await;
    let outside = logged(&h, "910000000003", 500, false).await;
    let api = events_api(&h);
    let window = r#"{"since":"2026-11-18T11:08:00Z","until":"2026-11-18T11:10:00Z"}"#; // 80 s to 200 s
    let (status, body) =
        call(&api, events_api::Route::Recover, shared::pipeline::Inbound::new(http::Method::POST, window)).await;
    assert_eq!((status, body["resent"].as_u64()), (202, Some(1)));
    let queued = h.drain_events().await;
    assert_eq!(queued.iter().map(|e| e.id.as_str()).collect::<Vec<_>>(), [undelivered.as_str()]);
    assert!(![delivered, outside].iter().any(|id| queued.iter().any(|e| &e.id == id)));
    for bad in [
        r#"{"since":"2026-11-18T11:10:00Z","until":"2026-11-18T11:08:00Z"}"#,
        r#"{"since":"2026-10-01T00:00:00Z","until":"2026-11-18T11:10:00Z"}"#,
        r#"{"until":"2026-11-18T11:10:00Z"}"#,
        r#"{"since":"2026-11-18T11:08:00Z","extra":1}"#,
    ] {
        let status =
            call(&api, events_api::Route::Recover, shared::pipeline::Inbound::new(http::Method::POST, bad)).await.0;
        assert_eq!(status, 400, "{bad}");
    }
}

/// Delivery health: the endpoint counts as failing once every attempt has failed for
/// NOTIFY_FAILING_ALERT_MINUTES; one success, from any instance, ends the run.
#[tokio::test]
async fn the_endpoint_counts_as_failing_after_every_attempt_failed_for_the_threshold() {
    use notifier::health::Health;
    let h = Harness::new().await;
    let (client, table) = h.store.parts();
    let threshold = Duration::from_secs(30 * 60);
    let one = Health::new(client.clone(), table.clone(), threshold);
    let other = Health::new(client, table, threshold);
    let at = |seconds: i64| OffsetDateTime::from_unix_timestamp(1_795_000_000 + seconds).expect("time");
    let minutes = |m: i64| at(m * 60);
    assert_eq!(one.failure(minutes(0)).await.expect("write"), None);
    assert_eq!(other.failure(minutes(29)).await.expect("write"), None, "29 minutes: not yet");
    assert_eq!(one.failure(minutes(31)).await.expect("write"), Some(Duration::from_secs(31 * 60)));
    other.success(minutes(32)).await.expect("write");
    assert_eq!(one.failure(minutes(33)).await.expect("write"), None, "a success ended the run");
    assert_eq!(one.failure(minutes(62)).await.expect("write"), None, "the new run began at 33");
    assert_eq!(one.failure(minutes(63)).await.expect("write"), Some(Duration::from_secs(30 * 60)));
    // A success written less than a minute ago is not written again...
    other.success(minutes(64)).await.expect("write");
    assert_eq!(one.failure(minutes(64) + Duration::from_secs(10)).await.expect("write"), None);
    other.success(minutes(64) + Duration::from_secs(30)).await.expect("write");
    let still = one.failure(minutes(95)).await.expect("write");
    assert!(still.is_some(), "the skipped success did not end the run that began after it");
}

/// Every record and event says which way the money moves: a Pay3 payout is `out`, a
/// checkout `in`, and a provider that never says (AZQR) `in`.
#[tokio::test]
async fn records_and_events_say_which_way_the_money_moves() {
    use provider_testkit::Simulator;
    let h = Harness::new().await;
    let (pay3, webhook) = crate::providers::simulate::<pay3_webhook::simulator::Pay3Simulator>(&h).await;
    let at = OffsetDateTime::from_unix_timestamp(1_795_000_000).expect("time");
    let fixtures = pay3.fixtures(at).expect("fixtures");
    let fixture = |name: &str| fixtures.iter().find(|f| f.name == name).unwrap_or_else(|| panic!("{name}"));
    for name in ["payout-completed", "completed"] {
        assert_eq!(webhook.answer(&fixture(name).request, at).await.status().as_u16(), 200, "{name}");
    }
    let azqr = azqr(&h, EventTypes::default());
    let rrn = unique_rrn();
    send(&azqr, &rrn, "completed", 1).await;

    let direction = |provider: &'static str, reference: String| {
        let store = h.store.clone();
        async move { store.get(provider, &reference).await.expect("get").expect("stored").direction }
    };
    assert_eq!(direction("pay3", "pay3-payout-1:PAYOUT".into()).await, shared::model::Direction::Out);
    assert_eq!(direction("pay3", "pay3-order-6:CHECKOUT".into()).await, shared::model::Direction::In);
    assert_eq!(direction("azqr", rrn.clone()).await, shared::model::Direction::In);

    let events = h.drain_events().await;
    let shown: Vec<(String, serde_json::Value)> = events
        .iter()
        .map(|e| {
            let json = serde_json::to_value(e).expect("json");
            (e.data.reference.clone(), json["data"]["direction"].clone())
        })
        .collect();
    assert!(shown.contains(&("pay3-payout-1:PAYOUT".into(), "out".into())), "{shown:?}");
    assert!(shown.contains(&("pay3-order-6:CHECKOUT".into(), "in".into())), "{shown:?}");
    assert!(shown.contains(&(rrn, "in".into())), "{shown:?}");
}

/// Text SQS refuses (U+FFFE, U+FFFF) in a provider's word neither blocks the outcome nor
/// reaches the queue: the local SQS client refuses it as SQS does, and the webhook still
/// answers 204 and enqueues the outcome, its text cleaned.
#[tokio::test]
async fn text_sqs_refuses_in_a_providers_word_still_reaches_the_merchant() {
    let h = Harness::new().await;
    let refused = h.sqs.send_message().queue_url(&h.resources.queue_url).message_body("a\u{FFFE}b");
    let refused = refused.message_group_id("g").message_deduplication_id("d").send().await;
    assert!(refused.is_err(), "the local SQS client refuses U+FFFE as SQS does");

    let webhook = azqr(&h, EventTypes::default());
    let rrn = unique_rrn();
    let body = r#"{"status":"incompleted","description":"AM04\ufffe Insufficient\uffffFunds"}"#;
    let request = azqr_webhook::simulator::put(&rrn, Some(KEY), body);
    let at = OffsetDateTime::from_unix_timestamp(1_795_000_000).expect("time");
    assert_eq!(webhook.answer(&request, at).await.status().as_u16(), 204);
    let events = h.drain_events().await;
    assert_eq!(events.len(), 1, "the outcome is enqueued");
    assert_eq!(events[0].data.status, Status::Failed);
    assert_eq!(events[0].data.reason.as_deref(), Some("AM04\u{FFFD} Insufficient\u{FFFD}Funds"));
}

/// A resend is refused with 429 within a minute of the last; one retried under its
/// `Idempotency-Key` answers the first answer again without sending again; the key with
/// another request is 422, and a bad key 400.
#[tokio::test]
async fn resends_have_a_cooldown_and_an_idempotency_key_sends_once() {
    let h = Harness::new().await;
    let (first, second) = (logged(&h, "920000000001", 100, false).await, logged(&h, "920000000002", 101, false).await);
    let api = events_api(&h);
    let resend = |id: &str, key: Option<&str>| {
        let request = shared::pipeline::Inbound::new(http::Method::POST, "").with_path_parameter("id", id);
        match key {
            Some(key) => request.with_header("idempotency-key", key),
            None => request,
        }
    };
    let (status, body) = call(&api, events_api::Route::Resend, resend(&first, Some("key-1"))).await;
    assert_eq!((status, body["id"].as_str()), (202, Some(first.as_str())));
    let (again, replayed) = call(&api, events_api::Route::Resend, resend(&first, Some("key-1"))).await;
    assert_eq!((again, &replayed), (202, &body), "the first answer, again");
    assert_eq!(h.drain_events().await.len(), 1, "sent once for the two requests");
    let (status, body) = call(&api, events_api::Route::Resend, resend(&first, None)).await;
    assert_eq!((status, body["error"]["code"].as_str()), (429, Some("resend_cooldown")), "{body}");
    let (status, body) = call(&api, events_api::Route::Resend, resend(&second, Some("key-1"))).await;
    assert_eq!((status, body["error"]["code"].as_str()), (422, Some("idempotency_key_reused")), "{body}");
    let (status, _) = call(&api, events_api::Route::Resend, resend(&second, Some("a key with spaces"))).await;
    assert_eq!(status, 400);
    assert!(h.drain_events().await.is_empty(), "nothing sent by the refusals");
    let (status, _) = call(&api, events_api::Route::Resend, resend(&second, Some("key-2"))).await;
    assert_eq!(status, 202, "another event has its own cooldown");
}

/// A resend whose send fails (SQS unreachable) is a 500 that keeps neither its key nor its
/// cooldown: the client's retry under the same key sends it, rather than meeting a 429.
#[tokio::test]
async fn a_failed_resend_leaves_no_cooldown_for_its_retry() {
    let h = Harness::new().await;
    let id = logged(&h, "920000000003", 100, false).await;
    let request = || {
        shared::pipeline::Inbound::new(http::Method::POST, "")
            .with_path_parameter("id", &id)
            .with_header("idempotency-key", "retried-key")
    };
    let failing =
        events_api::EventsApi::new(h.store.event_log(Duration::from_secs(30 * 86_400)), h.unreachable_queue());
    let (status, body) = call(&failing, events_api::Route::Resend, request()).await;
    assert_eq!(status, 500, "{body}");
    let (status, body) = call(&events_api(&h), events_api::Route::Resend, request()).await;
    assert_eq!((status, body["id"].as_str()), (202, Some(id.as_str())), "the retry is sent: {body}");
    assert_eq!(h.drain_events().await.len(), 1);
}

/// A recover of a window larger than one request's batch completes over requests, each
/// answering where the next continues: every undelivered event sent once; a request
/// retried under its `Idempotency-Key` sends nothing again.
#[tokio::test]
async fn a_recover_completes_in_batches_and_a_retry_sends_nothing_again() {
    let h = Harness::new().await;
    let mut undelivered = Vec::new();
    for i in 0..25 {
        undelivered.push(logged(&h, &format!("{:012}", 930_000_000_000_i64 + i), 100 + i, false).await);
    }
    let api = events_api(&h).with_recover_batch(10);
    let window = |after: Option<&str>| {
        let mut body = serde_json::json!({"since": "2026-11-18T11:08:00Z", "until": "2026-11-18T11:10:00Z"});
        if let Some(after) = after {
            body["after"] = after.into();
        }
        body.to_string()
    };
    let (mut sent, mut after, mut requests) = (Vec::new(), None::<String>, 0);
    loop {
        let request = shared::pipeline::Inbound::new(http::Method::POST, window(after.as_deref()))
            .with_header("idempotency-key", &format!("recover-{requests}"));
        let (status, body) = call(&api, events_api::Route::Recover, request.clone()).await;
        assert_eq!(status, 202, "{body}");
        assert!(body["resent"].as_u64().is_some_and(|n| n <= 10), "a batch at most: {body}");
        // The client's retry of the same request: the same answer, nothing sent again.
        assert_eq!(call(&api, events_api::Route::Recover, request).await, (202, body.clone()));
        sent.extend(h.drain_events().await.into_iter().map(|e| e.id));
        requests += 1;
        match body["next"].as_str() {
            Some(next) => after = Some(next.to_owned()),
            None => break,
        }
        assert!(requests < 10, "it completes");
    }
    assert!(requests >= 3, "{requests} requests");
    sent.sort();
    undelivered.sort();
    assert_eq!(sent, undelivered, "every undelivered event, once");
}
