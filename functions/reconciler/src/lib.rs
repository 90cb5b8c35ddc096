//! The reconciler: closes the gap where a final outcome was stored but its terminal event
//! never reached the queue (our 5xx that the provider never retried). On a schedule, it
//! finds final transactions still pending notification through the sparse index (no
//! scan) and enqueues their terminal event again, with the same deterministic id, and
//! with it what else the record shows (an amount mismatch, its refunds), each under its
//! own id: the status sync marks a record so when its batch could not send those.
//!
//! A transaction is re-enqueued in the run right after `grace` has passed since it
//! became final, and then once per `repeat` while it stays pending: a merchant outage
//! does not add a copy per transaction every run. The index is read a page at a time and
//! events are sent ten to a batch; a send that fails is marked on the record and tried
//! again on the next run, and never stops the run.

use std::time::Duration;

use shared::model::{EventTypes, MerchantEvent, TransactionRecord};
use shared::runtime::config::{ConfigError, Env};
use shared::storage::{EventQueue, TransactionStore};
use time::OffsetDateTime;

/// Pending longer than this after becoming final counts as stuck.
pub const GRACE: Duration = Duration::from_secs(5 * 60);
/// How often the reconciler runs (the template's schedule).
pub const INTERVAL: Duration = Duration::from_secs(5 * 60);
/// Of the transactions whose event is in the queue's hands (its delivery failed: SQS
/// retries it, then keeps it in the dead-letter queue), a run reads at most this many per
/// shard, oldest first: a safety net for an event that left the dead-letter queue
/// unreplayed, bounded whatever the backlog of a merchant's outage (128 shards: at most
/// 6,400 items a run).
pub const QUEUED_READ_PER_SHARD: usize = 50;
/// Events per `SendMessageBatch` (SQS takes at most 10).
const MAX_BATCH: usize = 10;
/// A transaction still pending is re-enqueued again after this long.
pub const REPEAT: Duration = Duration::from_secs(2 * 60 * 60);

/// The variables the function reads.
pub const SETTINGS: [shared::runtime::config::Setting; 3] = [
    shared::runtime::config::TABLE_NAME,
    shared::runtime::config::QUEUE_URL,
    shared::runtime::config::NOTIFY_EVENT_TYPES,
];

