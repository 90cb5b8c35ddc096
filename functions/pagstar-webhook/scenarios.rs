//! Pagstar's own scenarios, against DynamoDB Local, the SQS server and Pagstar's API
//! stand-in over HTTP. The scenarios every provider shares are in tests/it/providers.rs;
//! this file is compiled into that test binary (see the workspace's build.rs), so that
//! the tests link the AWS SDK once.
//!
//! Pagstar's webhook is a hint: its function queues the txids (`HintRelay`), and the hint
//! queue's consumer (`Webhook::confirm_hints`, the `pagstar-confirm` function) asks Pagstar.

use std::sync::Arc;

use crate::providers::{at, simulate};
use crate::support::{closed_port_endpoint, unique_number, Harness};
use local_pipeline::triggers::HintConsumer;
use pagstar_webhook::simulator::{hint, PagstarSimulator};
use pagstar_webhook::{Pagstar, PagstarApi, PagstarConfig};
use shared::storage::HintQueue;
use shared::pipeline::{HintRelay, Inbound, QueuedHint, Webhook};
use shared::runtime::config::Secret;
use provider_testkit::Simulator;

fn relay(h: &Harness) -> HintRelay<Pagstar> {
    HintRelay::new(HintQueue::new(h.sqs.clone(), &h.resources.hint_queue_url)).expect("Pagstar's webhook is a hint")
}

/// What the hint queue holds, each message's id and body, left on the queue.
async fn queued(h: &Harness) -> Vec<QueuedHint> {
    let output = h
        .sqs
        .receive_message()
        .queue_url(&h.resources.hint_queue_url)
        .max_number_of_messages(10)
        .visibility_timeout(0)
        .send()
        .await
        .expect("receive");
    let messages = output.messages.unwrap_or_default();
    let hint = |m: &aws_sdk_sqs::types::Message| {
        QueuedHint::new(m.message_id().unwrap_or_default(), m.body().unwrap_or_default(), None)
    };
    messages.iter().map(hint).collect()
}

fn consumer(h: &Harness, webhook: Webhook<Pagstar>) -> HintConsumer {
    HintConsumer::new(h.sqs.clone(), &h.resources.hint_queue_url, Arc::new(webhook))
}

