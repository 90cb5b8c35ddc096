//! The notifier against DynamoDB Local, the SQS server and a merchant endpoint faked over
//! real HTTP. Terminal events are produced by the real AZQR webhook.

use std::time::Duration;

use crate::support::{unique_rrn, Harness};
use aws_lc_rs::hmac;
use base64::engine::general_purpose::STANDARD;
use base64::Engine;
use notifier::{Notifier, NotifierConfig};
use shared::model::Status;
use shared::pipeline::Webhook;
use shared::runtime::config::Secret;
use time::OffsetDateTime;
use wiremock::matchers::{header, method, path};
use wiremock::{Mock, MockServer, ResponseTemplate};

const SECRET: &str = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw";
const AZQR_KEY: &str = "notifier-test-azqr-key";

/// A completed AZQR payment through the real webhook; returns its rrn.
async fn complete_payment(h: &Harness) -> String {
    let rrn = unique_rrn();
    let webhook = Webhook::new(azqr_webhook::Azqr::new(Secret::new(AZQR_KEY)), h.store.clone(), h.queue.clone());
    let request = azqr_webhook::simulator::put(&rrn, Some(AZQR_KEY), r#"{"status":"completed"}"#);
    assert_eq!(webhook.answer(&request, OffsetDateTime::now_utc()).await.status().as_u16(), 204);
    rrn
}

fn notifier(h: &Harness, merchant: &MockServer, timeout: Duration) -> Notifier {
    notifier_on(h, h.store.clone(), merchant, timeout)
}

/// The notifier, writing through `store`.
fn notifier_on(
    h: &Harness,
    store: shared::storage::TransactionStore,
    merchant: &MockServer,
    timeout: Duration,
) -> Notifier {
    let config = NotifierConfig {
        notify_url: format!("{}/payments/webhook", merchant.uri()),
        table_name: h.resources.table_name.clone(),
        queue_url: h.resources.queue_url.clone(),
        dead_letter_queue_url: h.resources.dead_letter_queue_url.clone(),
        event_retention: Duration::from_secs(86_400),
        failing_alert: Duration::from_secs(30 * 60),
    };
    // Retries become visible at once, so tests do not wait out the production backoff.
    Notifier::new(config, notifier::fixed_signers(SECRET).expect("signers"), store, h.sqs.clone(), timeout)
        .expect("notifier")
        .with_backoff(vec![Duration::ZERO])
}

/// Standard Webhooks verification written from the specification, independent of the
/// crate the notifier signs with.
fn verify(headers: &http::HeaderMap, body: &[u8]) -> bool {
    let header = |name: &str| headers.get(name).and_then(|v| v.to_str().ok()).unwrap_or_default().to_owned();
    let key = STANDARD.decode(SECRET.trim_start_matches("whsec_")).expect("secret");
    let mut message = format!("{}.{}.", header("webhook-id"), header("webhook-timestamp")).into_bytes();
    message.extend_from_slice(body);
    let expected = STANDARD.encode(hmac::sign(&hmac::Key::new(hmac::HMAC_SHA256, &key), &message));
    header("webhook-signature").split(' ').any(|s| s == format!("v1,{expected}"))
}

async fn ok_merchant() -> MockServer {
    let merchant = MockServer::start().await;
    Mock::given(method("POST"))
        .and(path("/payments/webhook"))
        .respond_with(ResponseTemplate::new(204))
        .mount(&merchant)
        .await;
    merchant
}

async fn queue_len(h: &Harness, url: &str) -> usize {
    let attributes = h
        .sqs
        .get_queue_attributes()
        .queue_url(url)
        .attribute_names(aws_sdk_sqs::types::QueueAttributeName::ApproximateNumberOfMessages)
        .attribute_names(aws_sdk_sqs::types::QueueAttributeName::ApproximateNumberOfMessagesNotVisible)
        .send()
        .await
        .expect("attributes")
        .attributes
        .unwrap_or_default();
    attributes.values().map(|v| v.parse::<usize>().unwrap_or(0)).sum()
}

#[tokio::test]
async fn delivers_a_signed_event_and_clears_pending() {
    let h = Harness::new().await;
    let merchant = ok_merchant().await;
    let rrn = complete_payment(&h).await;
    let notifier = notifier(&h, &merchant, Duration::from_secs(5));

    assert_eq!(h.poll_notifier(&notifier, 0).await.expect("poll"), 1);
    let requests = merchant.received_requests().await.expect("recorded");
    assert_eq!(requests.len(), 1);
    let request = &requests[0];
    let event: shared::model::MerchantEvent = serde_json::from_slice(&request.body).expect("event JSON");
    assert_eq!(event.kind.as_str(), "transaction.completed");
    assert_eq!(event.data.reference, rrn);
    assert_eq!(request.headers.get("webhook-id").and_then(|v| v.to_str().ok()), Some(event.id.as_str()));
    let timestamp: i64 = request.headers["webhook-timestamp"].to_str().expect("ascii").parse().expect("unix seconds");
    assert!((OffsetDateTime::now_utc().unix_timestamp() - timestamp).abs() < 60);
    assert!(verify(&request.headers, &request.body), "an independent verifier accepts the signature");
    let mut tampered = request.body.clone();
    tampered[10] ^= 1;
    assert!(!verify(&request.headers, &tampered), "one changed byte is rejected");

    let record = h.store.get("azqr", &rrn).await.expect("get").expect("item");
    assert!(!record.is_notification_pending());
    assert!(record.notified_at.is_some());
    assert_eq!(queue_len(&h, &h.resources.queue_url).await, 0, "delivered message deleted");

    // A redelivery of the same message is harmless: the marker is already cleared.
    let again = h.store.mark_notification(
        "azqr",
        &rrn,
        Status::Completed,
        shared::model::NotificationOutcome::Delivered,
        OffsetDateTime::now_utc(),
    );
    assert!(!again.await.expect("update"));
    assert_eq!(h.store.get("azqr", &rrn).await.expect("get").expect("item").notified_at, record.notified_at);
}

#[tokio::test]
async fn a_500_then_200_delivers_once_more_with_the_same_webhook_id() {
    let h = Harness::new().await;
    let merchant = MockServer::start().await;
    Mock::given(method("POST")).respond_with(ResponseTemplate::new(500)).up_to_n_times(1).mount(&merchant).await;
    Mock::given(method("POST")).respond_with(ResponseTemplate::new(200)).mount(&merchant).await;
    let rrn = complete_payment(&h).await;
    let notifier = notifier(&h, &merchant, Duration::from_secs(5));

    h.poll_notifier(&notifier, 0).await.expect("first poll");
    assert!(h.store.get("azqr", &rrn).await.expect("get").expect("item").is_notification_pending());
    assert_eq!(queue_len(&h, &h.resources.queue_url).await, 1, "the failed message stays queued");
    h.poll_notifier(&notifier, 0).await.expect("second poll");

    let requests = merchant.received_requests().await.expect("recorded");
    assert_eq!(requests.len(), 2);
    assert_eq!(requests[0].headers["webhook-id"], requests[1].headers["webhook-id"]);
    assert_eq!(requests[0].body, requests[1].body);
    assert!(!h.store.get("azqr", &rrn).await.expect("get").expect("item").is_notification_pending());
    assert_eq!(queue_len(&h, &h.resources.queue_url).await, 0);
}

#[tokio::test]
async fn a_timeout_is_a_retry() {
    let h = Harness::new().await;
    let merchant = MockServer::start().await;
    Mock::given(method("POST"))
        .respond_with(ResponseTemplate::new(200).set_delay(Duration::from_secs(3)))
        .up_to_n_times(1)
        .mount(&merchant)
        .await;
    Mock::given(method("POST")).respond_with(ResponseTemplate::new(200)).mount(&merchant).await;
    let rrn = complete_payment(&h).await;
    let notifier = notifier(&h, &merchant, Duration::from_secs(1));

    h.poll_notifier(&notifier, 0).await.expect("poll");
    assert!(h.store.get("azqr", &rrn).await.expect("get").expect("item").is_notification_pending(), "not delivered");
    h.poll_notifier(&notifier, 0).await.expect("poll");
    assert!(!h.store.get("azqr", &rrn).await.expect("get").expect("item").is_notification_pending(), "delivered");
}

#[tokio::test]
async fn one_bad_message_in_a_batch_of_ten_reports_exactly_that_message() {
    let h = Harness::new().await;
    let mut rrns = Vec::new();
    for _ in 0..10 {
        rrns.push(complete_payment(&h).await);
    }
    let bad_event_id = shared::model::event_id("azqr", &rrns[3], Status::Completed);
    let merchant = MockServer::start().await;
    Mock::given(method("POST"))
        .and(header("webhook-id", bad_event_id.as_str()))
        .respond_with(ResponseTemplate::new(503))
        .mount(&merchant)
        .await;
    Mock::given(method("POST")).respond_with(ResponseTemplate::new(200)).mount(&merchant).await;
    let notifier = notifier(&h, &merchant, Duration::from_secs(5));

    let mut messages = Vec::new();
    while messages.len() < 10 {
        let received = h.receive().await;
        assert!(!received.is_empty(), "expected 10 messages, got {}", messages.len());
        messages.extend(received);
    }
    let bad_message_id = messages
        .iter()
        .find(|m| m.body().is_some_and(|b| b.contains(&bad_event_id)))
        .and_then(|m| m.message_id.clone())
        .expect("bad message");
    let response =
        notifier.handle_batch(local_pipeline::triggers::to_sqs_event(&messages), OffsetDateTime::now_utc()).await;
    let failures: Vec<&str> = response.batch_item_failures.iter().map(|f| f.item_identifier.as_str()).collect();
    assert_eq!(failures, [bad_message_id.as_str()]);
    for (i, rrn) in rrns.iter().enumerate() {
        let pending = h.store.get("azqr", rrn).await.expect("get").expect("item").is_notification_pending();
        assert_eq!(pending, i == 3, "{rrn}");
    }
}

#[tokio::test]
async fn after_max_receive_count_it_lands_in_the_dead_letter_queue_and_replay_brings_it_back() {
    let h = Harness::new().await;
    let down = MockServer::start().await;
    Mock::given(method("POST")).respond_with(ResponseTemplate::new(500)).mount(&down).await;
    let rrn = complete_payment(&h).await;
    let failing = notifier(&h, &down, Duration::from_secs(5));

    let mut attempts = 0;
    while queue_len(&h, &h.resources.queue_url).await > 0 {
        h.poll_notifier(&failing, 0).await.expect("poll");
        attempts += 1;
        assert!(attempts <= 20, "message never left the main queue");
    }
    assert_eq!(
        down.received_requests().await.expect("recorded").len(),
        8,
        "maxReceiveCount deliveries from template.yaml"
    );
    assert_eq!(queue_len(&h, &h.resources.dead_letter_queue_url).await, 1, "in the dead-letter queue, not lost");
    assert!(h.store.get("azqr", &rrn).await.expect("get").expect("item").is_notification_pending());

    // The merchant is back: the operator replays the dead letters.
    let moved = notifier::replay::replay_dead_letters(
        &h.sqs,
        &h.resources.dead_letter_queue_url,
        &h.resources.queue_url,
        OffsetDateTime::now_utc(),
    )
    .await
    .expect("replay");
    assert_eq!(moved, 1);
    assert_eq!(queue_len(&h, &h.resources.dead_letter_queue_url).await, 0);
    let up = ok_merchant().await;
    h.poll_notifier(&notifier(&h, &up, Duration::from_secs(5)), 0).await.expect("poll");
    let delivered = up.received_requests().await.expect("recorded");
    assert_eq!(delivered.len(), 1);
    assert_eq!(
        delivered[0].headers["webhook-id"].to_str().expect("ascii"),
        shared::model::event_id("azqr", &rrn, Status::Completed),
        "the replayed event keeps its id"
    );
    assert!(!h.store.get("azqr", &rrn).await.expect("get").expect("item").is_notification_pending());
}

#[tokio::test]
async fn a_410_is_a_permanent_refusal_moved_to_the_dead_letter_queue_at_once() {
    let h = Harness::new().await;
    let merchant = MockServer::start().await;
    Mock::given(method("POST")).respond_with(ResponseTemplate::new(410)).expect(1).mount(&merchant).await;
    let rrn = complete_payment(&h).await;
    h.poll_notifier(&notifier(&h, &merchant, Duration::from_secs(5)), 0).await.expect("poll");
    assert_eq!(queue_len(&h, &h.resources.queue_url).await, 0);
    assert_eq!(queue_len(&h, &h.resources.dead_letter_queue_url).await, 1);
    let record = h.store.get("azqr", &rrn).await.expect("get").expect("item");
    assert!(!record.is_notification_pending(), "the reconciler must not resend a refused event");
    assert!(record.notification_refused_at.is_some() && record.notified_at.is_none());
}

#[tokio::test]
async fn a_merchant_that_closes_the_connection_is_a_retry() {
    let h = Harness::new().await;
    let rrn = complete_payment(&h).await;
    // A merchant that accepts each connection, reads a little, and hangs up without answering.
    let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
    let url = format!("http://{}", listener.local_addr().expect("addr"));
    std::thread::spawn(move || {
        for stream in listener.incoming().flatten() {
            let mut buffer = [0u8; 64];
            let _ = std::io::Read::read(&mut &stream, &mut buffer);
            drop(stream);
        }
    });
    let config = NotifierConfig {
        notify_url: url,
        table_name: h.resources.table_name.clone(),
        queue_url: h.resources.queue_url.clone(),
        dead_letter_queue_url: h.resources.dead_letter_queue_url.clone(),
        event_retention: Duration::from_secs(86_400),
        failing_alert: Duration::from_secs(30 * 60),
    };
    let hanging_up = Notifier::new(
        config,
        notifier::fixed_signers(SECRET).expect("signers"),
        h.store.clone(),
        h.sqs.clone(),
        Duration::from_secs(5),
    )
    .expect("notifier");
    let delivery = hanging_up.deliver("evt_x", "{}", OffsetDateTime::now_utc()).await;
    assert!(matches!(delivery, notifier::Delivery::Failed { .. }), "{delivery:?}");
    h.poll_notifier(&hanging_up.with_backoff(vec![Duration::ZERO]), 0).await.expect("poll");
    assert!(h.store.get("azqr", &rrn).await.expect("get").expect("item").is_notification_pending());
    assert_eq!(queue_len(&h, &h.resources.queue_url).await, 1, "kept for a retry");
    let up = ok_merchant().await;
    h.poll_notifier(&notifier(&h, &up, Duration::from_secs(5)), 0).await.expect("poll");
    assert!(!h.store.get("azqr", &rrn).await.expect("get").expect("item").is_notification_pending());
}

/// Fails the first `left` DynamoDB requests that write an event-log item (`evt#…`), at
/// the SDK's HTTP layer, before they are sent.
#[derive(Debug)]
struct EventLogDown(std::sync::atomic::AtomicUsize);

impl aws_sdk_dynamodb::config::Intercept for EventLogDown {
    fn name(&self) -> &'static str {
        "event log down"
    }
    fn modify_before_transmit(
        &self,
        context: &mut aws_sdk_dynamodb::config::interceptors::BeforeTransmitInterceptorContextMut<'_>,
        _: &aws_sdk_dynamodb::config::RuntimeComponents,
        _: &mut aws_sdk_dynamodb::config::ConfigBag,
    ) -> Result<(), aws_sdk_dynamodb::error::BoxError> {
        let body = context.request().body().bytes().unwrap_or_default();
        let event_log = String::from_utf8_lossy(body).contains("evt#");
        let fail = event_log
            && self
                .0
                .fetch_update(std::sync::atomic::Ordering::SeqCst, std::sync::atomic::Ordering::SeqCst, |n| {
                    n.checked_sub(1)
                })
                .is_ok();
        if fail {
            return Err("connection reset (injected)".into());
        }
        Ok(())
    }
}

