//! How many AWS requests each webhook costs, counted on the wire by an SDK interceptor
//! (every HTTP request, retries included) against DynamoDB Local and the SQS server:
//! one DynamoDB request per webhook; one SQS send per final transition, and again only
//! on the retry path (a final record still pending notification).

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};

use crate::support::{unique_rrn, Harness};
use aws_sdk_dynamodb::config::interceptors::BeforeTransmitInterceptorContextRef;
use aws_sdk_dynamodb::config::{ConfigBag, Intercept, RuntimeComponents};
use shared::model::{NotificationOutcome, Status};
use shared::pipeline::Webhook;
use shared::runtime::config::Secret;
use shared::storage::{EventQueue, TransactionStore};
use time::OffsetDateTime;

/// Counts requests by operation (`x-amz-target`, e.g. `DynamoDB_20120810.UpdateItem`).
#[derive(Debug, Clone, Default)]
pub(crate) struct Counter(Arc<Mutex<BTreeMap<String, usize>>>);

impl Intercept for Counter {
    fn name(&self) -> &'static str {
        "request counter"
    }
    fn read_before_transmit(
        &self,
        context: &BeforeTransmitInterceptorContextRef<'_>,
        _: &RuntimeComponents,
        _: &mut ConfigBag,
    ) -> Result<(), Box<dyn std::error::Error + Send + Sync>> {
        let target = context.request().headers().get("x-amz-target").unwrap_or("unknown").to_owned();
        *self.0.lock().unwrap_or_else(|p| p.into_inner()).entry(target).or_default() += 1;
        Ok(())
    }
}

impl Counter {
    /// How many requests of `target` (e.g. `secretsmanager.GetSecretValue`) since the
    /// last call; the other counts are kept.
    pub(crate) fn take_target(&self, target: &str) -> usize {
        self.0.lock().unwrap_or_else(|p| p.into_inner()).remove(target).unwrap_or_default()
    }

    /// The counts since the last call, as (DynamoDB requests, SQS requests).
    fn take(&self) -> (usize, usize) {
        let counts = std::mem::take(&mut *self.0.lock().unwrap_or_else(|p| p.into_inner()));
        let sum = |prefix: &str| counts.iter().filter(|(k, _)| k.starts_with(prefix)).map(|(_, v)| v).sum();
        (sum("DynamoDB_20120810."), sum("AmazonSQS."))
    }
}

const KEY: &str = "request-count-azqr-key";

/// `h`'s table and queue, through clients whose every request `counter` counts.
fn counted(h: &Harness, counter: &Counter) -> (TransactionStore, EventQueue) {
    let endpoint = |name: &str| std::env::var(name).expect("scripts/test exports the emulator endpoints");
    let dynamodb_config = h
        .dynamodb
        .config()
        .to_builder()
        .endpoint_url(endpoint("DYNAMODB_ENDPOINT"))
        .interceptor(counter.clone())
        .build();
    let sqs_config =
        h.sqs.config().to_builder().endpoint_url(endpoint("SQS_ENDPOINT")).interceptor(counter.clone()).build();
    let store = TransactionStore::new(aws_sdk_dynamodb::Client::from_conf(dynamodb_config), &h.resources.table_name);
    (store, EventQueue::new(aws_sdk_sqs::Client::from_conf(sqs_config), &h.resources.queue_url))
}

