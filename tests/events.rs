//! Every file in events/ is a valid API Gateway event: it goes through lambda_http's own
//! deserializer and the real handler, against DynamoDB Local and the SQS server, and
//! gives the answer and the stored state its name promises. A fixture the table below
//! does not know fails the test, so none is unused.

mod common;

use std::collections::BTreeMap;
use std::path::Path;

use common::{root, Harness};
use lambda_http::RequestExt;
use local_pipeline::DevEnv;
use shared::{Status, Webhook};
use time::OffsetDateTime;

/// file → (HTTP status, stored status or None for "nothing written", terminal event expected)
fn expectations() -> BTreeMap<&'static str, (u16, Option<Status>)> {
    BTreeMap::from([
        ("azqr/read.json", (204, Some(Status::Pending))),
        ("azqr/paid.json", (204, Some(Status::Processing))),
        ("azqr/canceled.json", (204, Some(Status::Canceling))),
        ("azqr/expired.json", (204, Some(Status::Expired))),
        ("azqr/incompleted.json", (204, Some(Status::Failed))),
        ("azqr/completed.json", (204, Some(Status::Completed))),
        ("azqr/bad-wrong-key.json", (401, None)),
        ("azqr/bad-missing-key.json", (401, None)),
        ("azqr/bad-rrn.json", (400, None)),
        ("azqr/bad-unknown-status.json", (422, None)),
        ("azqr/bad-malformed-json.json", (400, None)),
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
    let env = DevEnv::load(&root().join("local.env.example")).expect("local.env.example");
    let azqr = Webhook::new(azqr_webhook::Azqr::from_env(&env).expect("dev config"), h.store.clone(), h.queue.clone());

    let mut finals = 0;
    for (file, (status, stored)) in expectations() {
        let text = std::fs::read_to_string(root().join("events").join(file)).expect("fixture");
        let request =
            lambda_http::request::from_str(&text).unwrap_or_else(|e| panic!("{file}: not an API Gateway event: {e}"));
        let provider = file.split('/').next().expect("provider dir");
        let rrn = request.path_parameters().first("rrn").map(str::to_owned);
        let response = match provider {
            "azqr" => azqr.handle(request, OffsetDateTime::now_utc()).await,
            other => panic!("{file}: no handler for provider {other}"),
        };
        assert_eq!(response.status().as_u16(), status, "{file}");
        let record = match rrn {
            Some(rrn) => h.store.get(provider, &rrn).await.expect("get"),
            None => None,
        };
        assert_eq!(record.as_ref().map(|r| r.status), stored, "{file}");
        finals += usize::from(stored.is_some_and(Status::is_final));
    }
    assert_eq!(h.drain_events().await.len(), finals, "one terminal event per final fixture");
    let written = expectations().values().filter(|(_, stored)| stored.is_some()).count();
    assert_eq!(h.item_count().await, written, "bad fixtures wrote nothing");
}