/// An event whose attempt the event log could not record is not dropped from the queue
/// although the merchant took it (found by `scripts/chaos`): it is delivered again, with
/// the same `webhook-id`, and then it is in the event log and no longer pending.
#[tokio::test]
async fn a_delivery_the_event_log_missed_is_delivered_again_and_then_logged() {
    let h = Harness::new().await;
    let merchant = ok_merchant().await;
    let rrn = complete_payment(&h).await;
    let client = aws_sdk_dynamodb::Client::from_conf(
        h.dynamodb.config().to_builder().interceptor(EventLogDown(1.into())).build(),
    );
    let store = shared::storage::TransactionStore::new(client, &h.resources.table_name);
    let notifier = notifier_on(&h, store, &merchant, Duration::from_secs(5));
    let id = shared::model::event_id("azqr", &rrn, Status::Completed);
    let log = h.store.event_log(Duration::from_secs(86_400));

    assert_eq!(h.poll_notifier(&notifier, 0).await.expect("poll"), 1);
    assert_eq!(merchant.received_requests().await.expect("recorded").len(), 1, "the merchant took it");
    assert!(log.get(&id).await.expect("read").is_none(), "the event log missed it");
    let record = h.store.get("azqr", &rrn).await.expect("get").expect("item");
    assert!(record.notification_pending.is_some(), "not marked notified while the log lacks it");

    assert_eq!(h.poll_notifier(&notifier, 1).await.expect("poll"), 1, "the message was kept");
    let deliveries = merchant.received_requests().await.expect("recorded");
    let ids: Vec<_> = deliveries.iter().map(|r| r.headers["webhook-id"].to_str().expect("ascii").to_owned()).collect();
    assert_eq!(ids, [id.clone(), id.clone()], "delivered again, same webhook-id");
    let stored = log.get(&id).await.expect("read").expect("now in the event log");
    assert_eq!(stored.id(), id);
    let record = h.store.get("azqr", &rrn).await.expect("get").expect("item");
    assert_eq!(record.notification_pending, None);
    assert_eq!(h.poll_notifier(&notifier, 0).await.expect("poll"), 0, "nothing left");
}
