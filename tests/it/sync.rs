//! The status sync, registration and expiry, against DynamoDB Local, the SQS server and
//! the providers' API stand-ins on loopback: lost final webhooks settled by sync, a sync
//! racing a webhook, a provider down while the others are synced, Pagstar's expiry rule,
//! registrations (201, 200, 409) and amount mismatches. The generic scenarios run for
//! every provider from `providers.rs`.

use std::time::Duration;

use crate::providers::{at, send, simulation};
use crate::support::{unique_number, unique_rrn, Harness};
use http::Method;
use local_pipeline::DevEnv;
use provider_testkit::Simulator;
use shared::model::{event_id, index_time, mismatch_event_id, Status, SyncPolicy, SyncState, GIVE_UP_AFTER};
use shared::pipeline::{Inbound, Provider, Webhook, WritePath};
use shared::runtime::config::Env;
use status_sync::{ProviderRun, StatusSync};
use transactions_api::TransactionsApi;

/// The write path webhooks and syncs share, on `h`'s table and queue.
fn write_path(h: &Harness) -> WritePath {
    WritePath::new(h.store.clone(), h.queue.clone(), SyncPolicy::default())
}

fn status_sync(h: &Harness, env: &DevEnv) -> StatusSync {
    StatusSync::new(write_path(h), status_sync::providers_from_env(env).expect("sync configuration"), 50)
}

fn run_of<'a>(runs: &'a [ProviderRun], provider: &str) -> &'a ProviderRun {
    runs.iter().find(|run| run.provider == provider).expect("a run per provider")
}

/// The first webhook arrives, the final one is lost. A provider with a status API is
/// asked once the transaction has been unchanged for STATUS_SYNC_AFTER_SECONDS, and its
/// answer settles it, with exactly one terminal event. One without stays non-final,
/// `unsupported`, until it is given up 7 days after its last change.
pub async fn lost_final_settled_by_sync<S: Simulator>() {
    let h = Harness::new().await;
    let (s, env) = simulation::<S>().await;
    let name = S::Provider::NAME;
    let provider = S::Provider::from_env(&env).expect("provider");
    let webhook = Webhook::with_write_path(provider, write_path(&h));
    let reference = S::new_reference(unique_number());
    let stored = S::stored_reference(&reference);
    let (first, last) = (S::SEQUENCE[0], S::SEQUENCE[S::SEQUENCE.len() - 1]);
    assert_eq!(send(&webhook, s.webhook(&reference, first, at(0)), 0).await / 100, 2, "{name}");
    s.settle(&reference, last);
    let sync = status_sync(&h, &env);

    assert_eq!(run_of(&sync.run(at(299)).await, name).due, 0, "{name}: not due before 300 s unchanged");
    let run = run_of(&sync.run(at(301)).await, name).clone();
    let record = h.store.get(name, &stored).await.expect("get").expect("item");
    let events = h.drain_events().await;
    if S::Provider::HAS_STATUS_API {
        assert_eq!((run.due, run.applied), (1, 1), "{name}: {run:?}");
        assert_eq!(record.status, S::status_of(last), "{name}: settled by the provider's word");
        assert_eq!((record.sync, record.next_sync_at), (None, None), "{name}: a final transaction is not synced");
        let ids: Vec<&str> = events.iter().map(|e| e.id.as_str()).collect();
        assert_eq!(ids, [event_id(name, &stored, S::status_of(last))], "{name}: exactly one terminal event");
        assert_eq!(run_of(&sync.run(at(400)).await, name).due, 0, "{name}: out of the index");
    } else {
        assert_eq!((run.due, run.applied, run.gave_up), (0, 0, 0), "{name}: asked only to give up");
        assert_eq!(record.status, S::status_of(first), "{name}: never a final status without the provider's word");
        assert_eq!(record.sync, Some(SyncState::Unsupported), "{name}");
        let give_up_at = index_time(at(0) + GIVE_UP_AFTER);
        assert_eq!(record.next_sync_at, Some(give_up_at), "{name}: only the give-up check is scheduled");
        assert!(events.is_empty(), "{name}");
        let run = run_of(&sync.run(give_up_at).await, name).clone();
        assert_eq!(run.gave_up, 1, "{name}: {run:?}");
        let record = h.store.get(name, &stored).await.expect("get").expect("item");
        assert_eq!(
            (record.status, record.sync, record.next_sync_at),
            (S::status_of(first), Some(SyncState::GaveUp), None)
        );
    }
}

