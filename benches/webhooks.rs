//! CPU per webhook, without network: each provider's verify + parse + normalize
//! (`Provider::receive` on its simulator's `BENCH_FIXTURE`, a real fixture) plus building
//! the conditional update, for every provider of the registry; Pagstar's parsing and
//! mapping around its API call; and the notifier's serialize + sign.
//! `cargo bench --bench webhooks`; figures in BENCHMARKS.md.
// Tests: a panic is a failed test.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::indexing_slicing)]

use std::hint::black_box;
use std::path::Path;

use criterion::{criterion_group, criterion_main, Criterion};
use futures_util::FutureExt;

use provider_catalog::EachSimulator;
use provider_testkit::Simulator;
use shared::pipeline::{Inbound, Provider};
use shared::runtime::config::Env;
use time::OffsetDateTime;

fn root() -> &'static Path {
    Path::new(env!("CARGO_MANIFEST_DIR"))
}

fn env() -> local_pipeline::DevEnv {
    local_pipeline::DevEnv::load(&root().join("local.env.example")).expect("env")
}

/// A fixture as lambda_http delivers it (then as the pipeline sees it), and the time it was signed at.
fn fixture(file: &str) -> (Inbound, OffsetDateTime) {
    let text = std::fs::read_to_string(root().join("events").join(file)).expect("fixture");
    let raw: serde_json::Value = serde_json::from_str(&text).expect("JSON");
    let now = OffsetDateTime::from_unix_timestamp(raw["requestContext"]["timeEpoch"].as_i64().expect("time") / 1000);
    (Inbound::from_lambda(lambda_http::request::from_str(&text).expect("event")), now.expect("time"))
}

/// verify + parse + normalize + build the update. These providers never await on this
/// path, so the future completes on its first poll.
fn bench_provider<P: Provider>(c: &mut Criterion, provider: &P, file: &str) {
    let (request, now) = fixture(file);
    c.bench_function(&format!("{}: verify+parse+normalize+update", P::NAME), |b| {
        b.iter(|| {
            let observations =
                provider.receive(black_box(&request), now).now_or_never().expect("ready").expect("valid");
            for observation in &observations {
                black_box(shared::storage::build_update(P::NAME, observation, now).expect("update"));
            }
        })
    });
}

fn webhooks(c: &mut Criterion) {
    let env = env();
    struct Each<'a>(&'a mut Criterion, &'a local_pipeline::DevEnv);
    impl EachSimulator for Each<'_> {
        fn simulator<S: Simulator>(&mut self) {
            if let Some(fixture) = S::BENCH_FIXTURE {
                let provider = S::Provider::from_env(self.1).expect("provider");
                bench_provider(self.0, &provider, &format!("{}/{fixture}.json", S::Provider::NAME));
            }
        }
    }
    provider_catalog::for_each_simulator(&mut Each(c, &env));

    // Pagstar: the hint's parse, and the parse + mapping of Pagstar's charge (the network
    // call between them is not CPU).
    let (request, now) = fixture("pagstar/concluida.json");
    let cob = r#"{"txid":"pagstarconcluida0000000000001","status":"CONCLUIDA","calendario":{"expiracao":3600},"valor":{"original":"100.00"},"chave":"pix@example.com"}"#;
    c.bench_function("pagstar: parse hint+parse charge+normalize+update", |b| {
        b.iter(|| {
            let hint: pagstar_webhook::PagstarWebhook =
                shared::pipeline::parse_json(black_box(&request.body)).expect("hint");
            for txid in hint.txids().expect("txids") {
                let cob: pagstar_webhook::PagstarCob = serde_json::from_str(black_box(cob)).expect("cob");
                let status: pagstar_webhook::PagstarCobStatus =
                    shared::pipeline::parse_status(&cob.status).expect("status");
                let mut observation = shared::model::Observation::new(txid, status.into(), cob.status);
                observation.amount = cob
                    .valor
                    .and_then(|v| v.original)
                    .map(|raw| shared::model::Amount::from_json(&raw).expect("amount"));
                black_box(shared::storage::build_update("pagstar", &observation, now).expect("update"));
            }
        })
    });

    // Notifier: serialize the terminal event and sign it.
    let record: shared::model::TransactionRecord = serde_json::from_value(serde_json::json!({
        "provider": "azqr", "reference": "100000000006", "status": "completed", "provider_status": "completed",
        "history": [{"status": "pending", "provider_status": "read", "received_at": "2026-11-22T10:00:00Z"},
                    {"status": "completed", "provider_status": "completed", "received_at": "2026-11-22T10:01:00Z"}],
        "first_seen_at": "2026-11-22T10:00:00Z", "updated_at": "2026-11-22T10:01:00Z", "final_at": "2026-11-22T10:01:00Z",
        "notification_pending": "PENDING"
    }))
    .expect("record");
    let event = shared::model::MerchantEvent::for_record(&record).expect("final");
    let dummy = aws_sdk_dynamodb::Config::builder()
        .behavior_version(aws_sdk_dynamodb::config::BehaviorVersion::latest())
        .build();
    let sqs = aws_sdk_sqs::Config::builder().behavior_version(aws_sdk_sqs::config::BehaviorVersion::latest()).build();
    let config = notifier::NotifierConfig {
        notify_url: "https://merchant.example/webhooks".into(),
        table_name: "t".into(),
        queue_url: "q".into(),
        dead_letter_queue_url: "d".into(),
        event_retention: std::time::Duration::from_secs(86_400),
        failing_alert: std::time::Duration::from_secs(30 * 60),
    };
    let store = shared::storage::TransactionStore::new(aws_sdk_dynamodb::Client::from_conf(dummy), "t");
    let signers = notifier::fixed_signers(&env.required("NOTIFY_SECRET").expect("secret")).expect("signers");
    let notifier = notifier::Notifier::new(
        config,
        signers,
        store,
        aws_sdk_sqs::Client::from_conf(sqs),
        notifier::DELIVERY_TIMEOUT,
    )
    .expect("notifier");
    c.bench_function("notifier: serialize+sign", |b| {
        b.iter(|| {
            let body = serde_json::to_string(black_box(&event)).expect("JSON");
            // The signers' lock is uncontended: the future completes on its first poll.
            let signature = notifier.sign(&event.id, 1_795_341_660, &body).now_or_never().expect("ready");
            black_box(signature.expect("signature"))
        })
    });
}

criterion_group!(benches, webhooks);
criterion_main!(benches);