#[derive(Debug, thiserror::Error)]
pub enum ReconcileError {
    #[error("transaction store failed")]
    Store(#[from] shared::storage::StoreError),
    #[error("event queue failed")]
    Queue(#[from] shared::storage::QueueError),
}

/// What one run has done so far.
#[derive(Debug, Default)]
struct Run {
    pending: usize,
    sent: usize,
    failed: usize,
}

#[derive(Debug, Clone)]
pub struct Reconciler {
    store: TransactionStore,
    queue: EventQueue,
    grace: Duration,
    interval: Duration,
    repeat: Duration,
    queued_read_per_shard: usize,
    events: EventTypes,
}

impl Reconciler {
    pub fn new(store: TransactionStore, queue: EventQueue) -> Self {
        Reconciler {
            store,
            queue,
            grace: GRACE,
            interval: INTERVAL,
            repeat: REPEAT,
            queued_read_per_shard: QUEUED_READ_PER_SHARD,
            events: EventTypes::default(),
        }
    }

    /// The event types the merchant receives (`NOTIFY_EVENT_TYPES`).
    pub fn with_events(mut self, events: EventTypes) -> Self {
        self.events = events;
        self
    }

    /// Other timings (the local pipeline runs on a short timer).
    pub fn with_timing(mut self, grace: Duration, interval: Duration, repeat: Duration) -> Self {
        self.grace = grace;
        self.interval = interval.max(Duration::from_secs(1));
        self.repeat = repeat.max(self.interval);
        self
    }

    /// Another bound on the transactions in the queue's hands read per shard (tests).
    pub fn with_queued_read_per_shard(mut self, items: usize) -> Self {
        self.queued_read_per_shard = items;
        self
    }

    /// Reads [`SETTINGS`].
    pub async fn from_env(env: &impl Env) -> Result<Self, ConfigError> {
        let storage = shared::runtime::config::StorageConfig::from_env(env)?;
        let events = shared::runtime::config::event_types(env)?;
        let aws = shared::runtime::AwsClients::from_env().await;
        let reconciler = Reconciler::new(
            TransactionStore::new(aws.dynamodb, storage.table_name),
            EventQueue::new(aws.sqs, storage.queue_url),
        );
        Ok(reconciler.with_events(events))
    }

    /// Whether a transaction final for `age` is due in a run: in the first interval after
    /// the grace period, and in the first interval of every `repeat` after that.
    pub fn due(&self, age: Duration) -> bool {
        match age.checked_sub(self.grace) {
            None => false,
            Some(overdue) => (overdue.as_secs() % self.repeat.as_secs()) < self.interval.as_secs(),
        }
    }

    /// One run: re-enqueues the due transactions, a page of the index at a time (bounded
    /// memory), ten to a `SendMessageBatch`; returns how many were sent. A send that fails
    /// does not stop the run: the transaction is marked and sent again on the next run.
    pub async fn run(&self, now: OffsetDateTime) -> Result<usize, ReconcileError> {
        let mut pages = self.store.pending_pages(now - self.grace, self.queued_read_per_shard)?;
        let mut run = Run::default();
        // Due transactions wait here until a batch is full: never more than a page and a batch.
        let mut due: Vec<TransactionRecord> = Vec::new();
        while let Some(page) = pages.next().await? {
            run.pending += page.len();
            due.extend(page.into_iter().filter(|record| self.due_record(record, now)));
            while due.len() >= MAX_BATCH {
                let batch: Vec<TransactionRecord> = due.drain(..MAX_BATCH).collect();
                self.send(&batch, &mut run).await?;
            }
        }
        self.send(&due, &mut run).await?;
        tracing::info!(pending = run.pending, sent = run.sent, failed = run.failed, "reconciliation done");
        Ok(run.sent)
    }

    /// `records`' events ([`MerchantEvent::for_reconciler`]) in `SendMessageBatch` calls
    /// (the queue splits them by size); a record any of whose events failed is marked.
    async fn send(&self, records: &[TransactionRecord], run: &mut Run) -> Result<(), ReconcileError> {
        let records: Vec<&TransactionRecord> = records.iter().filter(|r| r.status.is_final()).collect();
        let mut owners = Vec::new();
        let mut events: Vec<MerchantEvent> = Vec::new();
        for (i, record) in records.iter().enumerate() {
            for event in MerchantEvent::for_reconciler(record, self.events) {
                owners.push(i);
                events.push(event);
            }
        }
        if events.is_empty() {
            return Ok(());
        }
        let mut results: Vec<Result<(), shared::storage::QueueError>> = records.iter().map(|_| Ok(())).collect();
        for (owner, result) in owners.into_iter().zip(self.queue.send_batch(&events).await) {
            // A record's first failure is its result.
            if let (Err(error), Some(slot @ Ok(()))) = (result, results.get_mut(owner)) {
                *slot = Err(error);
            }
        }
        for (record, result) in records.into_iter().zip(results) {
            match result {
                Ok(()) => {
                    run.sent += 1;
                    tracing::warn!(provider = %record.provider, reference = %record.reference, "terminal event still pending: enqueued again");
                    if record.requeue_failed {
                        self.store.set_requeue_failed(record, false).await?;
                    }
                }
                Err(error) => {
                    run.failed += 1;
                    tracing::error!(provider = %record.provider, reference = %record.reference, error = %error, "terminal event could not be enqueued again: tried again next run");
                    if !record.requeue_failed {
                        self.store.set_requeue_failed(record, true).await?;
                    }
                }
            }
        }
        Ok(())
    }

    /// Whether `record` is sent in this run: its window is open, or its last send failed.
    fn due_record(&self, record: &TransactionRecord, now: OffsetDateTime) -> bool {
        let age = record.final_at.map(|at| (now - at).unsigned_abs()).unwrap_or_default();
        record.requeue_failed || self.due(age)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn reconciler() -> Reconciler {
        let dynamo = aws_sdk_dynamodb::Config::builder()
            .behavior_version(aws_sdk_dynamodb::config::BehaviorVersion::latest())
            .build();
        let sqs =
            aws_sdk_sqs::Config::builder().behavior_version(aws_sdk_sqs::config::BehaviorVersion::latest()).build();
        Reconciler::new(
            TransactionStore::new(aws_sdk_dynamodb::Client::from_conf(dynamo), "t"),
            EventQueue::new(aws_sdk_sqs::Client::from_conf(sqs), "q"),
        )
    }

    #[test]
    fn due_once_after_the_grace_period_then_once_per_repeat() {
        let r = reconciler();
        let minutes = |m: u64| Duration::from_secs(m * 60);
        let due: Vec<u64> = (0..=250).filter(|m| r.due(minutes(*m))).collect();
        // Runs every 5 minutes see each minute value at most once per 5-minute window.
        let windows: Vec<u64> =
            due.iter().map(|m| m / 5).collect::<std::collections::BTreeSet<_>>().into_iter().collect();
        assert_eq!(windows, [1, 25, 49], "due at 5-9 min, 125-129 min, 245-249 min: {due:?}");
        assert!(!r.due(minutes(4)));
    }
}