#[tokio::test]
async fn one_dynamodb_request_per_webhook_and_one_sqs_send_per_final_transition() {
    let h = Harness::new().await;
    let counter = Counter::default();
    let (store, queue) = counted(&h, &counter);
    let webhook = Webhook::new(azqr_webhook::Azqr::new(Secret::new(KEY)), store, queue);
    let rrn = unique_rrn();
    let send = |status: &'static str| {
        let request = azqr_webhook::simulator::put(&rrn, Some(KEY), &format!(r#"{{"status":"{status}"}}"#));
        let webhook = &webhook;
        async move { webhook.answer(&request, OffsetDateTime::now_utc()).await.status().as_u16() }
    };

    let mut table = Vec::new();
    let mut case = |name: &'static str, counts: (usize, usize)| table.push((name, counts));
    // A request that fails verification costs no AWS call at all.
    let forged = azqr_webhook::simulator::put(&rrn, Some("not-the-key"), r#"{"status":"completed"}"#);
    assert_eq!(webhook.answer(&forged, OffsetDateTime::now_utc()).await.status().as_u16(), 401);
    case("fails verification", counter.take());
    assert_eq!(send("read").await, 204);
    case("first status (non-final)", counter.take());
    assert_eq!(send("paid").await, 204);
    case("higher status (non-final)", counter.take());
    assert_eq!(send("paid").await, 204);
    case("duplicate (non-final)", counter.take());
    assert_eq!(send("read").await, 204);
    case("stale (non-final)", counter.take());
    assert_eq!(send("completed").await, 204);
    case("final transition", counter.take());
    assert_eq!(send("completed").await, 204);
    case("duplicate final, still pending (retry path)", counter.take());
    let delivered = h.store.mark_notification(
        "azqr",
        &rrn,
        Status::Completed,
        NotificationOutcome::Delivered,
        OffsetDateTime::now_utc(),
    );
    assert!(delivered.await.expect("mark"));
    assert_eq!(send("completed").await, 204);
    case("duplicate final, notified", counter.take());
    assert_eq!(send("paid").await, 204);
    case("stale after final, notified", counter.take());
    assert_eq!(send("incompleted").await, 204);
    case("conflicting final, notified", counter.take());
    assert_eq!(send("incompleted").await, 204);
    case("the same conflict again", counter.take());

    for (name, counts) in &table {
        println!("requests: {name:48} DynamoDB {} SQS {}", counts.0, counts.1);
    }
    let expected = [
        ("fails verification", (0, 0)),
        ("first status (non-final)", (1, 0)),
        ("higher status (non-final)", (1, 0)),
        ("duplicate (non-final)", (1, 0)),
        ("stale (non-final)", (1, 0)),
        ("final transition", (1, 1)),
        ("duplicate final, still pending (retry path)", (1, 1)),
        ("duplicate final, notified", (1, 0)),
        ("stale after final, notified", (1, 0)),
        // The write that fails its condition, then the conflict kept on the record (and
        // listed among what needs a human, in that write), and the conflict event.
        ("conflicting final, notified", (2, 1)),
        // Kept already: the event again, with the same id (an earlier send may be lost).
        ("the same conflict again", (2, 1)),
    ];
    assert_eq!(table, expected);
}

/// What a status-sync run costs in AWS requests: per provider per shard group, the
/// group's lease taken (UpdateItem) and given back (DeleteItem), one Query per sync shard
/// (and, with group 0, one of the index kept before the sharding), and one BatchGetItem
/// per 100 due transactions; then
/// per due transaction one UpdateItem (the answer applied, or the next sync scheduled)
/// and one SQS send when the answer is final. Counted on the wire as above.
#[tokio::test]
async fn a_sync_run_costs_one_query_per_provider_and_one_write_per_transaction() {
    use azqr_webhook::simulator::AzqrSimulator;
    use provider_testkit::Simulator;
    use shared::pipeline::Provider;
    let h = Harness::new().await;
    let counter = Counter::default();
    let (store, queue) = counted(&h, &counter);
    let write_path = shared::pipeline::WritePath::new(store, queue, Default::default());
    let (azqr, env) = crate::providers::simulation::<AzqrSimulator>().await;
    let webhook = Webhook::with_write_path(azqr_webhook::Azqr::from_env(&env).expect("azqr"), write_path.clone());
    let group_of = |rrn: &&String| {
        let key = shared::model::transaction_key("azqr", rrn);
        usize::from(shared::model::shard::shard(&key, shared::model::shard::SYNC_SHARDS)) / status_sync::SHARDS_AT_ONCE
    };
    // Two settled in one shard group: their events go in one SendMessageBatch.
    let settled = unique_rrn();
    let settled_too =
        std::iter::repeat_with(unique_rrn).find(|rrn| group_of(&rrn) == group_of(&&settled)).expect("rrn");
    let unchanged = unique_rrn();
    for rrn in [&settled, &settled_too, &unchanged] {
        let request = azqr.webhook(rrn, "paid", crate::providers::at(0));
        assert_eq!(webhook.answer(&request, crate::providers::at(0)).await.status().as_u16(), 204);
    }
    azqr.settle(&settled, "completed");
    azqr.settle(&settled_too, "completed");
    azqr.settle(&unchanged, "paid"); // inprogress: processing, as stored
    let providers = vec![status_sync::SyncedProvider::from_env::<azqr_webhook::Azqr>(&env).expect("sync")];
    let sync = status_sync::StatusSync::new(write_path, providers, 50);
    counter.take();

    let run = sync.run(crate::providers::at(301)).await;
    let counts = counter.take();
    assert_eq!((run[0].applied, run[0].rescheduled), (2, 1), "{run:?}");
    println!("requests: sync run, 1 provider, 3 due (2 settled, 1 unchanged): DynamoDB {} SQS {}", counts.0, counts.1);
    let queries = usize::from(shared::model::shard::SYNC_SHARDS) + 1;
    let leases = 2 * status_sync::GROUPS;
    // One BatchGetItem per shard group that holds a due transaction.
    let groups: std::collections::BTreeSet<usize> = [&settled, &settled_too, &unchanged].iter().map(group_of).collect();
    assert_eq!(
        counts,
        (leases + queries + groups.len() + 3, 1),
        "each group's lease taken and given back, the queries, a BatchGetItem per group, 3 UpdateItem; one SendMessageBatch for both settled"
    );
    let run = sync.run(crate::providers::at(302)).await;
    assert_eq!((run[0].due, counter.take()), (0, (leases + queries, 0)), "nothing due: the leases and the queries");
    // One scheduled invocation takes one group: its lease and its shards' queries.
    let run = sync.run_group(crate::providers::at(303), Some(1)).await;
    let group = status_sync::SHARDS_AT_ONCE;
    assert_eq!((run[0].due, counter.take()), (0, (2 + group, 0)), "one group: its lease and its queries");
}
