//! What keeps the design within AWS's limits, against DynamoDB Local: the low-cardinality
//! index keys spread over their shards (DynamoDB Local has no partition limits, so the
//! spread is what is checked here; `scripts/capacity` turns it into partition load), and
//! no item grows with the number of delivery attempts.

use std::collections::{BTreeSet, HashMap};
use std::time::Duration;

use aws_sdk_dynamodb::types::AttributeValue;
use futures_util::StreamExt;
use shared::model::shard::{FEED_SHARDS, PENDING_SHARDS, SYNC_SHARDS};
use shared::model::MerchantEvent;
use shared::pipeline::Webhook;
use shared::runtime::config::Secret;
use shared::storage::{Attempt, AttemptKind};
use time::OffsetDateTime;

use crate::support::{unique_rrn, Harness};

const KEY: &str = "scale-test-azqr-key";

/// Every item of the table (a fresh one per test: a scan is fine here).
async fn items(h: &Harness) -> Vec<HashMap<String, AttributeValue>> {
    let pages = h.dynamodb.scan().table_name(&h.resources.table_name).into_paginator().items().send();
    pages.collect::<Vec<_>>().await.into_iter().map(|item| item.expect("scan")).collect()
}

fn text<'a>(item: &'a HashMap<String, AttributeValue>, name: &str) -> Option<&'a str> {
    item.get(name).and_then(|v| v.as_s().ok()).map(String::as_str)
}

/// An item's size as DynamoDB counts it, near enough: names and values, as JSON text.
fn size(item: &HashMap<String, AttributeValue>) -> usize {
    item.iter().map(|(name, value)| name.len() + format!("{value:?}").len()).sum()
}

