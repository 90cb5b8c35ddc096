//! Every file in events/ is a valid API Gateway event: it goes through lambda_http's own
//! deserializer and the real handler, against DynamoDB Local, the SQS server and (for
//! Pagstar) the Pagstar stand-in over HTTP, and gives the answer and the stored state
//! listed here. A fixture this table does not list fails the test, so none is unused.
//! The clock is each fixture's `requestContext.timeEpoch`, when it was signed.

mod common;

use std::collections::BTreeMap;

use common::{DevWebhooks, Harness};
use shared::Status;

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
        // The status API (writes nothing): the AZQR fixture's completed transaction, run
        // earlier in this order, and one that does not exist.
        ("transactions/get-completed.json", (200, None)),
        ("transactions/get-unknown.json", (404, None)),
    ])
}

#[test]
fn every_fixture_has_an_expectation() {
    let known: Vec<String> = expectations().keys().map(|k| (*k).to_owned()).collect();
    assert_eq!(common::fixture_files(), known, "events/ and the expectations in tests/events.rs differ");
}

#[tokio::test]
async fn every_fixture_runs_through_lambda_http_and_the_handler() {
    let h = Harness::new().await;
    let webhooks = DevWebhooks::new(&h).await;
    let mut finals = 0;
    for (file, (status, stored)) in expectations() {
        assert_eq!(webhooks.run_fixture(file).await, status, "{file}");
        if let Some((reference, expected)) = stored {
            let provider = file.split('/').next().expect("provider dir");
            let record = h.store.get(provider, reference).await.expect("get");
            assert_eq!(record.map(|r| r.status), Some(expected), "{file}");
            finals += usize::from(expected.is_final());
        }
    }
    let written = expectations().values().filter(|(_, stored)| stored.is_some()).count();
    assert_eq!(h.item_count().await, written, "fixtures marked as writing nothing wrote something");
    assert_eq!(h.drain_events().await.len(), finals, "one terminal event per final fixture");
}
