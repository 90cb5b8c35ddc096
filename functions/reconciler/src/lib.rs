//! The reconciler: closes the gap where a final outcome was stored but its terminal event
//! never reached the queue (our 5xx that the provider never retried). On a schedule, it
//! finds final transactions still pending notification through the sparse index (no
//! scan) and enqueues their terminal event again, with the same deterministic id.
//!
//! A transaction is re-enqueued in the run right after `grace` has passed since it
//! became final, and then once per `repeat` while it stays pending: a merchant outage
//! does not add a copy per transaction every run.

use std::time::Duration;

use shared::{ConfigError, Env, EventQueue, TerminalEvent, TransactionStore};
use time::OffsetDateTime;

/// Pending longer than this after becoming final counts as stuck.
pub const GRACE: Duration = Duration::from_secs(5 * 60);
/// How often the reconciler runs (the template's schedule).
pub const INTERVAL: Duration = Duration::from_secs(5 * 60);
/// A transaction still pending is re-enqueued again after this long.
pub const REPEAT: Duration = Duration::from_secs(2 * 60 * 60);

#[derive(Debug, thiserror::Error)]
pub enum ReconcileError {
    #[error("transaction store failed")]
    Store(#[from] shared::store::StoreError),
    #[error("event queue failed")]
    Queue(#[from] shared::queue::QueueError),
}

#[derive(Debug, Clone)]
pub struct Reconciler {
    store: TransactionStore,
    queue: EventQueue,
    grace: Duration,
    interval: Duration,
    repeat: Duration,
}

impl Reconciler {
    pub fn new(store: TransactionStore, queue: EventQueue) -> Self {
        Reconciler { store, queue, grace: GRACE, interval: INTERVAL, repeat: REPEAT }
    }

    /// Other timings (the local pipeline runs on a short timer).
    pub fn with_timing(mut self, grace: Duration, interval: Duration, repeat: Duration) -> Self {
        self.grace = grace;
        self.interval = interval.max(Duration::from_secs(1));
        self.repeat = repeat.max(self.interval);
        self
    }

    /// Reads `TABLE_NAME` and `QUEUE_URL`.
    pub async fn from_env(env: &impl Env) -> Result<Self, ConfigError> {
        let storage = shared::config::StorageConfig::from_env(env)?;
        let aws = shared::AwsClients::from_env().await;
        Ok(Reconciler::new(
            TransactionStore::new(aws.dynamodb, storage.table_name),
            EventQueue::new(aws.sqs, storage.queue_url),
        ))
    }

    /// Whether a transaction final for `age` is due in a run: in the first interval after
    /// the grace period, and in the first interval of every `repeat` after that.
    pub fn due(&self, age: Duration) -> bool {
        match age.checked_sub(self.grace) {
            None => false,
            Some(overdue) => (overdue.as_secs() % self.repeat.as_secs()) < self.interval.as_secs(),
        }
    }

    /// One run: re-enqueues the due transactions; returns how many.
    pub async fn run(&self, now: OffsetDateTime) -> Result<usize, ReconcileError> {
        let stuck = self.store.pending_notifications(now - self.grace).await?;
        let mut sent = 0;
        for record in &stuck {
            let age = record.final_at.map(|at| (now - at).unsigned_abs()).unwrap_or_default();
            if !self.due(age) {
                continue;
            }
            if let Some(event) = TerminalEvent::for_record(record) {
                self.queue.send(&event).await?;
                tracing::warn!(provider = %record.provider, reference = %record.reference, event_id = %event.id, age_seconds = age.as_secs(), "terminal event still pending: enqueued again");
                sent += 1;
            }
        }
        tracing::info!(pending = stuck.len(), sent, "reconciliation done");
        Ok(sent)
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
