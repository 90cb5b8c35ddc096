//! The reconciler and the status API against DynamoDB Local and the SQS server.

use std::collections::HashMap;

use crate::support::{unique_rrn, Harness};
use lambda_http::{Body, RequestExt};
use reconciler::Reconciler;
use shared::model::{event_id, NotificationOutcome, Status};
use shared::pipeline::Webhook;
use shared::runtime::config::Secret;
use time::{Duration, OffsetDateTime};
use transactions_api::TransactionsApi;

const KEY: &str = "reconciler-test-azqr-key";

async fn azqr(h: &Harness, rrn: &str, status: &str, at: OffsetDateTime) {
    let webhook = Webhook::new(azqr_webhook::Azqr::new(Secret::new(KEY)), h.store.clone(), h.queue.clone());
    let request = azqr_webhook::simulator::put(rrn, Some(KEY), &format!(r#"{{"status":"{status}"}}"#));
    assert_eq!(webhook.answer(&request, at).await.status().as_u16(), 204);
}

#[tokio::test]
async fn the_reconciler_re_enqueues_exactly_the_stuck_transactions() {
    let h = Harness::new().await;
    let now = OffsetDateTime::now_utc();
    let (stuck, young, delivered, open, old) = (unique_rrn(), unique_rrn(), unique_rrn(), unique_rrn(), unique_rrn());
    azqr(&h, &stuck, "completed", now - Duration::minutes(7)).await;
    azqr(&h, &young, "completed", now - Duration::minutes(1)).await;
    azqr(&h, &delivered, "completed", now - Duration::minutes(7)).await;
    azqr(&h, &open, "paid", now - Duration::minutes(30)).await;
    azqr(&h, &old, "expired", now - Duration::minutes(175)).await;
    let marked = h.store.mark_notification("azqr", &delivered, Status::Completed, NotificationOutcome::Delivered, now);
    assert!(marked.await.expect("mark"));
    // Every original event is lost (as if our 5xx was never retried by the provider).
    assert_eq!(h.drain_events().await.len(), 4);

    let reconciler = Reconciler::new(h.store.clone(), h.queue.clone());
    assert_eq!(reconciler.run(now).await.expect("run"), 1);
    let events = h.drain_events().await;
    let ids: Vec<&str> = events.iter().map(|e| e.id.as_str()).collect();
    assert_eq!(
        ids,
        [event_id("azqr", &stuck, Status::Completed)],
        "only the stuck one; the old one waits for its next window"
    );
    assert_eq!(events[0].data, h.store.get("azqr", &stuck).await.expect("get").expect("item"));

    // The next run, 5 minutes later, does not add another copy; 2 hours on it does.
    assert_eq!(reconciler.run(now + Duration::minutes(5)).await.expect("run"), 1, "the young one is now due");
    assert_eq!(h.drain_events().await[0].data.reference, young);
    assert_eq!(reconciler.run(now + Duration::minutes(10)).await.expect("run"), 0);
    assert_eq!(reconciler.run(now + Duration::minutes(122)).await.expect("run"), 1);
}

/// An rrn whose pending marker falls in `shard`.
fn rrn_in_shard(shard: u16) -> String {
    loop {
        let rrn = unique_rrn();
        let key = shared::model::transaction_key("azqr", &rrn);
        if shared::model::shard::shard(&key, shared::model::shard::PENDING_SHARDS) == shard {
            return rrn;
        }
    }
}

/// A delivery that failed hands the notification to the queue (the marker becomes
/// `QUEUED#<shard>`, still shown as `PENDING`): the reconciler reads all transactions
/// whose event never reached the queue, but of those in the queue's hands only the oldest
/// few per shard, so a merchant's outage cannot make a run read and re-send its backlog.
#[tokio::test]
async fn a_failed_delivery_hands_the_event_to_the_queue_and_the_reconciler_reads_few_of_those() {
    let h = Harness::new().await;
    let now = OffsetDateTime::now_utc();
    let shard = shared::model::shard::shard("anything", shared::model::shard::PENDING_SHARDS);
    let queued: Vec<String> = (0..3).map(|_| rrn_in_shard(shard)).collect();
    for (i, rrn) in queued.iter().enumerate() {
        azqr(&h, rrn, "completed", now - Duration::seconds(540 - 30 * i as i64)).await;
    }
    let lost = unique_rrn();
    azqr(&h, &lost, "completed", now - Duration::minutes(7)).await;
    let merchant = wiremock::MockServer::start().await;
    wiremock::Mock::given(wiremock::matchers::method("POST"))
        .respond_with(wiremock::ResponseTemplate::new(503))
        .mount(&merchant)
        .await;
    // The three reach the notifier and fail; the fourth's send was lost.
    let messages = h.drain_queue().await;
    let config = notifier::NotifierConfig {
        notify_url: merchant.uri(),
        table_name: h.resources.table_name.clone(),
        queue_url: h.resources.queue_url.clone(),
        dead_letter_queue_url: h.resources.dead_letter_queue_url.clone(),
        event_retention: std::time::Duration::from_secs(86_400),
        failing_alert: std::time::Duration::from_secs(1_800),
    };
    let signers = notifier::fixed_signers("whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw").expect("signers");
    let notifier =
        notifier::Notifier::new(config, signers, h.store.clone(), h.sqs.clone(), std::time::Duration::from_secs(5))
            .expect("notifier");
    let ours: Vec<_> = messages.into_iter().filter(|m| !m.body().unwrap_or_default().contains(&lost)).collect();
    let response = notifier.handle_batch(local_pipeline::triggers::to_sqs_event(&ours), now).await;
    assert_eq!(response.batch_item_failures.len(), 3);
    for rrn in &queued {
        let item = h
            .dynamodb
            .get_item()
            .table_name(&h.resources.table_name)
            .key("pk", aws_sdk_dynamodb::types::AttributeValue::S(format!("azqr#{rrn}")))
            .send()
            .await
            .expect("get")
            .item
            .expect("item");
        let marker = item.get("notification_pending").and_then(|v| v.as_s().ok()).cloned().unwrap_or_default();
        assert_eq!(marker, shared::model::NotificationPending::queued_marker("azqr", rrn));
        let record = h.store.get("azqr", rrn).await.expect("get").expect("record");
        assert_eq!(
            serde_json::to_value(&record).expect("JSON")["notification_pending"],
            "PENDING",
            "still shown pending"
        );
    }

    let reconciler = Reconciler::new(h.store.clone(), h.queue.clone()).with_queued_read_per_shard(1);
    assert_eq!(reconciler.run(now).await.expect("run"), 2, "the lost one, and the oldest in the queue's hands");
    let mut sent: Vec<String> = h.drain_events().await.into_iter().map(|e| e.data.reference).collect();
    sent.sort();
    let mut expected = vec![lost, queued[0].clone()];
    expected.sort();
    assert_eq!(sent, expected);
}

/// Fails the `n`th `SendMessageBatch` call (counting from 1), every attempt of it, at the
/// SDK's HTTP layer before it is sent, as a connection reset would.
#[derive(Debug)]
pub(crate) struct NthBatchFails(usize, std::sync::Mutex<(usize, Option<String>)>);

impl NthBatchFails {
    /// An SQS client of `h`'s whose `n`th `SendMessageBatch` fails.
    pub(crate) fn client(h: &Harness, n: usize) -> aws_sdk_sqs::Client {
        aws_sdk_sqs::Client::from_conf(
            h.sqs.config().to_builder().interceptor(NthBatchFails(n, Default::default())).build(),
        )
    }
}

impl aws_sdk_sqs::config::Intercept for NthBatchFails {
    fn name(&self) -> &'static str {
        "nth batch fails"
    }
    fn modify_before_transmit(
        &self,
        context: &mut aws_sdk_sqs::config::interceptors::BeforeTransmitInterceptorContextMut<'_>,
        _: &aws_sdk_sqs::config::RuntimeComponents,
        _: &mut aws_sdk_sqs::config::ConfigBag,
    ) -> Result<(), aws_sdk_sqs::error::BoxError> {
        let target = context.request().headers().get("x-amz-target").unwrap_or_default();
        if !target.ends_with("SendMessageBatch") {
            return Ok(());
        }
        // Every attempt of one call carries the same invocation id.
        let call = context.request().headers().get("amz-sdk-invocation-id").unwrap_or_default().to_owned();
        let mut seen = self.1.lock().expect("lock");
        let failing = match &seen.1 {
            Some(failing) => *failing == call,
            None => {
                seen.0 += 1;
                seen.0 == self.0
            }
        };
        if failing {
            seen.1 = Some(call);
            return Err("connection reset (injected)".into());
        }
        Ok(())
    }
}

/// 25 stuck transactions are re-enqueued ten to a batch; the second batch fails on the
/// wire. The run goes on: the other 15 are sent, and the 10 whose send failed are sent on
/// the very next run (not two hours later), and only they.
#[tokio::test]
async fn the_reconciler_goes_on_past_a_failed_send_and_retries_it_next_run() {
    let h = Harness::new().await;
    let now = OffsetDateTime::now_utc();
    let mut stuck = Vec::new();
    for _ in 0..25 {
        let rrn = unique_rrn();
        azqr(&h, &rrn, "completed", now - Duration::minutes(7)).await;
        stuck.push(rrn);
    }
    assert_eq!(h.drain_events().await.len(), 25, "the original sends, lost");
    let sqs = aws_sdk_sqs::Client::from_conf(
        h.sqs.config().to_builder().interceptor(NthBatchFails(2, Default::default())).build(),
    );
    let queue = shared::storage::EventQueue::new(sqs, &h.resources.queue_url);
    let reconciler = Reconciler::new(h.store.clone(), queue);

    let sent = reconciler.run(now).await.expect("run");
    let first: Vec<String> = h.drain_events().await.into_iter().map(|e| e.data.reference).collect();
    assert_eq!(sent, 15, "the batches before and after the failed one: {first:?}");
    assert_eq!(first.len(), 15);
    let failed: Vec<&String> = stuck.iter().filter(|r| !first.contains(r)).collect();
    assert_eq!(failed.len(), 10);

    assert_eq!(reconciler.run(now + Duration::minutes(5)).await.expect("run"), 10, "the failed ones, next run");
    let mut second: Vec<String> = h.drain_events().await.into_iter().map(|e| e.data.reference).collect();
    second.sort();
    let mut expected: Vec<String> = failed.into_iter().cloned().collect();
    expected.sort();
    assert_eq!(second, expected);
    assert_eq!(reconciler.run(now + Duration::minutes(10)).await.expect("run"), 0, "then nothing until the repeat");
}

#[tokio::test]
async fn the_status_api_answers_200_with_the_record_or_404() {
    let h = Harness::new().await;
    let rrn = unique_rrn();
    azqr(&h, &rrn, "read", OffsetDateTime::now_utc()).await;
    azqr(&h, &rrn, "completed", OffsetDateTime::now_utc()).await;
    let api = TransactionsApi::new(h.store.clone(), Default::default(), provider_catalog::all());
    let unsigned = |provider: &str, reference: &str| {
        http::Request::builder().method("GET").body(Body::Empty).expect("request").with_path_parameters(HashMap::from(
            [("provider".to_owned(), provider.to_owned()), ("reference".to_owned(), reference.to_owned())],
        ))
    };
    // As API Gateway's IAM authorizer passes it on: who signed the request.
    let get = |provider: &str, reference: &str| {
        let mut iam = lambda_http::aws_lambda_events::apigw::ApiGatewayRequestAuthorizerIamDescription::default();
        iam.user_arn = Some("arn:aws:iam::123456789012:user/operator".into());
        let mut authorizer = lambda_http::aws_lambda_events::apigw::ApiGatewayRequestAuthorizer::default();
        authorizer.iam = Some(iam);
        let mut context = lambda_http::aws_lambda_events::apigw::ApiGatewayV2httpRequestContext::default();
        context.authorizer = Some(authorizer);
        unsigned(provider, reference).with_request_context(lambda_http::request::RequestContext::ApiGatewayV2(context))
    };

    let refused = api.handle(unsigned("azqr", &rrn)).await;
    assert_eq!(refused.status().as_u16(), 403, "no IAM identity in the request context");
    let body: serde_json::Value = serde_json::from_slice(refused.body().as_ref()).expect("JSON");
    assert_eq!(body["error"]["code"], "forbidden");

    let response = api.handle(get("azqr", &rrn)).await;
    assert_eq!(response.status().as_u16(), 200);
    let body: serde_json::Value = serde_json::from_slice(response.body().as_ref()).expect("JSON");
    let stored = h.store.get("azqr", &rrn).await.expect("get").expect("item");
    assert_eq!(body, serde_json::to_value(&stored).expect("JSON"), "the event's data shape");
    assert_eq!(body["status"], "completed");
    assert_eq!(body["history"].as_array().map(Vec::len), Some(2));
    assert_eq!(body["notification_pending"], "PENDING");

    let missing = api.handle(get("azqr", "999999999999")).await;
    assert_eq!(missing.status().as_u16(), 404);
    let body: serde_json::Value = serde_json::from_slice(missing.body().as_ref()).expect("JSON");
    assert_eq!(body["error"]["code"], "not_found");
    // A provider the catalog does not know is 404 on either route, whatever else shares
    // the table (the merchant's health item is `health#merchant`); a reference not in its
    // provider's format is 400. Nothing is read or written.
    for (provider, reference) in [("AZQR!", rrn.as_str()), ("health", "merchant"), ("lease", "sync"), ("evt", "x")] {
        for method in ["GET", "PUT"] {
            let mut request = get(provider, reference);
            *request.method_mut() = method.parse().expect("method");
            let response = api.handle(request).await;
            assert_eq!(response.status().as_u16(), 404, "{method} {provider}/{reference}");
        }
    }
    let items = h.item_count().await;
    for (provider, reference) in
        [("azqr", "ABC"), ("azqr", "1234567890123"), ("pagstar", "short1"), ("qitech", "not-a-uuid")]
    {
        for method in ["GET", "PUT"] {
            let mut request = get(provider, reference);
            *request.method_mut() = method.parse().expect("method");
            let response = api.handle(request).await;
            assert_eq!(response.status().as_u16(), 400, "{method} {provider}/{reference}");
            let body: serde_json::Value = serde_json::from_slice(response.body().as_ref()).expect("JSON");
            assert_eq!(body["error"]["code"], "invalid_field");
        }
    }
    assert_eq!(h.item_count().await, items, "nothing written");
}