/// 300 payments completed through the real webhook, each delivered to the event log: the
/// pending markers and the event feed spread over (nearly) all of their shards, and each
/// shard value is one the readers query.
#[tokio::test]
async fn a_few_hundred_transactions_spread_over_every_sharded_index() {
    let h = Harness::new().await;
    let webhook = Webhook::new(azqr_webhook::Azqr::new(Secret::new(KEY)), h.store.clone(), h.queue.clone());
    let log = h.store.event_log(Duration::from_secs(86_400));
    let now = OffsetDateTime::now_utc();
    futures_util::stream::iter(0..300)
        .for_each_concurrent(16, |_| {
            let (webhook, log, store) = (&webhook, &log, &h.store);
            async move {
                let rrn = unique_rrn();
                let request = azqr_webhook::simulator::put(&rrn, Some(KEY), r#"{"status":"completed"}"#);
                assert_eq!(webhook.answer(&request, now).await.status().as_u16(), 204);
                let record = store.get("azqr", &rrn).await.expect("get").expect("item");
                let event = MerchantEvent::for_record(&record).expect("final");
                let body = serde_json::to_string(&event).expect("JSON");
                let attempt = Attempt {
                    at: now,
                    status: Some(500),
                    error: None,
                    duration_ms: 1,
                    response: None,
                    kind: AttemptKind::Automatic,
                };
                log.record_attempt(&event, &body, &attempt, false).await.expect("logged");
            }
        })
        .await;
    let items = items(&h).await;
    let pending: BTreeSet<&str> = items.iter().filter_map(|i| text(i, "notification_pending")).collect();
    let feed: BTreeSet<&str> = items.iter().filter_map(|i| text(i, "feed")).collect();
    let pending_values = shared::model::NotificationPending::index_values();
    let feed_values = shared::storage::feed_values();
    assert!(pending.iter().all(|v| pending_values.iter().any(|known| known == v)), "{pending:?}");
    assert!(feed.iter().all(|v| feed_values.iter().any(|known| known == v)), "{feed:?}");
    println!(
        "300 transactions: {} of {PENDING_SHARDS} pending shards, {} of {FEED_SHARDS} feed shards",
        pending.len(),
        feed.len()
    );
    // 300 keys over n shards fill about n(1 - e^(-300/n)) of them: 115 of 128.
    let filled = |shards: u16| f64::from(shards) * (1.0 - (-300.0 / f64::from(shards)).exp()) * 0.9;
    assert!(pending.len() as f64 >= filled(PENDING_SHARDS), "pending markers on {} shards", pending.len());
    assert!(feed.len() as f64 >= filled(FEED_SHARDS), "events on {} feed shards", feed.len());
    assert_eq!(h.store.pending_notifications(now + time::Duration::seconds(1)).await.expect("read").len(), 300);
}

/// 200 payments still in progress: each provider's sync schedule spreads over (nearly)
/// all of its shards, and the status sync finds every one of them when due.
#[tokio::test]
async fn in_progress_transactions_spread_over_the_sync_shards() {
    let h = Harness::new().await;
    let webhook = Webhook::new(azqr_webhook::Azqr::new(Secret::new(KEY)), h.store.clone(), h.queue.clone());
    let now = OffsetDateTime::now_utc();
    futures_util::stream::iter(0..200)
        .for_each_concurrent(16, |_| {
            let webhook = &webhook;
            async move {
                let request = azqr_webhook::simulator::put(&unique_rrn(), Some(KEY), r#"{"status":"paid"}"#);
                assert_eq!(webhook.answer(&request, now).await.status().as_u16(), 204);
            }
        })
        .await;
    let items = items(&h).await;
    let shards: BTreeSet<&str> = items.iter().filter_map(|i| text(i, shared::model::SYNC_SHARD)).collect();
    let known = shared::model::shard::all("azqr", SYNC_SHARDS);
    assert!(shards.iter().all(|v| known.iter().any(|k| k == v)), "{shards:?}");
    println!("200 transactions in progress: {} of {SYNC_SHARDS} sync shards", shards.len());
    // 200 keys over 64 shards fill about 61 of them.
    let filled = f64::from(SYNC_SHARDS) * (1.0 - (-200.0 / f64::from(SYNC_SHARDS)).exp()) * 0.9;
    assert!(shards.len() as f64 >= filled, "on {} shards", shards.len());
    let due = h.store.due_for_sync("azqr", now + time::Duration::minutes(10), 500).await.expect("due");
    assert_eq!(due.len(), 200, "every one found, across the shards");
    assert!(due.windows(2).all(|w| w[0].next_sync_at <= w[1].next_sync_at), "oldest first");
}

/// An event attempted 1,500 times (each answer's first 256 bytes kept), then delivered:
/// no item passes 64 KB, the event is marked delivered, the count is exact and the
/// latest 100 attempts are listed.
#[tokio::test]
async fn an_event_with_thousands_of_attempts_stays_bounded_and_is_marked_delivered() {
    let h = Harness::new().await;
    let log = h.store.event_log(Duration::from_secs(86_400));
    let now = OffsetDateTime::now_utc();
    let mut record: shared::model::TransactionRecord = serde_json::from_value(serde_json::json!({
        "provider": "azqr", "reference": unique_rrn(), "status": "completed", "provider_status": "completed",
        "first_seen_at": "2026-11-30T00:00:00Z", "updated_at": "2026-11-30T00:00:00Z"
    }))
    .expect("record");
    record.final_at = Some(now);
    let event = MerchantEvent::for_record(&record).expect("final");
    let body = serde_json::to_string(&event).expect("JSON");
    let failed = |n: i64| Attempt {
        at: now + time::Duration::seconds(n),
        status: Some(503),
        error: None,
        duration_ms: 10_000,
        response: Some("é".repeat(128)),
        kind: AttemptKind::Automatic,
    };
    futures_util::stream::iter(0..1_500)
        .for_each_concurrent(16, |n| {
            let (log, event, body) = (&log, &event, &body);
            async move { log.record_attempt(event, body, &failed(n), false).await.expect("attempt") }
        })
        .await;
    let delivered = Attempt { status: Some(204), response: None, ..failed(2_000) };
    log.record_attempt(&event, &body, &delivered, true).await.expect("delivered");

    let stored = log.get(&event.id).await.expect("read").expect("stored");
    assert_eq!(stored.attempt_count, 1_501);
    assert_eq!(stored.delivered_at, Some(delivered.at), "marked delivered");
    assert_eq!(stored.attempts.len(), 100, "the latest 100");
    assert_eq!(stored.attempts.last(), Some(&delivered));
    let items = items(&h).await;
    assert_eq!(items.len(), 1 + 1 + 1_501, "the event, its attempt counter and one item per attempt");
    let largest = items.iter().map(size).max().unwrap_or(0);
    println!("event log after 1,501 attempts: largest item about {largest} bytes");
    assert!(largest < 64 * 1024, "an item of {largest} bytes");
}
