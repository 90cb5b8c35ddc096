//! What needs a human, through the real write path and the transactions API on DynamoDB
//! Local: each reason puts its transaction in the sparse `Attention` index once, in the
//! write that causes it or right after; `GET /transactions?attention=true` pages through
//! every shard newest first, each entry exactly once; what needs no human is not listed.

use http::Method;
use shared::model::{Amount, NotificationOutcome, Observation, Registration, Status, SyncPolicy, SyncStep, WritePlan};
use shared::pipeline::{Inbound, WritePath};
use transactions_api::TransactionsApi;

use crate::providers::at;
use crate::support::{unique_rrn, Harness};

fn list(query: &[(&str, &str)]) -> Inbound {
    query.iter().fold(Inbound::new(Method::GET, ""), |request, (name, value)| request.with_query(name, value))
}

async fn answer(api: &TransactionsApi, request: Inbound) -> (u16, serde_json::Value) {
    let response = api.answer(&request, at(100)).await;
    let body = serde_json::from_slice(response.body().as_ref()).expect("JSON");
    (response.status().as_u16(), body)
}

fn observation(reference: &str, status: Status, amount: &str) -> Observation {
    let mut observation = Observation::new(reference, status, status.as_str().to_uppercase());
    observation.amount = Some(Amount::parse(amount).expect("amount"));
    observation.currency = Some("BRL".into());
    observation
}

#[tokio::test]
async fn every_reason_lists_its_transaction_once_and_pages_cover_every_shard() {
    let h = Harness::new().await;
    let write_path = WritePath::new(h.store.clone(), h.queue.clone(), SyncPolicy::default());
    let api = TransactionsApi::new(h.store.clone(), SyncPolicy::default(), provider_catalog::all());
    let [conflicted, short, refused, abandoned, fine] = std::array::from_fn::<String, 5, _>(|_| unique_rrn());

    // A conflict: completed, then failed (twice: the repeat lists nothing again).
    write_path.apply("azqr", true, observation(&conflicted, Status::Completed, "10.00"), at(1)).await.expect("apply");
    for t in [2, 3] {
        write_path.apply("azqr", true, observation(&conflicted, Status::Failed, "10.00"), at(t)).await.expect("apply");
    }
    // An amount mismatch: registered at 12.00, paid 10.00.
    let registration =
        Registration { amount: Some(Amount::parse("12.00").expect("amount")), currency: None, expires_at: None };
    h.store.register("azqr", &short, &registration, at(4), WritePlan::default()).await.expect("register");
    write_path.apply("azqr", true, observation(&short, Status::Completed, "10.00"), at(5)).await.expect("apply");
    // The merchant refused the outcome for good.
    write_path.apply("azqr", true, observation(&refused, Status::Completed, "10.00"), at(6)).await.expect("apply");
    let marked = h.store.mark_notification("azqr", &refused, Status::Completed, NotificationOutcome::Refused, at(7));
    assert!(marked.await.expect("mark"));
    // The sync gave up on a payment still pending.
    write_path.apply("azqr", true, observation(&abandoned, Status::Pending, "10.00"), at(8)).await.expect("apply");
    let pending = h.store.get("azqr", &abandoned).await.expect("get").expect("record");
    assert!(h.store.reschedule(&pending, SyncStep::GiveUp, at(9)).await.expect("give up"));
    // Paid as expected: nothing for a human.
    write_path.apply("azqr", true, observation(&fine, Status::Completed, "10.00"), at(10)).await.expect("apply");

    let expected = [
        (abandoned.as_str(), "sync_gave_up"),
        (refused.as_str(), "merchant_refused"),
        (short.as_str(), "amount_mismatch"),
        (conflicted.as_str(), "conflict"),
    ];
    // One page, then pages of one: the same entries in the same order, each once.
    let (status, page) = answer(&api, list(&[("attention", "true")])).await;
    assert_eq!(status, 200, "{page}");
    let listed: Vec<(String, String)> = page["data"]
        .as_array()
        .expect("data")
        .iter()
        .map(|e| (e["reference"].as_str().expect("reference").to_owned(), e["attention"].to_string()))
        .collect();
    let wanted: Vec<(String, String)> =
        expected.iter().map(|(r, why)| ((*r).to_owned(), serde_json::json!([why]).to_string())).collect();
    assert_eq!(listed, wanted, "newest first, each for its reason: {page}");
    assert!(page["next"].is_null());
    assert_eq!(page["data"][0]["flagged_at"], "2026-11-18T11:06:49Z", "when the give-up listed it: {page}");
    let mut paged = Vec::new();
    let mut after: Option<String> = None;
    loop {
        let mut query = vec![("attention", "true"), ("limit", "1")];
        if let Some(after) = &after {
            query.push(("after", after.as_str()));
        }
        let (status, page) = answer(&api, list(&query)).await;
        assert_eq!(status, 200, "{page}");
        paged.extend(
            page["data"].as_array().expect("data").iter().map(|e| e["reference"].as_str().expect("r").to_owned()),
        );
        match page["next"].as_str() {
            Some(next) => after = Some(next.to_owned()),
            None => break,
        }
    }
    assert_eq!(paged, wanted.iter().map(|(r, _)| r.clone()).collect::<Vec<_>>());

    // The record says why, too; one that needs no human says nothing.
    let get = |reference: &str| {
        Inbound::new(Method::GET, "")
            .with_path_parameter("provider", "azqr")
            .with_path_parameter("reference", reference)
    };
    let (_, record) = answer(&api, get(&conflicted)).await;
    assert_eq!(record["attention"], serde_json::json!(["conflict"]));
    let (_, record) = answer(&api, get(&fine)).await;
    assert!(record.get("attention").is_none(), "{record}");

    // The list's refusals: 400 invalid_field, nothing read.
    for query in [
        vec![],
        vec![("attention", "false")],
        vec![("attention", "true"), ("limit", "0")],
        vec![("attention", "true"), ("after", "not-a-cursor")],
    ] {
        let (status, body) = answer(&api, list(&query)).await;
        assert_eq!((status, body["error"]["code"].as_str()), (400, Some("invalid_field")), "{query:?}");
    }
}

