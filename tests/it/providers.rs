//! The same scenarios for every provider of the registry, each driven by its simulator,
//! against DynamoDB Local, the SQS server and the provider's simulated API where it has
//! one: a full sequence, every event twice, events out of order, conflicting finals, bad
//! inputs that answer 4xx and write nothing, and 500 transactions of all providers at
//! once. A provider's own scenarios are in its folder (`functions/<provider>/scenarios.rs`).

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;

use crate::support::{dev_env, root, unique_number, Harness};
use local_pipeline::chaos::traffic::Rng;
use provider_catalog::EachSimulator;
use provider_testkit::Simulator;
use shared::model::{decide, event_id, Decision, Status};
use shared::pipeline::{Inbound, Provider, Webhook};
use time::OffsetDateTime;

pub fn at(seconds: i64) -> OffsetDateTime {
    OffsetDateTime::from_unix_timestamp(1_795_000_000 + seconds).expect("timestamp")
}

/// A provider's simulation, and the local pipeline's configuration pointing at it.
pub async fn simulation<S: Simulator>() -> (S, local_pipeline::DevEnv) {
    let mut env = dev_env();
    let (simulator, variables) = S::start(&env, &root()).await.expect("simulator");
    for (name, value) in variables {
        env.set_default(name, value);
    }
    (simulator, env)
}

/// A provider's simulator and its webhook on `h`'s table and queue, configured as the
/// local pipeline configures it.
pub async fn simulate<S: Simulator>(h: &Harness) -> (S, Webhook<S::Provider>) {
    let (simulator, env) = simulation::<S>().await;
    let provider = S::Provider::from_env(&env).unwrap_or_else(|e| panic!("{}: {e}", S::Provider::NAME));
    (simulator, Webhook::new(provider, h.store.clone(), h.queue.clone()))
}

pub async fn send<P: Provider>(webhook: &Webhook<P>, request: Inbound, t: i64) -> u16 {
    webhook.answer(&request, at(t)).await.status().as_u16()
}

/// The status and number of applied transitions that a sequence should leave.
fn fold<S: Simulator>(words: &[&str]) -> (Status, usize) {
    let mut current = None;
    let mut applied = 0;
    for word in words {
        let status = S::status_of(word);
        if decide(current, status) == Decision::Apply {
            current = Some(status);
            applied += 1;
        }
    }
    (current.expect("at least one word"), applied)
}

async fn full_sequence<S: Simulator>() {
    let h = Harness::new().await;
    let (s, webhook) = simulate::<S>(&h).await;
    let name = S::Provider::NAME;
    let reference = S::new_reference(unique_number());
    for (t, word) in S::SEQUENCE.iter().enumerate() {
        let t = t as i64;
        assert_eq!(send(&webhook, s.webhook(&reference, word, at(t)), t).await / 100, 2, "{name} {word}");
    }
    let record = h.store.get(name, &S::stored_reference(&reference)).await.expect("get").expect("item");
    let (status, applied) = fold::<S>(S::SEQUENCE);
    assert_eq!(record.status, status, "{name}");
    assert_eq!(record.history.len(), applied, "{name}");
    assert_eq!(record.provider_status, *S::SEQUENCE.last().expect("sequence"), "{name}");
    let events = h.drain_events().await;
    assert_eq!(events.len(), 1, "{name}: {events:?}");
    assert_eq!(events[0].id, event_id(name, &S::stored_reference(&reference), status));
    // The event shows the record as GET shows it (fields kept in the store only are not shown).
    let shown = |record: &shared::model::TransactionRecord| serde_json::to_value(record).expect("JSON");
    assert_eq!(shown(&events[0].data), shown(&record), "{name}");
}

