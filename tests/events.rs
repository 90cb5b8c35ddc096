//! Every file in events/ is a valid API Gateway event: it goes through lambda_http's own
//! deserializer and the real handler, against DynamoDB Local, the SQS server and (for
//! Pagstar) the Pagstar stand-in over HTTP, and gives the answer and the stored state
//! listed here. A fixture this table does not list fails the test, so none is unused.
//! The clock is each fixture's `requestContext.timeEpoch`, when it was signed.

mod common;

use std::collections::BTreeMap;
use std::path::Path;

use common::{root, Harness};
use local_pipeline::{pagstar_standin, DevEnv};
use shared::{Status, Webhook};
use time::OffsetDateTime;

use Status::*;

type Expectation = (u16, Option<(&'static str, Status)>);

/// file → (HTTP status, the (reference, status) stored, or None when nothing is written)
fn expectations() -> BTreeMap<&'static str, Expectation> {
    BTreeMap::from([
        ("azqr/read.json", (204, Some(("100000000001", Pending)))),
        ("azqr/paid.json", (204, Some(("100000000002", Processing)))),
        ("azqr/canceled.json", (204, Some(("100000000003", Canceling)))),
        ("azqr/expired.json", (204, Some(("100000000004", Expired)))),
        ("azqr/incompleted.json", (204, Some(("100000000005", Failed)))),
        ("azqr/completed.json", (204, Some(("100000000006", Completed)))),
        ("azqr/bad-wrong-key.json", (401, None)),
        ("azqr/bad-missing-key.json", (401, None)),
        ("azqr/bad-rrn.json", (400, None)),
        ("azqr/bad-unknown-status.json", (422, None)),
        ("azqr/bad-malformed-json.json", (400, None)),
        ("pay3/created.json", (200, Some(("pay3-order-1:CHECKOUT", Created)))),
        ("pay3/order-started.json", (200, Some(("pay3-order-2:CHECKOUT", Pending)))),
        ("pay3/order-payment-awaiting.json", (200, Some(("pay3-order-3:CHECKOUT", Pending)))),
        ("pay3/order-payment-processing.json", (200, Some(("pay3-order-4:CHECKOUT", Processing)))),
        ("pay3/order-payment-initiated.json", (200, Some(("pay3-order-5:CHECKOUT", Processing)))),
        ("pay3/completed.json", (200, Some(("pay3-order-6:CHECKOUT", Completed)))),
        ("pay3/failed.json", (200, Some(("pay3-order-7:CHECKOUT", Failed)))),
        ("pay3/failed-canceled.json", (200, Some(("pay3-order-8:CHECKOUT", Canceled)))),
        ("pay3/abandoned.json", (200, Some(("pay3-order-9:CHECKOUT", Expired)))),
        ("pay3/refunded-after-final.json", (200, None)),
        ("pay3/bad-signature.json", (401, None)),
        ("pay3/bad-algorithm.json", (401, None)),
        ("pay3/bad-alg-none.json", (401, None)),
        ("pay3/bad-expired.json", (401, None)),
        ("pay3/bad-tampered.json", (401, None)),
        ("pay3/bad-unknown-status.json", (422, None)),
        ("pay3/bad-malformed-json.json", (400, None)),
        ("qitech/processing-conclusion.json", (200, Some(("00000000-0000-4000-8000-000000000001", Processing)))),
        ("qitech/processing-cancellation.json", (200, Some(("00000000-0000-4000-8000-000000000002", Canceling)))),
        ("qitech/concluded.json", (200, Some(("00000000-0000-4000-8000-000000000003", Completed)))),
        ("qitech/canceled.json", (200, Some(("00000000-0000-4000-8000-000000000004", Canceled)))),
        ("qitech/other-webhook-type.json", (200, None)),
        ("qitech/bad-tampered-body.json", (401, None)),
        ("qitech/bad-signature.json", (401, None)),
        ("qitech/bad-wrong-uri.json", (401, None)),
        ("qitech/bad-wrong-client-key.json", (401, None)),
        ("qitech/bad-stale-timestamp.json", (401, None)),
        ("qitech/bad-unknown-status.json", (422, None)),
        ("qitech/bad-malformed-json.json", (400, None)),
        ("key2pay/authorization.json", (200, Some(("k2p-track-1", Processing)))),
        ("key2pay/capture.json", (200, Some(("k2p-track-2", Completed)))),
        ("key2pay/failed.json", (200, Some(("k2p-track-3", Failed)))),
        ("key2pay/bad-wrong-token.json", (401, None)),
        ("key2pay/bad-missing-token.json", (401, None)),
        ("key2pay/bad-unknown-action.json", (422, None)),
        ("key2pay/bad-malformed-json.json", (400, None)),
        ("pagstar/ativa.json", (200, Some(("pagstarativa00000000000000001", Created)))),
        ("pagstar/concluida.json", (200, Some(("pagstarconcluida0000000000001", Completed)))),
        ("pagstar/removida-pelo-usuario-recebedor.json", (200, Some(("pagstarremovidausuario0000001", Canceled)))),
        ("pagstar/removida-pelo-psp.json", (200, Some(("pagstarremovidapsp00000000001", Canceled)))),
        ("pagstar/unknown-txid.json", (200, None)),
        ("pagstar/unknown-status.json", (200, None)),
        ("pagstar/bad-no-txid.json", (400, None)),
        ("pagstar/bad-malformed-json.json", (400, None)),
    ])
}

fn fixture_files(dir: &Path) -> Vec<String> {
    let mut files = Vec::new();
    for provider in std::fs::read_dir(dir).expect("events/") {
        let provider = provider.expect("entry").path();
        for file in std::fs::read_dir(&provider).expect("provider dir") {
            let file = file.expect("entry").path();
            let relative = file.strip_prefix(dir).expect("under events/");
            files.push(relative.to_string_lossy().replace('\\', "/"));
        }
    }
    files.sort();
    files
}

#[test]
fn every_fixture_has_an_expectation() {
    let files = fixture_files(&root().join("events"));
    let known: Vec<String> = expectations().keys().map(|k| (*k).to_owned()).collect();
    assert_eq!(files, known, "events/ and the expectations in tests/events.rs differ");
}

#[tokio::test]
async fn every_fixture_runs_through_lambda_http_and_the_handler() {
    let h = Harness::new().await;
    // The dev secrets the fixtures were made with: the local pipeline's own defaults.
    let mut env = DevEnv::load(&root().join("local.env.example")).expect("local.env.example");
    let charges = pagstar_standin::load_charges(&root().join("local/pagstar-charges.json")).expect("charges");
    env.set_default("PAGSTAR_API_URL", pagstar_standin::start(charges).await.expect("stand-in").url);
    let (store, queue) = (&h.store, &h.queue);
    let azqr = Webhook::new(azqr_webhook::Azqr::from_env(&env).expect("azqr"), store.clone(), queue.clone());
    let pay3 = Webhook::new(pay3_webhook::Pay3::from_env(&env).expect("pay3"), store.clone(), queue.clone());
    let qitech = Webhook::new(qitech_webhook::QiTech::from_env(&env).expect("qitech"), store.clone(), queue.clone());
    let key2pay =
        Webhook::new(key2pay_webhook::Key2Pay::from_env(&env).expect("key2pay"), store.clone(), queue.clone());
    let pagstar =
        Webhook::new(pagstar_webhook::Pagstar::from_env(&env).expect("pagstar"), store.clone(), queue.clone());

    let mut finals = 0;
    for (file, (status, stored)) in expectations() {
        let text = std::fs::read_to_string(root().join("events").join(file)).expect("fixture");
        let raw: serde_json::Value = serde_json::from_str(&text).expect("JSON");
        let epoch_ms = raw["requestContext"]["timeEpoch"].as_i64().expect("timeEpoch");
        let now = OffsetDateTime::from_unix_timestamp(epoch_ms / 1000).expect("time");
        let request =
            lambda_http::request::from_str(&text).unwrap_or_else(|e| panic!("{file}: not an API Gateway event: {e}"));
        let provider = file.split('/').next().expect("provider dir");
        let response = match provider {
            "azqr" => azqr.handle(request, now).await,
            "pay3" => pay3.handle(request, now).await,
            "qitech" => qitech.handle(request, now).await,
            "key2pay" => key2pay.handle(request, now).await,
            "pagstar" => pagstar.handle(request, now).await,
            other => panic!("{file}: no handler for provider {other}"),
        };
        assert_eq!(response.status().as_u16(), status, "{file}");
        if let Some((reference, expected)) = stored {
            let record = h.store.get(provider, reference).await.expect("get");
            assert_eq!(record.map(|r| r.status), Some(expected), "{file}");
            finals += usize::from(expected.is_final());
        }
    }
    let written = expectations().values().filter(|(_, stored)| stored.is_some()).count();
    assert_eq!(h.item_count().await, written, "fixtures marked as writing nothing wrote something");
    assert_eq!(h.drain_events().await.len(), finals, "one terminal event per final fixture");
}