/// A sync and the final webhook on the same transactions at the same moment: each ends
/// final once, with one terminal event, whichever write wins.
pub async fn sync_and_webhook_race<S: Simulator>() {
    if !S::Provider::HAS_STATUS_API {
        return;
    }
    let h = Harness::new().await;
    let (s, env) = simulation::<S>().await;
    let name = S::Provider::NAME;
    let webhook = Webhook::with_write_path(S::Provider::from_env(&env).expect("provider"), write_path(&h));
    let sync = status_sync(&h, &env);
    let (first, last) = (S::SEQUENCE[0], S::SEQUENCE[S::SEQUENCE.len() - 1]);
    let references: Vec<String> = (0..5).map(|_| S::new_reference(unique_number())).collect();
    for reference in &references {
        assert_eq!(send(&webhook, s.webhook(reference, first, at(0)), 0).await / 100, 2, "{name}");
        s.settle(reference, last);
    }
    let webhooks = async {
        for reference in &references {
            assert_eq!(send(&webhook, s.deliver(reference, last, at(301)), 301).await / 100, 2, "{name}");
        }
    };
    let ((), _) = tokio::join!(webhooks, sync.run(at(301)));
    let mut events = h.drain_events().await;
    events.sort_by(|a, b| a.data.reference.cmp(&b.data.reference));
    for reference in &references {
        let stored = S::stored_reference(reference);
        let record = h.store.get(name, &stored).await.expect("get").expect("item");
        assert_eq!(record.status, S::status_of(last), "{name}");
        let finals = record.history.iter().filter(|e| e.status.is_final()).count();
        assert_eq!(finals, 1, "{name}: applied once");
        let sent: Vec<&str> = events.iter().filter(|e| e.data.reference == stored).map(|e| e.id.as_str()).collect();
        assert_eq!(sent, [event_id(name, &stored, S::status_of(last))], "{name}: one event");
    }
}

/// AZQR's API is down while Pay3's answers: Pay3's transaction is settled in the same
/// run, AZQR's is left exactly as it was (nothing written) and settled by a later run.
#[tokio::test]
async fn a_provider_down_writes_nothing_and_never_holds_up_the_others() {
    use azqr_webhook::simulator::AzqrSimulator;
    use pay3_webhook::simulator::Pay3Simulator;
    let h = Harness::new().await;
    let (azqr, mut env) = simulation::<AzqrSimulator>().await;
    let (pay3, pay3_env) = simulation::<Pay3Simulator>().await;
    env.set_default("PAY3_API_URL", pay3_env.var("PAY3_API_URL").expect("Pay3 stand-in"));
    let rrn = unique_rrn();
    let order = Pay3Simulator::new_reference(unique_number());
    let azqr_webhook = Webhook::with_write_path(azqr_webhook::Azqr::from_env(&env).expect("azqr"), write_path(&h));
    let pay3_webhook = Webhook::with_write_path(pay3_webhook::Pay3::from_env(&env).expect("pay3"), write_path(&h));
    assert_eq!(send(&azqr_webhook, azqr.webhook(&rrn, "paid", at(0)), 0).await, 204);
    assert_eq!(send(&pay3_webhook, pay3.webhook(&order, "ORDER_STARTED", at(0)), 0).await, 200);
    azqr.settle(&rrn, "completed");
    pay3.settle(&order, "COMPLETED");
    let before = h.store.get("azqr", &rrn).await.expect("get").expect("item");

    // Down: connection refused. Then failing: 503 from a server that answers.
    let failing = wiremock::MockServer::start().await;
    wiremock::Mock::given(wiremock::matchers::any())
        .respond_with(wiremock::ResponseTemplate::new(503))
        .mount(&failing)
        .await;
    for url in [crate::support::closed_port_endpoint(), failing.uri()] {
        let mut down = env.clone();
        down.set_default("AZQR_API_URL", url.clone());
        let runs = status_sync(&h, &down).run(at(301)).await;
        let run = run_of(&runs, "azqr");
        assert!(run.unavailable && run.applied == 0 && run.rescheduled == 0, "{url}: {run:?}");
        let after = h.store.get("azqr", &rrn).await.expect("get").expect("item");
        assert_eq!(after, before, "{url}: nothing written, the same transaction due again");
    }
    let pay3_record = h.store.get("pay3", &Pay3Simulator::stored_reference(&order)).await.expect("get").expect("item");
    assert_eq!(pay3_record.status, Status::Completed, "Pay3 was synced while AZQR was down");

    let runs = status_sync(&h, &env).run(at(330)).await;
    assert_eq!(run_of(&runs, "azqr").applied, 1, "AZQR back: settled on the next run");
    assert_eq!(h.store.get("azqr", &rrn).await.expect("get").expect("item").status, Status::Completed);
}