async fn every_event_twice<S: Simulator>() {
    let h = Harness::new().await;
    let (s, webhook) = simulate::<S>(&h).await;
    let name = S::Provider::NAME;
    let reference = S::new_reference(unique_number());
    for (t, word) in S::SEQUENCE.iter().enumerate() {
        for repeat in 0..2 {
            let t = (t * 2 + repeat) as i64;
            assert_eq!(send(&webhook, s.webhook(&reference, word, at(t)), t).await / 100, 2, "{name} {word}");
        }
    }
    let record = h.store.get(name, &S::stored_reference(&reference)).await.expect("get").expect("item");
    let (status, applied) = fold::<S>(S::SEQUENCE);
    assert_eq!((record.status, record.history.len()), (status, applied), "{name}");
    assert_eq!(h.drain_events().await.len(), 1, "{name}");
    assert_eq!(h.item_count().await, 1, "{name}");
}

/// The final word first, then the rest backwards. For a provider that is asked for the
/// truth, that is the truth going back (a paid charge later reported active).
async fn out_of_order<S: Simulator>() {
    let h = Harness::new().await;
    let (s, webhook) = simulate::<S>(&h).await;
    let name = S::Provider::NAME;
    let reference = S::new_reference(unique_number());
    let reversed: Vec<&str> = S::SEQUENCE.iter().rev().copied().collect();
    for (t, word) in reversed.iter().enumerate() {
        let t = t as i64;
        assert_eq!(send(&webhook, s.webhook(&reference, word, at(t)), t).await / 100, 2, "{name} {word}");
    }
    let record = h.store.get(name, &S::stored_reference(&reference)).await.expect("get").expect("item");
    assert_eq!(record.status, S::status_of(reversed[0]), "{name}: the final status, sent first, stays");
    assert_eq!(record.history.len(), 1, "{name}");
    assert_eq!(h.drain_events().await.len(), 1, "{name}");
}

async fn conflicting_finals<S: Simulator>() {
    let h = Harness::new().await;
    let (s, webhook) = simulate::<S>(&h).await;
    let name = S::Provider::NAME;
    let reference = S::new_reference(unique_number());
    let (first, second) = S::CONFLICT;
    assert_eq!(send(&webhook, s.webhook(&reference, first, at(0)), 0).await / 100, 2, "{name}");
    assert_eq!(
        send(&webhook, s.webhook(&reference, second, at(1)), 1).await / 100,
        2,
        "{name}: a conflict is acknowledged"
    );
    // The provider repeats it: still one conflict, and its event with the same id.
    assert_eq!(send(&webhook, s.deliver(&reference, second, at(2)), 2).await / 100, 2, "{name}");
    let stored = S::stored_reference(&reference);
    let record = h.store.get(name, &stored).await.expect("get").expect("item");
    assert_eq!(record.status, S::status_of(first), "{name}");
    assert_eq!(record.history.len(), 1, "{name}");
    assert_eq!(record.conflicts.len(), 1, "{name}: the conflict is kept, once");
    assert_eq!(record.conflicts[0].status, S::status_of(second), "{name}");
    let events = h.drain_events().await;
    let ids: Vec<&str> = events.iter().map(|e| e.id.as_str()).collect();
    let conflict_id = shared::model::conflict_event_id(name, &stored, S::status_of(second));
    assert_eq!(
        ids,
        [event_id(name, &stored, S::status_of(first)).as_str(), &conflict_id],
        "{name}: SQS dedupes the repeat"
    );
    assert_eq!(events[1].kind.as_str(), "transaction.conflict", "{name}");
    assert_eq!(events[1].data.conflicts, record.conflicts, "{name}: the event carries the record");
}

