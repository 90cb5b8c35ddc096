//! Every file in events/ is a valid API Gateway event: it goes through lambda_http's own
//! deserializer and the real handler, against DynamoDB Local, the SQS server and (for
//! Pagstar) the Pagstar stand-in over HTTP, and gives the answer and the stored state
//! listed here. A fixture this table does not list fails the test, so none is unused.
//! The clock is each fixture's `requestContext.timeEpoch`, when it was signed.
//!
//! Then the same fixtures go through the artifacts `sam build` made, the files `sam
//! deploy` uploads, under AWS's Lambda Runtime Interface Emulator (`scripts/invoke`'s way).

use std::collections::BTreeMap;
use std::time::Duration;

use crate::support::{DevWebhooks, Harness};
use local_pipeline::invoke::{self, Bindings, Endpoints, Launch};
use local_pipeline::{fixtures, registry, DevEnv, Template};
use shared::model::{EventType, MismatchKind, RefundStatus, Status};
use shared::runtime::config::Env;

type Refunds = &'static [(&'static str, RefundStatus)];
type Expectation = (u16, Option<(&'static str, Status)>, Option<MismatchKind>, Refunds);

/// file → (HTTP status, the (reference, status) stored, or None when nothing is written,
/// the kind of `amount_mismatch` the stored record shows, and its refunds):
/// each provider's fixtures (from its simulator, through the catalog), and the status API's.
async fn expectations() -> BTreeMap<String, Expectation> {
    let fixtures = registry::expectations(&crate::support::root()).await.expect("the providers' fixtures");
    let mut all: BTreeMap<String, Expectation> =
        fixtures.into_iter().map(|(file, e)| (file, (e.status, e.stored, e.mismatch, e.refunds))).collect();
    // The status API (writes nothing): the AZQR fixture's completed transaction, run
    // earlier in this order, and one that does not exist.
    all.insert("transactions/get-completed.json".into(), (200, None, None, &[]));
    all.insert("transactions/get-unknown.json".into(), (404, None, None, &[]));
    // A registration attached to that completed transaction: no new item, no event.
    all.insert("transactions/register-completed.json".into(), (200, None, None, &[]));
    // The events API (writes nothing): the undelivered events, and an unknown id.
    all.insert("events/list-undelivered.json".into(), (200, None, None, &[]));
    all.insert("events/get-unknown.json".into(), (404, None, None, &[]));
    // The same with no IAM identity in the request context: refused by the function.
    all.insert("transactions/bad-get-unsigned.json".into(), (403, None, None, &[]));
    all.insert("events/bad-list-unsigned.json".into(), (403, None, None, &[]));
    all
}

#[tokio::test]
async fn every_fixture_has_an_expectation() {
    let known: Vec<String> = expectations().await.into_keys().collect();
    assert_eq!(crate::support::fixture_files(), known, "events/ and the providers' simulators differ");
}

#[tokio::test]
async fn every_fixture_runs_through_lambda_http_and_the_handler() {
    let h = Harness::new().await;
    let webhooks = DevWebhooks::new(&h).await;
    let (mut finals, mut flagged_finals) = (0, 0);
    let fixtures = expectations().await;
    let mut flagged = BTreeMap::new();
    let mut refund_events = 0;
    for (file, (status, stored, mismatch, refunds)) in fixtures.clone() {
        assert_eq!(webhooks.run_fixture(&file).await, status, "{file}");
        if let Some((reference, expected)) = stored {
            let provider = file.split('/').next().expect("provider dir");
            let record = h.store.get(provider, reference).await.expect("get").unwrap_or_else(|| panic!("{file}"));
            assert_eq!(record.status, expected, "{file}");
            let shown: Vec<(&str, RefundStatus)> = record.refunds.iter().map(|r| (r.id.as_str(), r.status)).collect();
            assert_eq!(shown, refunds, "{file}: refunds");
            refund_events += refunds.len();
            assert_eq!(record.amount_mismatch.map(|m| m.kind), mismatch, "{file}: amount_mismatch");
            finals += usize::from(expected.is_final());
            flagged_finals += usize::from(expected.is_final() && mismatch.is_some());
            flagged.insert(reference, mismatch);
        }
    }
    let written = fixtures.values().filter(|(_, stored, _, _)| stored.is_some()).count();
    assert_eq!(h.item_count().await, written, "fixtures marked as writing nothing wrote something");
    let events = h.drain_events().await;
    let outcomes = events.iter().filter(|e| e.outcome().is_some()).count();
    assert_eq!(outcomes, finals, "one terminal event per final fixture");
    let mismatches: Vec<&str> =
        events.iter().filter(|e| e.kind == EventType::AmountMismatch).map(|e| e.data.reference.as_str()).collect();
    let final_and_flagged = |r: &str| flagged.get(r).is_some_and(|m| m.is_some());
    assert!(mismatches.iter().all(|r| final_and_flagged(r)), "{mismatches:?}");
    assert_eq!(mismatches.len(), flagged_finals, "one amount_mismatch event per flagged final fixture");
    let refunded = events.iter().filter(|e| e.kind == EventType::RefundUpdated).count();
    assert_eq!(refunded, refund_events, "one transaction.refund_updated per refund of a fixture");
    assert_eq!(events.len(), outcomes + mismatches.len() + refunded, "no other event");
    for event in events {
        // The event shows what the record shows, through amount_mismatch only.
        let json = serde_json::to_value(&event).expect("JSON");
        let kind: Option<MismatchKind> =
            serde_json::from_value(json["data"]["amount_mismatch"]["kind"].clone()).expect("a kind or none");
        let want = flagged.get(event.data.reference.as_str()).copied().flatten();
        assert_eq!(kind, want, "{json}");
        assert!(json["data"].get("unreadable_amount").is_none(), "{json}");
    }
}

/// Every fixture, invoked as `scripts/invoke` does: the function API Gateway routes it to
/// (by its `routeKey` in template.yaml), built by `sam build` for arm64 and run through
/// qemu under the runtime interface emulator, with the template's environment. The answer
/// and the stored state are those of the table above; every final transition leaves its
/// one terminal event on the queue; every log line is one JSON object.
#[tokio::test]
async fn every_fixture_through_the_built_artifact_under_the_lambda_runtime_emulator() {
    let h = Harness::new().await;
    let root = crate::support::root();
    let template = Template::load(&root.join("template.yaml")).expect("template.yaml");
    let rie = invoke::runtime_interface_emulator(&root).unwrap_or_else(|e| panic!("{e}"));
    let mut dev_env = DevEnv::load(&root.join("local.env.example")).expect("local.env.example");
    registry::start_simulations(&mut dev_env, &root).await.expect("simulations");
    let endpoints = Endpoints {
        dynamodb: dev_env.required("DYNAMODB_ENDPOINT").expect("scripts/test exports DYNAMODB_ENDPOINT"),
        sqs: dev_env.required("SQS_ENDPOINT").expect("scripts/test exports SQS_ENDPOINT"),
    };
    // Each function reads its secret by ARN from Secrets Manager (moto), as in AWS.
    let mut resources = h.resources.clone();
    let prefix = format!("t{}-", crate::support::unique_number());
    template.provision_secrets(&h.secrets, &prefix, &dev_env, &mut resources).await.expect("secrets");
    let overrides = BTreeMap::new();
    let bindings = Bindings { overrides: &overrides, dev_env: &dev_env, resources: &resources, endpoints: &endpoints };

    let mut log_lines = 0;
    let fixtures = expectations().await;
    for (file, (status, stored, mismatch, refunds)) in fixtures.clone() {
        let text = std::fs::read_to_string(root.join("events").join(&file)).expect("fixture");
        let mut event: serde_json::Value = serde_json::from_str(&text).expect("JSON");
        let route = event["routeKey"].as_str().expect("routeKey").to_owned();
        let logical_id =
            template.function_for_route(&route).unwrap_or_else(|| panic!("{file}: no function for {route}"));
        let function = template.function(&logical_id).expect("function");
        let env = function.environment(&template, &bindings).expect("environment");
        let bootstrap = invoke::built_artifact(&root, &logical_id);
        assert!(bootstrap.is_file(), "{} is missing: run `sam build` (scripts/test runs it)", bootstrap.display());
        let launch = Launch::for_artifact(&bootstrap).unwrap_or_else(|e| panic!("{e}"));
        if cfg!(target_arch = "x86_64") {
            assert!(matches!(launch, Launch::Qemu { .. }), "{logical_id}: the deployed artifact is arm64");
        }
        fixtures::resign_for(&mut event, &root, &dev_env, time::OffsetDateTime::now_utc()).expect("re-sign");
        let timeout = Duration::from_secs(function.timeout_seconds + 60);
        let invocation = invoke::invoke(&rie, &launch, &env, event.to_string().as_bytes(), timeout)
            .await
            .unwrap_or_else(|e| panic!("{file}: {e}"));
        let context = format!("{file} via {logical_id}: {}\n{}", invocation.response, invocation.function_log);
        assert_eq!(invocation.failure(), None, "{context}\n{}", invocation.emulator_log);
        let response: serde_json::Value = serde_json::from_str(&invocation.response).expect("JSON answer");
        assert_eq!(response["statusCode"], status, "{context}");
        assert_eq!(invocation.non_json_log_lines(), Vec::<&str>::new(), "{context}");
        log_lines += invocation.function_log.lines().count();
        // A webhook that is a hint was queued: its consumer, the function the hint
        // queue's trigger invokes, takes it from there, with the trigger's event.
        if env.contains_key("HINT_QUEUE_URL") {
            log_lines += confirm_hints(&h, &template, &bindings, &rie, &file).await;
        }

        let queued = h.drain_events().await;
        match stored {
            Some((reference, expected)) => {
                let provider = file.split('/').next().expect("provider dir");
                let record = h.store.get(provider, reference).await.expect("get");
                assert_eq!(record.as_ref().map(|r| r.status), Some(expected), "{context}");
                assert_eq!(record.and_then(|r| r.amount_mismatch).map(|m| m.kind), mismatch, "{context}");
                let finals: Vec<_> = queued.iter().map(|e| (e.data.reference.as_str(), e.kind)).collect();
                let mut want = Vec::new();
                if let Some(outcome) = EventType::outcome(expected) {
                    want.push((reference, outcome));
                    want.extend(mismatch.map(|_| (reference, EventType::AmountMismatch)));
                }
                want.extend(refunds.iter().map(|_| (reference, EventType::RefundUpdated)));
                assert_eq!(finals, want, "{context}: the queued events");
            }
            None => assert!(queued.is_empty(), "{context}: queued {queued:?}"),
        }
    }
    let written = fixtures.values().filter(|(_, stored, _, _)| stored.is_some()).count();
    assert_eq!(h.item_count().await, written, "fixtures marked as writing nothing wrote something");
    assert!(log_lines >= fixtures.len(), "the functions logged {log_lines} lines in all");
}

/// Receives what the hint queue holds and invokes its consumer's built artifact with it,
/// as an SQS event, again for the hints it reports failed, as SQS redelivers them, with
/// their receive count (a txid Pagstar does not know yet is asked about up to the third
/// receive); asserts that by then no hint failed. Returns the lines the function logged.
async fn confirm_hints(
    h: &Harness,
    template: &Template,
    bindings: &Bindings<'_, DevEnv>,
    rie: &std::path::Path,
    file: &str,
) -> usize {
    let url = &h.resources.hint_queue_url;
    let output = h.sqs.receive_message().queue_url(url).max_number_of_messages(10).send().await.expect("receive");
    let messages = output.messages.unwrap_or_default();
    if messages.is_empty() {
        return 0;
    }
    let records = |receive_count: u32| -> Vec<serde_json::Value> {
        messages
            .iter()
            .map(|m| {
                serde_json::json!({
                    "messageId": m.message_id(), "receiptHandle": m.receipt_handle(), "body": m.body(),
                    "attributes": {"ApproximateReceiveCount": receive_count.to_string()}, "messageAttributes": {},
                    "md5OfBody": m.md5_of_body(), "eventSource": "aws:sqs",
                    "eventSourceARN": "arn:aws:sqs:us-east-1:123456789012:hints", "awsRegion": "us-east-1"
                })
            })
            .collect()
    };
    let logical_id =
        template.function_for_queue(local_pipeline::template::HINT_QUEUE).expect("a function reads the hint queue");
    let function = template.function(&logical_id).expect("function");
    let env = function.environment(template, bindings).expect("environment");
    let launch = Launch::for_artifact(&invoke::built_artifact(&crate::support::root(), &logical_id))
        .unwrap_or_else(|e| panic!("{e}"));
    let timeout = Duration::from_secs(function.timeout_seconds + 60);
    let mut log_lines = 0;
    for receive_count in 1..=3 {
        let event = serde_json::json!({ "Records": records(receive_count) });
        let invocation = invoke::invoke(rie, &launch, &env, event.to_string().as_bytes(), timeout)
            .await
            .unwrap_or_else(|e| panic!("{file}: {e}"));
        let context = format!("{file} via {logical_id}: {}\n{}", invocation.response, invocation.function_log);
        assert_eq!(invocation.failure(), None, "{context}");
        assert_eq!(invocation.non_json_log_lines(), Vec::<&str>::new(), "{context}");
        log_lines += invocation.function_log.lines().count();
        let response: serde_json::Value = serde_json::from_str(&invocation.response).expect("JSON answer");
        if response["batchItemFailures"] == serde_json::json!([]) {
            break;
        }
        assert!(receive_count < 3, "still failed on the third receive: {context}");
    }
    for message in &messages {
        let handle = message.receipt_handle().expect("receipt handle");
        h.sqs.delete_message().queue_url(url).receipt_handle(handle).send().await.expect("delete");
    }
    log_lines
}