#[tokio::test]
async fn the_webhook_queues_only_the_txids_and_the_consumer_records_what_pagstar_says() {
    let h = Harness::new().await;
    let (pagstar, webhook) = simulate::<PagstarSimulator>(&h).await;
    let reference = PagstarSimulator::new_reference(unique_number());
    pagstar.stand_in().set(&reference, "CONCLUIDA", "42.10");
    let body = serde_json::json!({ "pix": [{ "txid": reference, "valor": "9999.99", "infoPagador": "x" }] });
    let request = Inbound::new(http::Method::POST, body.to_string()).with_header("content-type", "application/json");
    assert_eq!(relay(&h).answer(&request).await.status().as_u16(), 200);
    // Nothing written and nothing asked yet: the txid alone is queued.
    assert_eq!(h.item_count().await, 0);
    let hints = queued(&h).await;
    assert_eq!(hints.len(), 1);
    assert_eq!(hints[0].body, format!(r#"{{"pix":[{{"txid":"{reference}"}}]}}"#));

    assert_eq!(consumer(&h, webhook).drain_at(at(0)).await.expect("drain"), 1);
    let record = h.store.get("pagstar", &reference).await.expect("get").expect("item");
    assert_eq!(record.status, shared::model::Status::Completed);
    assert_eq!(record.amount.as_ref().map(shared::model::Amount::as_str), Some("42.10"), "Pagstar's amount, not the hint's");
    assert_eq!(record.currency.as_deref(), Some("BRL"));
    assert_eq!(h.drain_events().await.len(), 1, "one outcome event");
    assert!(queued(&h).await.is_empty(), "the confirmed hint is deleted");
}

/// Pagstar unreachable: the hint is reported failed (SQS delivers it again, then to the
/// dead-letter queue), nothing is written; once Pagstar answers, the same hint settles.
#[tokio::test]
async fn pagstar_unreachable_the_hint_is_received_again_and_nothing_is_written() {
    let h = Harness::new().await;
    let (pagstar, webhook) = simulate::<PagstarSimulator>(&h).await;
    let reference = PagstarSimulator::new_reference(unique_number());
    pagstar.stand_in().set(&reference, "CONCLUIDA", "10.00");
    assert_eq!(relay(&h).answer(&hint(&reference)).await.status().as_u16(), 200);
    let config = PagstarConfig {
        calls_per_second: 20,
        api_url: closed_port_endpoint(),
        client_id: "id".into(),
        client_secret: Secret::new("secret"),
        client_identity: None,
    };
    let down = Webhook::new(Pagstar::new(PagstarApi::new(config).expect("client")), h.store.clone(), h.queue.clone());
    let hints = queued(&h).await;
    assert_eq!(down.confirm_hints(&hints, at(0)).await, vec![hints[0].message_id.clone()], "reported failed");
    assert_eq!(h.item_count().await, 0);
    assert!(h.drain_events().await.is_empty());

    assert_eq!(consumer(&h, webhook).drain_at(at(60)).await.expect("drain"), 1, "the hint is still queued");
    let record = h.store.get("pagstar", &reference).await.expect("get").expect("item");
    assert_eq!(record.status, shared::model::Status::Completed);
}

/// A txid Pagstar does not know yet: the hint is received again later (reported failed),
/// and on its third receive acknowledged with nothing written.
#[tokio::test]
async fn a_txid_pagstar_does_not_know_is_asked_again_then_dropped_writing_nothing() {
    let h = Harness::new().await;
    let (_pagstar, webhook) = simulate::<PagstarSimulator>(&h).await;
    let request = hint(&PagstarSimulator::new_reference(unique_number()));
    assert_eq!(relay(&h).answer(&request).await.status().as_u16(), 200);
    let hints = queued(&h).await;
    let ids: Vec<String> = hints.iter().map(|hint| hint.message_id.clone()).collect();
    assert_eq!(webhook.confirm_hints(&hints, at(0)).await, ids, "received again");
    assert_eq!(h.item_count().await, 0);
    let third: Vec<QueuedHint> =
        hints.iter().map(|hint| QueuedHint::new(hint.message_id.clone(), hint.body.clone(), Some("3"))).collect();
    assert_eq!(webhook.confirm_hints(&third, at(400)).await, Vec::<String>::new(), "then dropped");
    assert_eq!(h.item_count().await, 0);
    // A message the relay would not have written (foreign, or from another release) is
    // not dropped: it is received again, then kept in the dead-letter queue.
    let foreign = QueuedHint::new("m-foreign", r#"{"txid":"../x"}"#, None);
    assert_eq!(webhook.confirm_hints(&[foreign], at(0)).await, ["m-foreign"]);
}

/// A hint with nothing to ask is refused before the queue; the queue unreachable is our
/// 500, so Pagstar delivers again.
#[tokio::test]
async fn bad_hints_are_refused_and_a_failed_send_is_a_500() {
    let h = Harness::new().await;
    let eleven: Vec<String> = (0..11).map(|i| format!(r#"{{"txid":"{i:026}"}}"#)).collect();
    let cases = [
        ("malformed", "{", 400),
        ("no txid", r#"{"pix":[{"endToEndId":"E1"}]}"#, 400),
        ("path traversal", r#"{"txid":"../oauth/token"}"#, 400),
        ("not BACEN's txid (under 26)", r#"{"txid":"a1"}"#, 400),
        ("eleven txids", &format!(r#"{{"pix":[{}]}}"#, eleven.join(",")), 400),
    ];
    let relay = relay(&h);
    for (name, body, status) in cases {
        let request = Inbound::new(http::Method::POST, body).with_header("content-type", "application/json");
        assert_eq!(relay.answer(&request).await.status().as_u16(), status, "{name}");
    }
    let text = Inbound::new(http::Method::POST, r#"{"txid":"a1"}"#).with_header("content-type", "text/plain");
    assert_eq!(relay.answer(&text).await.status().as_u16(), 415);
    assert!(queued(&h).await.is_empty(), "nothing queued");

    let unreachable = local_pipeline::sqs_client(&closed_port_endpoint());
    let relay = HintRelay::<Pagstar>::new(HintQueue::new(unreachable, &h.resources.hint_queue_url)).expect("relay");
    let response = relay.answer(&hint(&PagstarSimulator::new_reference(unique_number()))).await;
    assert_eq!(response.status().as_u16(), 500);
    assert_eq!(h.item_count().await, 0);
}