async fn bad_inputs_write_nothing<S: Simulator>() {
    let h = Harness::new().await;
    let (s, webhook) = simulate::<S>(&h).await;
    let name = S::Provider::NAME;
    let reference = S::new_reference(unique_number());
    let final_word = S::SEQUENCE.last().expect("sequence");
    let mut oversized = s.webhook(&reference, final_word, at(0));
    oversized.body = format!("{{\"padding\":\"{}\"}}", "x".repeat(300 * 1024)).into_bytes();
    let mut wrong_type = s.webhook(&reference, final_word, at(0));
    wrong_type.headers.insert("content-type", http::HeaderValue::from_static("text/plain"));
    let (unknown, unknown_status) = s.unknown_status(&reference, at(0));
    let (unverified, unverified_status) = s.unverified(&reference, at(0));
    let body = |text: &str| s.with_body(text.as_bytes(), at(0));
    let cases = [
        ("unverified", unverified, unverified_status),
        ("malformed JSON", body("{\"a\":"), 400),
        ("empty body", body(""), 400),
        ("not JSON", body("status=completed"), 400),
        ("JSON of the wrong shape", body("[1, 2, 3]"), 400),
        ("missing fields", body("{}"), 400),
        ("wrong types", body(r#"{"payload": 7, "trackid": [], "txid": {}, "webhook_type": 1, "status": false}"#), 400),
        ("unknown status", unknown, unknown_status),
        ("oversized body", oversized, 413),
        ("wrong content type", wrong_type, 415),
    ];
    for (case, request, status) in cases {
        let response = webhook.answer(&request, at(0)).await;
        assert_eq!(response.status().as_u16(), status, "{name} {case}");
        if status >= 400 {
            let body: serde_json::Value = serde_json::from_slice(response.body().as_ref()).expect("JSON error");
            assert!(body["error"]["code"].is_string(), "{name} {case}");
        }
    }
    assert_eq!(h.item_count().await, 0, "{name}: bad input wrote an item");
    assert!(h.drain_events().await.is_empty(), "{name}: bad input queued an event");
}

/// A test that runs `$scenario` for every provider of the registry, one after another.
macro_rules! for_every_provider {
    ($($scenario:ident),* $(,)?) => {
        $(
            #[tokio::test]
            async fn $scenario() {
                struct Each(Vec<Pin<Box<dyn Future<Output = ()>>>>);
                impl EachSimulator for Each {
                    fn simulator<S: Simulator>(&mut self) {
                        self.0.push(Box::pin(super::$scenario::<S>()));
                    }
                }
                let mut each = Each(Vec::new());
                provider_catalog::for_each_simulator(&mut each);
                assert_eq!(each.0.len(), provider_catalog::all().len(), "every provider");
                for scenario in each.0 {
                    scenario.await;
                }
            }
        )*
    };
}

use crate::sync::{lost_final_settled_by_sync, sync_and_webhook_race};

mod every_provider {
    use super::*;
    for_every_provider!(
        full_sequence,
        every_event_twice,
        out_of_order,
        conflicting_finals,
        bad_inputs_write_nothing,
        lost_final_settled_by_sync,
        sync_and_webhook_race,
    );
}

// --- Many transactions, all providers, concurrently --------------------------------

type Delivery = Pin<Box<dyn Future<Output = (String, u16)> + Send>>;

/// What the concurrency test expects of one transaction.
struct Expected {
    provider: &'static str,
    reference: String,
    status: Status,
}

/// One provider's share of the concurrency test.
struct Plan {
    expected: Vec<Expected>,
    deliveries: Vec<Delivery>,
    distinct_events: usize,
}

/// Plans `count` transactions of one provider: each one's words shuffled (a fifth of
/// them never reach a final status), each word delivered one to three times.
async fn plan<S: Simulator>(h: &Harness, count: usize, mut rng: Rng) -> Plan {
    let (simulator, webhook) = simulate::<S>(h).await;
    let (simulator, webhook) = (Arc::new(simulator), Arc::new(webhook));
    let mut plan = Plan { expected: Vec::new(), deliveries: Vec::new(), distinct_events: 0 };
    for i in 0..count {
        let reference = S::new_reference(unique_number());
        let mut words: Vec<&'static str> = S::SEQUENCE.to_vec();
        if i % 5 == 0 {
            words.retain(|w| !S::status_of(w).is_final());
        }
        let truth = *words.iter().max_by_key(|w| S::status_of(w).rank()).expect("words");
        simulator.settle(&reference, truth);
        rng.shuffle(&mut words);
        plan.distinct_events += words.len();
        for word in words {
            for _ in 0..=rng.below(3) {
                let label = format!("{} {reference} {word}", S::Provider::NAME);
                let (simulator, webhook, reference) = (Arc::clone(&simulator), Arc::clone(&webhook), reference.clone());
                plan.deliveries.push(Box::pin(async move {
                    let mut tries = 0;
                    loop {
                        let now = OffsetDateTime::now_utc();
                        let request = simulator.deliver(&reference, word, now);
                        let status = webhook.answer(&request, now).await.status().as_u16();
                        // A hint's 503 is the queue's redelivery (a txid looked up within its
                        // interval is asked about again later): delivered again, as SQS would.
                        tries += 1;
                        if status != 503 || S::Provider::HINT.is_none() || tries == 10 {
                            break (label, status);
                        }
                        tokio::time::sleep(std::time::Duration::from_millis(1_100)).await;
                    }
                }));
            }
        }
        plan.expected.push(Expected {
            provider: S::Provider::NAME,
            reference: S::stored_reference(&reference),
            status: S::status_of(truth),
        });
    }
    plan
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn five_hundred_transactions_shuffled_duplicated_and_concurrent() {
    use futures_util::StreamExt;
    const PER_PROVIDER: usize = 100;
    const CONCURRENCY: usize = 16;
    let seed = std::env::var("CONCURRENCY_SEED").ok().and_then(|s| s.parse().ok()).unwrap_or(0x5eed_1234_u64);
    let mut rng = Rng::new(seed);
    let h = Harness::new().await;

    type Planned<'a> = Pin<Box<dyn Future<Output = Plan> + 'a>>;
    struct Each<'a> {
        h: &'a Harness,
        rng: Rng,
        plans: Vec<Planned<'a>>,
    }
    impl<'a> EachSimulator for Each<'a> {
        fn simulator<S: Simulator>(&mut self) {
            let rng = Rng::new(self.rng.next_u64());
            self.plans.push(Box::pin(plan::<S>(self.h, PER_PROVIDER, rng)));
        }
    }
    let mut each = Each { h: &h, rng: Rng::new(rng.next_u64()), plans: Vec::new() };
    provider_catalog::for_each_simulator(&mut each);
    let (mut expected, mut deliveries, mut distinct) = (Vec::new(), Vec::new(), 0);
    for planned in each.plans {
        let plan = planned.await;
        expected.extend(plan.expected);
        deliveries.extend(plan.deliveries);
        distinct += plan.distinct_events;
    }
    rng.shuffle(&mut deliveries);
    let total = deliveries.len();

    let started = std::time::Instant::now();
    let answers: Vec<(String, u16)> =
        futures_util::stream::iter(deliveries).buffer_unordered(CONCURRENCY).collect().await;
    let elapsed = started.elapsed();
    for (label, status) in &answers {
        assert!(*status / 100 == 2, "{label} answered {status} (seed {seed})");
    }

    let mut finals = std::collections::BTreeSet::new();
    for e in &expected {
        let record = h.store.get(e.provider, &e.reference).await.expect("get").expect("item");
        assert_eq!(record.status, e.status, "{} {} (seed {seed})", e.provider, e.reference);
        if e.status.is_final() {
            finals.insert(event_id(e.provider, &e.reference, e.status));
        }
    }
    let events = h.drain_events().await;
    let ids: std::collections::BTreeSet<String> = events.iter().map(|e| e.id.clone()).collect();
    assert_eq!(events.len(), ids.len(), "a terminal event was queued twice (seed {seed})");
    assert_eq!(ids, finals, "exactly one terminal event per final transaction, none for the others (seed {seed})");
    println!(
        "reliability: {} transactions, {total} deliveries ({} duplicates) at concurrency {CONCURRENCY} in {:.1} s; {} final, {} terminal events, 0 lost, 0 duplicated",
        expected.len(),
        total - distinct,
        elapsed.as_secs_f64(),
        finals.len(),
        events.len()
    );
}