/// A sync due more than five minutes ago and not asked yet is listed by
/// `GET /transactions?overdue=true`, most overdue first; one not yet late is not.
#[tokio::test]
async fn syncs_running_late_are_listed_most_late_first() {
    let h = Harness::new().await;
    let write_path = WritePath::new(h.store.clone(), h.queue.clone(), SyncPolicy::default());
    let api = TransactionsApi::new(h.store.clone(), SyncPolicy::default(), provider_catalog::all());
    let (early, late) = (unique_rrn(), unique_rrn());
    write_path.apply("azqr", true, observation(&early, Status::Pending, "10.00"), at(0)).await.expect("apply");
    write_path.apply("azqr", true, observation(&late, Status::Pending, "10.00"), at(600)).await.expect("apply");
    let mut due = Vec::new();
    for rrn in [&early, &late] {
        let record = h.store.get("azqr", rrn).await.expect("get").expect("record");
        due.push(record.next_sync_at.expect("scheduled"));
    }
    let (early_due, late_due) = (due[0], due[1]);
    let overdue = |now: time::OffsetDateTime| {
        let api = &api;
        async move {
            let request = Inbound::new(Method::GET, "").with_query("overdue", "true");
            let response = api.answer(&request, now).await;
            let body: serde_json::Value = serde_json::from_slice(response.body().as_ref()).expect("JSON");
            assert_eq!(response.status().as_u16(), 200, "{body}");
            body["data"]
                .as_array()
                .expect("data")
                .iter()
                .map(|e| (e["reference"].as_str().expect("r").to_owned(), e["overdue_seconds"].as_i64().expect("s")))
                .collect::<Vec<_>>()
        }
    };
    assert_eq!(overdue(early_due + time::Duration::minutes(4)).await, [], "not five minutes late yet");
    let now = late_due + time::Duration::minutes(6);
    let listed = overdue(now).await;
    assert_eq!(listed, [(early.clone(), (now - early_due).whole_seconds()), (late.clone(), 360)], "most late first");
    let (status, _) = answer(&api, list(&[("overdue", "yes")])).await;
    assert_eq!(status, 400);
}

/// A registration attached to a record a webhook made first, with another amount, lists
/// the mismatch it reveals.
#[tokio::test]
async fn a_late_registration_that_reveals_a_mismatch_lists_it() {
    let h = Harness::new().await;
    let write_path = WritePath::new(h.store.clone(), h.queue.clone(), SyncPolicy::default());
    let api = TransactionsApi::new(h.store.clone(), SyncPolicy::default(), provider_catalog::all());
    let rrn = unique_rrn();
    write_path.apply("azqr", true, observation(&rrn, Status::Completed, "10.00"), at(1)).await.expect("apply");
    let (_, page) = answer(&api, list(&[("attention", "true")])).await;
    assert_eq!(page["data"], serde_json::json!([]), "nothing yet");
    let register = Inbound::new(Method::PUT, r#"{"amount": "15.00"}"#)
        .with_header("content-type", "application/json")
        .with_path_parameter("provider", "azqr")
        .with_path_parameter("reference", &rrn);
    let (status, record) = answer(&api, register).await;
    assert_eq!((status, &record["attention"]), (200, &serde_json::json!(["amount_mismatch"])), "{record}");
    let (_, page) = answer(&api, list(&[("attention", "true")])).await;
    assert_eq!(page["data"][0]["reference"], rrn.as_str(), "{page}");
}
