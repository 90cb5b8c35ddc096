//! Pagstar's own scenarios, against DynamoDB Local, the SQS server and Pagstar's API
//! stand-in over HTTP. The scenarios every provider shares are in tests/it/providers.rs;
//! this file is compiled into that test binary (see the workspace's build.rs), so that
//! the tests link the AWS SDK once.

use crate::providers::{at, simulate};
use crate::support::{closed_port_endpoint, unique_number, Harness};
use pagstar_webhook::simulator::{hint, PagstarSimulator};
use pagstar_webhook::{Pagstar, PagstarApi, PagstarConfig};
use shared::{Inbound, Secret, Simulator, Webhook};

#[tokio::test]
async fn pagstar_unreachable_answers_503_and_writes_nothing() {
    let h = Harness::new().await;
    let config = PagstarConfig {
        api_url: closed_port_endpoint(),
        client_id: "id".into(),
        client_secret: Secret::new("secret"),
        client_identity: None,
    };
    let webhook = Webhook::new(Pagstar::new(PagstarApi::new(config).expect("client")), h.store.clone(), h.queue.clone());
    let response = webhook.answer(&hint(&PagstarSimulator::new_reference(unique_number())), at(0)).await;
    assert_eq!(response.status().as_u16(), 503);
    assert_eq!(h.item_count().await, 0);
    assert!(h.drain_events().await.is_empty());
}

#[tokio::test]
async fn a_txid_pagstar_does_not_know_writes_nothing() {
    let h = Harness::new().await;
    let (_pagstar, webhook) = simulate::<PagstarSimulator>(&h).await;
    let response = webhook.answer(&hint(&PagstarSimulator::new_reference(unique_number())), at(0)).await;
    assert_eq!(response.status().as_u16(), 200);
    assert_eq!(h.item_count().await, 0);
}

#[tokio::test]
async fn the_amount_comes_from_pagstar_not_the_hint() {
    let h = Harness::new().await;
    let (pagstar, webhook) = simulate::<PagstarSimulator>(&h).await;
    let reference = PagstarSimulator::new_reference(unique_number());
    pagstar.stand_in().set(&reference, "CONCLUIDA", "42.10");
    let body = serde_json::json!({ "pix": [{ "txid": reference, "valor": "9999.99" }] }).to_string();
    let request = Inbound::new(http::Method::POST, body).with_header("content-type", "application/json");
    assert_eq!(webhook.answer(&request, at(0)).await.status().as_u16(), 200);
    let record = h.store.get("pagstar", &reference).await.expect("get").expect("item");
    assert_eq!(record.amount.as_ref().map(shared::Amount::as_str), Some("42.10"));
    assert_eq!(record.currency.as_deref(), Some("BRL"));
}