/// AZQR's query on a wiremock server: `paths` of `/qr/{rrn}/status` and their answers,
/// each after `delay`.
async fn azqr_api(answers: &[(&str, wiremock::ResponseTemplate)]) -> wiremock::MockServer {
    let api = wiremock::MockServer::start().await;
    for (rrn, answer) in answers {
        wiremock::Mock::given(wiremock::matchers::path(format!("/qr/{rrn}/status")))
            .respond_with(answer.clone())
            .mount(&api)
            .await;
    }
    api
}

/// How many times `api` was asked about `rrn`.
async fn asked(api: &wiremock::MockServer, rrn: &str) -> usize {
    let requests = api.received_requests().await.unwrap_or_default();
    requests.iter().filter(|r| r.url.path() == format!("/qr/{rrn}/status")).count()
}

/// A query that AZQR answers 400, and one whose answer cannot be read, belong to their
/// transactions: each is rescheduled one rung up the backoff and counted, and a third
/// transaction of the same provider, due after them, is settled in the same run, also
/// when the calls are made one at a time.
#[tokio::test]
async fn a_query_failing_for_one_transaction_reschedules_it_and_the_run_goes_on() {
    use azqr_webhook::simulator::AzqrSimulator;
    let h = Harness::new().await;
    let (azqr, mut env) = simulation::<AzqrSimulator>().await;
    let webhook = Webhook::with_write_path(azqr_webhook::Azqr::from_env(&env).expect("azqr"), write_path(&h));
    let (rejected, unreadable, settled) = (unique_rrn(), unique_rrn(), unique_rrn());
    let completed = serde_json::json!({"status": "completed", "description": "Payment completed"});
    let api = azqr_api(&[
        (&rejected, wiremock::ResponseTemplate::new(400).set_body_string(r#"{"error":"invalid rrn"}"#)),
        (&unreadable, wiremock::ResponseTemplate::new(200).set_body_string("<html>maintenance</html>")),
        (&settled, wiremock::ResponseTemplate::new(200).set_body_json(completed)),
    ])
    .await;
    env.set_default("AZQR_API_URL", api.uri());
    assert_eq!(send(&webhook, azqr.webhook(&rejected, "paid", at(0)), 0).await, 204);
    assert_eq!(send(&webhook, azqr.webhook(&unreadable, "paid", at(0)), 0).await, 204);
    assert_eq!(send(&webhook, azqr.webhook(&settled, "paid", at(1)), 1).await, 204);

    let sync = status_sync(&h, &env).with_concurrency(1);
    let run = run_of(&sync.run(at(302)).await, "azqr").clone();
    assert_eq!((run.due, run.applied, run.rejected, run.rescheduled), (3, 1, 2, 0), "{run:?}");
    assert!(!run.unavailable && !run.failed, "{run:?}");
    assert_eq!(run.lag_seconds, 2, "the oldest was due at 300 s");
    for rrn in [&rejected, &unreadable] {
        let record = h.store.get("azqr", rrn).await.expect("get").expect("item");
        assert_eq!((record.status, record.sync_attempts), (Status::Processing, 1), "{rrn}: one rung up");
        assert_eq!(record.next_sync_at, Some(at(302 + 900)), "{rrn}: 15 minutes later");
        assert_eq!(asked(&api, rrn).await, 1, "{rrn}: a client error is not asked again in the run");
    }
    assert_eq!(h.store.get("azqr", &settled).await.expect("get").expect("item").status, Status::Completed);
    assert_eq!(run_of(&sync.run(at(400)).await, "azqr").due, 0, "nothing due before the next rung");
}

/// A reference stored before its provider's format was checked (a registration of an
/// older release) never goes into the provider's URL: it is rescheduled as a query that
/// failed for its transaction, and the provider is not called.
#[tokio::test]
async fn a_stored_reference_not_in_its_providers_format_is_not_asked() {
    use shared::model::{Registration, WritePlan};
    let h = Harness::new().await;
    let (_azqr, mut env) = simulation::<azqr_webhook::simulator::AzqrSimulator>().await;
    let api = azqr_api(&[]).await;
    env.set_default("AZQR_API_URL", api.uri());
    let plan = WritePlan { supported: true, ..WritePlan::default() };
    let stored = format!("../x{}", unique_number());
    h.store.register("azqr", &stored, &Registration::default(), at(0), plan).await.expect("registered, unchecked");
    let run = run_of(&status_sync(&h, &env).run(at(302)).await, "azqr").clone();
    assert_eq!((run.due, run.rejected, run.applied), (1, 1, 0), "{run:?}");
    assert!(!run.unavailable && !run.failed, "{run:?}");
    assert!(api.received_requests().await.unwrap_or_default().is_empty(), "AZQR was not called");
    let record = h.store.get("azqr", &stored).await.expect("get").expect("item");
    assert_eq!(record.sync_attempts, 1, "one rung up the backoff");
}

/// Two runs at once (a slow run and the next scheduled one): each shard group is held by
/// one of them, the other skips it, and no transaction is asked about twice.
#[tokio::test]
async fn overlapping_runs_never_ask_about_the_same_transaction_twice() {
    use azqr_webhook::simulator::AzqrSimulator;
    let h = Harness::new().await;
    let (azqr, mut env) = simulation::<AzqrSimulator>().await;
    let webhook = Webhook::with_write_path(azqr_webhook::Azqr::from_env(&env).expect("azqr"), write_path(&h));
    let rrns: Vec<String> = (0..6).map(|_| unique_rrn()).collect();
    let slow = wiremock::ResponseTemplate::new(200)
        .set_body_json(serde_json::json!({"status": "inprogress"}))
        .set_delay(Duration::from_millis(300));
    let answers: Vec<(&str, wiremock::ResponseTemplate)> = rrns.iter().map(|r| (r.as_str(), slow.clone())).collect();
    let api = azqr_api(&answers).await;
    env.set_default("AZQR_API_URL", api.uri());
    for rrn in &rrns {
        assert_eq!(send(&webhook, azqr.webhook(rrn, "paid", at(0)), 0).await, 204);
    }
    let (first, second) = (status_sync(&h, &env).with_concurrency(2), status_sync(&h, &env).with_concurrency(2));
    let (a, b) = tokio::join!(first.run(at(301)), second.run(at(301)));
    let (a, b) = (run_of(&a, "azqr"), run_of(&b, "azqr"));
    assert_eq!(a.rescheduled + b.rescheduled, rrns.len(), "{a:?} {b:?}");
    for rrn in &rrns {
        assert_eq!(asked(&api, rrn).await, 1, "{rrn}");
    }
    // The lease was given back: the next run takes it.
    let next = run_of(&status_sync(&h, &env).run(at(301 + 900)).await, "azqr").clone();
    assert!(!next.busy && next.rescheduled == rrns.len(), "{next:?}");
}

/// A transaction scheduled before the sharding (its schedule in `next_sync_at`, listed by
/// the old `SyncSchedule` index) is still found when due, asked, and moved to the sharded
/// schedule by the reschedule.
#[tokio::test]
async fn a_transaction_scheduled_before_the_sharding_is_found_and_moved() {
    use aws_sdk_dynamodb::types::AttributeValue;
    use azqr_webhook::simulator::AzqrSimulator;
    let h = Harness::new().await;
    let (azqr, env) = simulation::<AzqrSimulator>().await;
    let rrn = unique_rrn();
    let text = |value: &str| AttributeValue::S(value.to_owned());
    // The item as the previous release wrote it.
    h.dynamodb
        .put_item()
        .table_name(&h.resources.table_name)
        .item("pk", text(&format!("azqr#{rrn}")))
        .item("provider", text("azqr"))
        .item("reference", text(&rrn))
        .item("status", text("processing"))
        .item("provider_status", text("paid"))
        .item("rank", AttributeValue::N("2".into()))
        .item("first_seen_at", text(&rfc3339(at(0))))
        .item("updated_at", text(&rfc3339(at(0))))
        .item("sync", text("scheduled"))
        .item("next_sync_at", text(&rfc3339(at(300))))
        .send()
        .await
        .expect("legacy item");
    azqr.settle(&rrn, "paid"); // nothing new: rescheduled
    let run = run_of(&status_sync(&h, &env).run(at(301)).await, "azqr").clone();
    assert_eq!((run.due, run.rescheduled), (1, 1), "{run:?}");
    let item = h
        .dynamodb
        .get_item()
        .table_name(&h.resources.table_name)
        .key("pk", text(&format!("azqr#{rrn}")))
        .send()
        .await
        .expect("get")
        .item
        .expect("item");
    assert!(!item.contains_key("next_sync_at"), "out of the old index");
    assert_eq!(item.get("sync_at"), Some(&text(&rfc3339(at(301 + 900)))));
    assert_eq!(item.get("sync_shard"), Some(&text(&shared::model::sync_shard("azqr", &rrn))));
    let record = h.store.get("azqr", &rrn).await.expect("get").expect("item");
    assert_eq!(record.next_sync_at, Some(at(301 + 900)), "shown as next_sync_at");
    assert_eq!(serde_json::to_value(&record).expect("JSON")["next_sync_at"], rfc3339(at(301 + 900)));
}

/// A sync that learns nothing moves the transaction up the backoff ladder.
#[tokio::test]
async fn nothing_new_backs_off() {
    use azqr_webhook::simulator::AzqrSimulator;
    let h = Harness::new().await;
    let (azqr, env) = simulation::<AzqrSimulator>().await;
    let webhook = Webhook::with_write_path(azqr_webhook::Azqr::from_env(&env).expect("azqr"), write_path(&h));
    let rrn = unique_rrn();
    assert_eq!(send(&webhook, azqr.webhook(&rrn, "paid", at(0)), 0).await, 204);
    azqr.settle(&rrn, "paid"); // AZQR's query says inprogress: nothing new
    let sync = status_sync(&h, &env);
    let mut now = at(300);
    let mut delays = Vec::new();
    for _ in 0..3 {
        assert_eq!(run_of(&sync.run(now).await, "azqr").rescheduled, 1);
        let record = h.store.get("azqr", &rrn).await.expect("get").expect("item");
        let next = record.next_sync_at.expect("still scheduled");
        delays.push((next - now).whole_minutes());
        assert_eq!(run_of(&sync.run(next - Duration::from_secs(1)).await, "azqr").due, 0, "not due before");
        now = next;
    }
    assert_eq!(delays, [15, 60, 360]);
    assert_eq!(h.store.get("azqr", &rrn).await.expect("get").expect("item").status, Status::Processing);
}

/// BACEN: a charge still ATIVA past criacao + expiracao (and the margin) is expired, by
/// sync and by webhook.
#[tokio::test]
async fn an_expired_pagstar_charge_becomes_expired_by_sync_and_by_webhook() {
    use pagstar_webhook::simulator::{hint, PagstarSimulator};
    let h = Harness::new().await;
    let (pagstar, env) = simulation::<PagstarSimulator>().await;
    let webhook = Webhook::with_write_path(pagstar_webhook::Pagstar::from_env(&env).expect("pagstar"), write_path(&h));
    let (by_sync, by_webhook) =
        (PagstarSimulator::new_reference(unique_number()), PagstarSimulator::new_reference(unique_number()));
    for txid in [&by_sync, &by_webhook] {
        pagstar.stand_in().set_created(txid, "ATIVA", "25.00", at(0), 60);
    }
    assert_eq!(send(&webhook, hint(&by_sync), 10).await, 200);
    assert_eq!(h.store.get("pagstar", &by_sync).await.expect("get").expect("item").status, Status::Created);
    // Within the margin past its expiry (10 minutes by default), still created.
    assert_eq!(send(&webhook, hint(&by_webhook), 600).await, 200);
    assert_eq!(h.store.get("pagstar", &by_webhook).await.expect("get").expect("item").status, Status::Created);
    assert_eq!(send(&webhook, hint(&by_webhook), 661).await, 200);
    assert_eq!(run_of(&status_sync(&h, &env).run(at(700)).await, "pagstar").applied, 1);
    let mut events = h.drain_events().await;
    events.sort_by(|a, b| a.id.cmp(&b.id));
    for txid in [&by_sync, &by_webhook] {
        let record = h.store.get("pagstar", txid).await.expect("get").expect("item");
        assert_eq!((record.status, record.provider_status.as_str()), (Status::Expired, "ATIVA"), "{txid}");
        assert_eq!(events.iter().filter(|e| &e.data.reference == txid).count(), 1, "{txid}: one event");
    }
}

/// A charge the merchant registered before any webhook (no expiry known): the sync's
/// first answer changes nothing but states the charge's expiry, which the reschedule
/// keeps; the next ask is a minute after it, not the ladder's next rung.
#[tokio::test]
async fn a_registered_charge_learns_its_expiry_from_the_first_answer() {
    use pagstar_webhook::simulator::PagstarSimulator;
    let h = Harness::new().await;
    let (pagstar, env) = simulation::<PagstarSimulator>().await;
    let api = TransactionsApi::new(h.store.clone(), SyncPolicy::default(), provider_catalog::all());
    let txid = PagstarSimulator::new_reference(unique_number());
    pagstar.stand_in().set_created(&txid, "ATIVA", "25.00", at(0), 1_800);
    let (status, body) = answer(&api, register("pagstar", &txid, "{}"), 0).await;
    assert_eq!((status, &body["next_sync_at"]), (201, &serde_json::json!(rfc3339(at(300)))));
    let run = run_of(&status_sync(&h, &env).run(at(301)).await, "pagstar").clone();
    assert_eq!((run.applied, run.rescheduled), (0, 1), "{run:?}");
    let record = h.store.get("pagstar", &txid).await.expect("get").expect("item");
    assert_eq!(record.status, Status::Created);
    assert_eq!(record.expires_at, Some(at(1_800)), "the expiry Pagstar stated is kept");
    assert_eq!(record.next_sync_at, Some(at(1_860)), "asked a minute after it, not in 15 minutes");
}

fn rfc3339(at: time::OffsetDateTime) -> String {
    at.format(&time::format_description::well_known::Rfc3339).expect("RFC 3339")
}

/// `S`'s simulation with its webhook writing to `h`, and the transactions API on `h`'s table.
async fn webhook_and_api<S: Simulator>(h: &Harness) -> (S, Webhook<S::Provider>, TransactionsApi) {
    let (simulator, env) = simulation::<S>().await;
    let provider = S::Provider::from_env(&env).unwrap_or_else(|e| panic!("{}: {e}", S::Provider::NAME));
    let webhook = Webhook::with_write_path(provider, write_path(h));
    (simulator, webhook, TransactionsApi::new(h.store.clone(), SyncPolicy::default(), provider_catalog::all()))
}

fn register(provider: &str, reference: &str, body: &str) -> Inbound {
    Inbound::new(Method::PUT, body)
        .with_header("content-type", "application/json")
        .with_path_parameter("provider", provider)
        .with_path_parameter("reference", reference)
}

async fn answer(api: &TransactionsApi, request: Inbound, t: i64) -> (u16, serde_json::Value) {
    let response = api.answer(&request, at(t)).await;
    let body = serde_json::from_slice(response.body().as_ref()).expect("JSON");
    (response.status().as_u16(), body)
}

/// 201 for a new transaction, 200 for the same registration again (the same amount
/// written differently included), 409 for a different amount or currency; the status
/// never moves; a registered transaction no webhook ever mentions is settled by sync.
#[tokio::test]
async fn registration_then_settled_by_sync_without_any_webhook() {
    use azqr_webhook::simulator::AzqrSimulator;
    let h = Harness::new().await;
    let (azqr, env) = simulation::<AzqrSimulator>().await;
    let api = TransactionsApi::new(h.store.clone(), SyncPolicy::default(), provider_catalog::all());
    let rrn = unique_rrn();
    let body = r#"{"amount":"10.00","currency":"AZN"}"#;
    let (status, created) = answer(&api, register("azqr", &rrn, body), 0).await;
    assert_eq!(status, 201, "{created}");
    assert_eq!((created["status"].as_str(), created["sync"].as_str()), (Some("created"), Some("scheduled")));
    assert_eq!(created["expected_amount"], "10.00");
    assert_eq!(created["next_sync_at"], rfc3339(at(300)), "300 s after the registration");
    assert_eq!(answer(&api, register("azqr", &rrn, body), 1).await.0, 200);
    assert_eq!(answer(&api, register("azqr", &rrn, r#"{"amount":"10.0","currency":"AZN"}"#), 2).await.0, 200);
    for different in [r#"{"amount":"11.00","currency":"AZN"}"#, r#"{"amount":"10.00","currency":"USD"}"#, "{}"] {
        let (status, error) = answer(&api, register("azqr", &rrn, different), 3).await;
        assert_eq!((status, error["error"]["code"].as_str()), (409, Some("registration_conflict")), "{different}");
    }
    assert_eq!(answer(&api, register("nosuch", &rrn, body), 4).await.0, 404);
    assert_eq!(answer(&api, register("azqr", &rrn, r#"{"amount":"ten"}"#), 4).await.0, 400);

    azqr.settle(&rrn, "completed");
    let runs = status_sync(&h, &env).run(at(301)).await;
    assert_eq!(run_of(&runs, "azqr").applied, 1);
    let record = h.store.get("azqr", &rrn).await.expect("get").expect("item");
    assert_eq!(record.status, Status::Completed);
    assert_eq!(record.expected_amount.as_ref().map(|a| a.as_str()), Some("10.00"), "the registration stays");
    let events = h.drain_events().await;
    assert_eq!(events.iter().map(|e| e.id.as_str()).collect::<Vec<_>>(), [event_id("azqr", &rrn, Status::Completed)]);

    // A registration never moves a record backwards.
    let (status, body) = answer(&api, register("azqr", &rrn, r#"{"amount":"10.00","currency":"AZN"}"#), 400).await;
    assert_eq!((status, body["status"].as_str()), (200, Some("completed")));
}

/// A webhook first, then the registration: attached (200), the status untouched. The
/// provider's final amount differs from the registered one: applied as the provider says,
/// with `amount_mismatch` on the record and its event. An expiry brings the sync forward.
#[tokio::test]
async fn registration_after_a_webhook_amount_mismatch_and_expiry() {
    use pagstar_webhook::simulator::{hint, PagstarSimulator};
    let h = Harness::new().await;
    let (pagstar, webhook, api) = webhook_and_api::<PagstarSimulator>(&h).await;
    let txid = PagstarSimulator::new_reference(unique_number());
    pagstar.settle(&txid, "ATIVA");
    assert_eq!(send(&webhook, hint(&txid), 0).await, 200);
    let (status, body) = answer(&api, register("pagstar", &txid, r#"{"amount":"10.00","currency":"BRL"}"#), 1).await;
    assert_eq!((status, body["status"].as_str(), body["registered_at"].is_string()), (200, Some("created"), true));

    pagstar.settle(&txid, "CONCLUIDA"); // the stand-in's charges are 100.00
    assert_eq!(send(&webhook, hint(&txid), 2).await, 200);
    let record = h.store.get("pagstar", &txid).await.expect("get").expect("item");
    assert_eq!(record.status, Status::Completed, "applied as the provider says");
    let mismatch = record.amount_mismatch.as_ref().expect("mismatch");
    assert_eq!((mismatch.expected.as_deref(), mismatch.reported.as_deref()), (Some("10.00"), Some("100.00")));
    assert_eq!(mismatch.kind, shared::model::MismatchKind::Overpaid);
    // The outcome, and the mismatch told as an event of its own, with an id of its kind.
    let ids = [
        event_id("pagstar", &txid, Status::Completed),
        mismatch_event_id("pagstar", &txid, shared::model::MismatchKind::Overpaid),
    ];
    let events = h.drain_events().await;
    assert_eq!(events.iter().map(|e| e.id.as_str()).collect::<Vec<_>>(), ids);
    assert_eq!(events[1].kind, shared::model::EventType::AmountMismatch);
    assert!(events.iter().all(|e| e.data.amount_mismatch == record.amount_mismatch), "both carry it");
    assert_eq!(events[1].created_at, record.final_at.expect("final"), "known when the final came");
    // The same final again: both sent again under the same ids (an earlier send may have
    // been lost; the queue and the merchant deduplicate by id).
    assert_eq!(send(&webhook, hint(&txid), 3).await, 200);
    let again = h.drain_events().await;
    assert_eq!(again.iter().map(|e| e.id.as_str()).collect::<Vec<_>>(), ids);

    let expiring = unique_rrn();
    let expiry = format!(r#"{{"expires_at":"{}"}}"#, rfc3339(at(60)));
    let (status, body) = answer(&api, register("azqr", &expiring, &expiry), 0).await;
    assert_eq!((status, &body["expires_at"]), (201, &serde_json::json!(rfc3339(at(60)))));
    assert_eq!(body["next_sync_at"], rfc3339(at(120)), "a minute after the expiry, sooner than 300 s");
}

/// A registered amount, and a final from a provider that reports amounts without one:
/// applied as the provider says, and the record says `not_reported`.
#[tokio::test]
async fn a_final_without_the_amount_its_provider_reports_is_flagged_not_reported() {
    use qitech_webhook::simulator::{entry_body, QiTechSimulator};
    let h = Harness::new().await;
    let (qitech, webhook, api) = webhook_and_api::<QiTechSimulator>(&h).await;
    let entry = QiTechSimulator::new_reference(unique_number());
    let (status, _) = answer(&api, register("qitech", &entry, r#"{"amount":"150.00","currency":"BRL"}"#), 0).await;
    assert_eq!(status, 201);
    let body = entry_body(&entry, "concluded").replace(r#""payment_instrument_entry_amount":150.00,"#, "");
    assert!(!body.contains("payment_instrument_entry_amount"), "{body}");
    assert_eq!(send(&webhook, qitech.with_body(body.as_bytes(), at(1)), 1).await, 200);
    let record = h.store.get("qitech", &entry).await.expect("get").expect("item");
    assert_eq!(record.status, Status::Completed, "applied as the provider says");
    let mismatch = record.amount_mismatch.expect("flagged");
    assert_eq!(mismatch.kind, shared::model::MismatchKind::NotReported);
    assert_eq!((mismatch.expected.as_deref(), mismatch.reported.as_deref()), (Some("150.00"), None));
}

/// What Pagstar says was asked is not the merchant's registration: a registration without
/// an amount, repeated after Pagstar spoke, is still the same registration (200, not 409).
#[tokio::test]
async fn the_amount_a_provider_says_was_asked_is_not_a_registration() {
    use pagstar_webhook::simulator::{hint, PagstarSimulator};
    let h = Harness::new().await;
    let (pagstar, webhook, api) = webhook_and_api::<PagstarSimulator>(&h).await;
    let txid = PagstarSimulator::new_reference(unique_number());
    pagstar.settle(&txid, "ATIVA"); // asked: 100.00
    assert_eq!(send(&webhook, hint(&txid), 0).await, 200);
    for t in 1..3 {
        let (status, body) = answer(&api, register("pagstar", &txid, r#"{"currency":"BRL"}"#), t).await;
        assert_eq!(status, 200, "{body}");
        assert!(body.get("expected_amount").is_none(), "the merchant registered no amount: {body}");
    }
    pagstar.settle(&txid, "CONCLUIDA");
    assert_eq!(send(&webhook, hint(&txid), 3).await, 200);
    let record = h.store.get("pagstar", &txid).await.expect("get").expect("item");
    assert_eq!(record.amount_mismatch, None, "paid what was asked");
}
