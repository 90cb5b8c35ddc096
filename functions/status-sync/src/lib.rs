//! The status sync: no transaction left in limbo. Each minute, once per shard group (the
//! stack schedules one invocation per group), for each provider, it takes the non-final
//! transactions whose next sync is due from the sparse `SyncShards` index (no scan), asks
//! the provider's status API, and applies the answer through the webhooks' own write path
//! ([`WritePath`]), so a sync and a webhook can race without regressing a transaction or
//! duplicating its event; the events it causes go out ten to a batch.
//!
//! Within a provider's run of a group, up to `STATUS_SYNC_CONCURRENCY` calls are under way
//! at once, under the group's lease, so that overlapping runs never ask about the same
//! transaction. An answer that changes nothing moves the transaction one rung up the
//! backoff (or to just after its known expiry); so does a failure that belongs to that
//! transaction alone (a 4xx for its reference, an answer that cannot be read), which never
//! stops the run. One unchanged for 7 days is given up (left non-final, an alarm raised).
//! A provider that cannot be asked (down, slow, 5xx) ends that provider's run: nothing is
//! written, the same transactions are due again next run, and the other providers,
//! synced concurrently, are not held up. Each run reports how far behind it is
//! (`StatusSyncLagSeconds`).

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use futures_util::StreamExt;

use serde::Serialize;
use shared::model::{Decision, MerchantEvent, Observation, SyncStep, TransactionRecord};
use shared::pipeline::{Provider, StatusSource, SyncError, SyncScope, WritePath};
use shared::runtime::config::{ConfigError, Env, Setting};
use shared::runtime::{FromSecret, SecretsClient};
use time::OffsetDateTime;

/// The metric of a transaction the status sync gave up on, left non-final.
const SYNC_GAVE_UP: &str = "StatusSyncGaveUp";
/// The metric of the age of the oldest transaction due for a status sync, per provider
/// run: how far the sync is behind (0 when nothing is due).
const SYNC_LAG: &str = "StatusSyncLagSeconds";

/// How long one call to a provider may take, all included.
pub const CALL_TIMEOUT: Duration = Duration::from_secs(5);
/// Attempts per call (a failed one is tried once more after [`RETRY_PAUSE`]).
pub const CALL_ATTEMPTS: u32 = 2;
pub const RETRY_PAUSE: Duration = Duration::from_millis(500);
/// A run takes no new transaction after this long: with the calls under way (at most
/// [`CALL_ATTEMPTS`] × [`CALL_TIMEOUT`] + [`RETRY_PAUSE`]) and its sends, a group's run ends
/// before the next minute's invocation comes for its lease (the function's timeout is 120 s).
pub const RUN_BUDGET: Duration = Duration::from_secs(45);
/// Events per `SendMessageBatch` (SQS takes at most 10).
const EVENTS_PER_SEND: usize = 10;
/// Transactions per sync shard per run (`STATUS_SYNC_BATCH`): with 64 shards per provider,
/// up to 3,200 per provider per run, so that a run's capacity grows with the shard count
/// (within what `STATUS_SYNC_CONCURRENCY` calls at once get through in a run).
pub const BATCH: u64 = 50;
/// The most `STATUS_SYNC_BATCH` may be: a group's keys (about 100 bytes each) are held
/// at once, its records only [`RECORDS_AT_ONCE`] at a time.
pub const MAX_BATCH: u64 = 25_000;
/// Sync shards per shard group: a provider's [`shared::model::shard::SYNC_SHARDS`] are
/// read in [`GROUPS`] groups, each under its own lease, so that one invocation can take a
/// group (the stack schedules one per group each minute) and capacity grows with them.
pub const SHARDS_AT_ONCE: usize = 4;
/// Shard groups per provider.
pub const GROUPS: usize = shared::model::shard::SYNC_SHARDS as usize / SHARDS_AT_ONCE;
/// Due records read, and asked about, at a time within a group's batch.
pub const RECORDS_AT_ONCE: usize = 500;
/// Calls to one provider at once (`STATUS_SYNC_CONCURRENCY`).
pub const CONCURRENCY: u64 = 10;
/// The most `STATUS_SYNC_CONCURRENCY` may be.
pub const MAX_CONCURRENCY: u64 = 800;
/// Calls at once in one invocation, all providers together: each holds a connection, and
/// Lambda gives an instance 1,024 file descriptors, some of which the runtime, the SDK's
/// clients and the TLS roots hold.
pub const MAX_CONNECTIONS: usize = 800;
/// How long a run holds a shard group's lease at most: the budget, then the calls under way
/// (at most [`CALL_ATTEMPTS`] × [`CALL_TIMEOUT`]) and their writes, within the
/// function's 120 s.
pub const LEASE: Duration = Duration::from_secs(100);

/// `STATUS_SYNC_BATCH`: accepted up to a year's number, then kept within [`MAX_BATCH`].
pub const BATCH_SETTING: Setting =
    Setting::positive("STATUS_SYNC_BATCH", BATCH, "transactions per sync shard per run (at most 25,000 are taken)");
/// `STATUS_SYNC_CONCURRENCY`: accepted up to a year's number, then kept within [`MAX_CONCURRENCY`].
pub const CONCURRENCY_SETTING: Setting = Setting::positive(
    "STATUS_SYNC_CONCURRENCY",
    CONCURRENCY,
    "calls to one provider's status API at once in one invocation (at most 800 are made)",
);

/// The variables the function reads: the write path's, its own, and for each provider
/// with a status API its secret's ARN and its API's.
pub fn settings() -> Vec<Setting> {
    struct Collect(Vec<Setting>);
    impl provider_catalog::EachProvider for Collect {
        fn provider<P: Provider>(&mut self) {
            if P::HAS_STATUS_API {
                self.0.push(Setting::optional(P::SECRET.arn, None, "the ARN of the provider's secret"));
                self.0.extend_from_slice(P::STATUS_API_SETTINGS);
            }
        }
    }
    let mut collect = Collect(shared::runtime::config::WRITE_PATH.to_vec());
    collect.0.extend([BATCH_SETTING, CONCURRENCY_SETTING]);
    provider_catalog::for_each(&mut collect);
    collect.0
}

/// The shard group a scheduled event names (`{"shard_group": n}`), or `None` for every
/// group (an event without one). A group out of range is an error naming the field.
pub fn shard_group(event: &serde_json::Value) -> Result<Option<usize>, String> {
    match event.get("shard_group") {
        None | Some(serde_json::Value::Null) => Ok(None),
        Some(value) => match value.as_u64().and_then(|n| usize::try_from(n).ok()) {
            Some(group) if group < GROUPS => Ok(Some(group)),
            _ => Err(format!("shard_group must be a whole number below {GROUPS}, not {value}")),
        },
    }
}

/// A status API client, or none where the provider has none or this deployment does
/// not configure it.
pub type Source = Option<Box<dyn StatusSource>>;

/// A provider as the sync sees it: whether it has a status API, and the client for it
/// when it is configured in this deployment (its credentials kept current as its secret
/// rotates).
#[derive(Debug)]
pub struct SyncedProvider {
    pub name: &'static str,
    pub has_status_api: bool,
    /// Its reference format: a stored reference not in it is never sent to its API.
    pub check_reference: fn(&str) -> Result<(), shared::pipeline::WebhookError>,
    pub source: FromSecret<Source>,
}

impl SyncedProvider {
    /// Configured from `env` alone, its credentials fixed (tests, and providers without
    /// a status API).
    pub fn from_env<P: Provider>(env: &impl Env) -> Result<Self, ConfigError> {
        Ok(SyncedProvider {
            name: P::NAME,
            has_status_api: P::HAS_STATUS_API,
            check_reference: P::check_reference,
            source: FromSecret::fixed(P::status_api(env)?),
        })
    }

    /// Configured from `env`, its credentials read from the provider's secret (only
    /// for a provider with a status API: the others' secrets are never read).
    pub async fn load<P: Provider>(
        env: Arc<dyn Env + Send + Sync>,
        secrets: &SecretsClient,
        now: OffsetDateTime,
    ) -> Result<Self, ConfigError> {
        let check_reference = P::check_reference;
        if !P::HAS_STATUS_API {
            return Ok(SyncedProvider {
                name: P::NAME,
                has_status_api: false,
                check_reference,
                source: FromSecret::fixed(None),
            });
        }
        let source = FromSecret::load(P::SECRET, env, secrets, None, now, Box::new(|env| P::status_api(env))).await?;
        Ok(SyncedProvider { name: P::NAME, has_status_api: true, check_reference, source })
    }
}

/// Every provider of the catalog, as the function syncs it (each provider's `status_api`
/// says whether and how).
pub async fn providers(
    env: Arc<dyn Env + Send + Sync>,
    secrets: &SecretsClient,
    now: OffsetDateTime,
) -> Result<Vec<SyncedProvider>, ConfigError> {
    type Load<'a> =
        std::pin::Pin<Box<dyn std::future::Future<Output = Result<SyncedProvider, ConfigError>> + Send + 'a>>;
    struct Collect<'a> {
        env: Arc<dyn Env + Send + Sync>,
        secrets: &'a SecretsClient,
        now: OffsetDateTime,
        loads: Vec<Load<'a>>,
    }
    impl<'a> provider_catalog::EachProvider for Collect<'a> {
        fn provider<P: Provider>(&mut self) {
            self.loads.push(Box::pin(SyncedProvider::load::<P>(Arc::clone(&self.env), self.secrets, self.now)));
        }
    }
    let mut collect = Collect { env, secrets, now, loads: Vec::new() };
    provider_catalog::for_each(&mut collect);
    // Read concurrently: init waits for the slowest secret, not for their sum.
    futures_util::future::try_join_all(collect.loads).await
}

/// Every provider configured from `env` alone, its credentials fixed (the tests).
pub fn providers_from_env(env: &impl Env) -> Result<Vec<SyncedProvider>, ConfigError> {
    struct Collect<'a, E> {
        env: &'a E,
        synced: Result<Vec<SyncedProvider>, ConfigError>,
    }
    impl<E: Env> provider_catalog::EachProvider for Collect<'_, E> {
        fn provider<P: Provider>(&mut self) {
            if let Ok(synced) = &mut self.synced {
                match SyncedProvider::from_env::<P>(self.env) {
                    Ok(provider) => synced.push(provider),
                    Err(error) => self.synced = Err(error),
                }
            }
        }
    }
    let mut collect = Collect { env, synced: Ok(Vec::new()) };
    provider_catalog::for_each(&mut collect);
    collect.synced
}

/// What one run did for one provider.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct ProviderRun {
    pub provider: &'static str,
    pub due: usize,
    /// Answers that moved a transaction.
    pub applied: usize,
    /// Transactions asked again later (nothing new, or no status API).
    pub rescheduled: usize,
    /// Transactions whose own query failed (a 4xx for their reference, an answer that
    /// cannot be read): rescheduled along the backoff, the run going on.
    pub rejected: usize,
    pub gave_up: usize,
    /// How long the oldest due transaction had been due ([`SYNC_LAG`]).
    pub lag_seconds: u64,
    /// The provider could not be asked: its run ended, nothing written.
    pub unavailable: bool,
    /// Our store or queue failed: its run ended.
    pub failed: bool,
    /// Another run held one of this provider's shard groups' leases: that group was skipped.
    pub busy: bool,
}

/// What became of one due transaction.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Step {
    Applied,
    Rescheduled,
    Rejected,
    GaveUp,
    /// Moved by a webhook meanwhile, final in the index's lag, or not reached.
    Untouched,
    Unavailable,
    Failed,
}

#[derive(Debug)]
pub struct StatusSync {
    write_path: WritePath,
    providers: Vec<SyncedProvider>,
    batch: usize,
    concurrency: usize,
    /// [`MAX_CONNECTIONS`], shared by the providers' runs.
    connections: Arc<tokio::sync::Semaphore>,
    budget: Duration,
    lease: Duration,
}

impl StatusSync {
    /// `batch` transactions per sync shard per run, asked [`CONCURRENCY`] at a time.
    pub fn new(write_path: WritePath, providers: Vec<SyncedProvider>, batch: u64) -> Self {
        StatusSync {
            write_path,
            providers,
            batch: usize::try_from(batch.clamp(1, MAX_BATCH)).unwrap_or(1),
            concurrency: CONCURRENCY as usize,
            connections: Arc::new(tokio::sync::Semaphore::new(MAX_CONNECTIONS)),
            budget: RUN_BUDGET,
            lease: LEASE,
        }
    }

    /// Calls to one provider at once (`STATUS_SYNC_CONCURRENCY`), at least 1.
    pub fn with_concurrency(mut self, concurrency: u64) -> Self {
        self.concurrency = usize::try_from(concurrency.clamp(1, MAX_CONCURRENCY)).unwrap_or(1);
        self
    }

    /// Calls at once in one invocation, all providers together ([`MAX_CONNECTIONS`] on
    /// Lambda): a test's smaller bound.
    #[cfg(test)]
    fn with_connections(mut self, connections: usize) -> Self {
        self.connections = Arc::new(tokio::sync::Semaphore::new(connections));
        self
    }

    /// How long a shard group's lease is held at most. It must outlast a run (the budget,
    /// then the calls under way) wherever runs can overlap; the local pipeline, whose runs
    /// follow one another in one loop, holds it only for its interval, so that a process
    /// killed mid-run does not hold up the next one.
    pub fn with_lease(mut self, lease: Duration) -> Self {
        self.lease = lease;
        self
    }

    /// Reads `TABLE_NAME`, `QUEUE_URL`, `STATUS_SYNC_AFTER_SECONDS`, `NOTIFY_EVENT_TYPES`,
    /// `STATUS_SYNC_BATCH`, `STATUS_SYNC_CONCURRENCY` and each provider's API
    /// configuration. Each provider's credentials are read from its secret at init.
    pub async fn from_env(env: Arc<dyn Env + Send + Sync>, now: OffsetDateTime) -> Result<Self, ConfigError> {
        let batch = BATCH_SETTING.number_from(&env)?;
        let concurrency = CONCURRENCY_SETTING.number_from(&env)?;
        let aws = shared::runtime::AwsClients::from_env().await;
        let write_path = WritePath::from_env(&env, &aws)?;
        let providers = providers(env, &aws.secrets, now).await?;
        Ok(StatusSync::new(write_path, providers, batch).with_concurrency(concurrency))
    }

    /// One run at `now` over every shard group: every provider concurrently.
    pub async fn run(&self, now: OffsetDateTime) -> Vec<ProviderRun> {
        self.run_group(now, None).await
    }

    /// One run at `now` over shard group `group` (see [`shard_group`]), or every group:
    /// every provider concurrently.
    pub async fn run_group(&self, now: OffsetDateTime, group: Option<usize>) -> Vec<ProviderRun> {
        let deadline = Instant::now() + self.budget;
        let groups: Vec<usize> = match group {
            Some(group) => vec![group % GROUPS],
            // Each run starts at another group (by the minute), so that a backlog a run
            // cannot get through does not leave the last groups unread.
            None => {
                let start = usize::try_from(now.unix_timestamp().div_euclid(60)).unwrap_or(0) % GROUPS;
                (0..GROUPS).map(|turn| (start + turn) % GROUPS).collect()
            }
        };
        let runs = futures_util::future::join_all(
            self.providers.iter().map(|p| self.sync_provider(p, &groups, now, deadline)),
        )
        .await;
        for run in &runs {
            tracing::info!(
                provider = run.provider,
                shard_group = group,
                due = run.due,
                applied = run.applied,
                rescheduled = run.rescheduled,
                rejected = run.rejected,
                gave_up = run.gave_up,
                lag_seconds = run.lag_seconds,
                unavailable = run.unavailable,
                failed = run.failed,
                busy = run.busy,
                "status sync run"
            );
        }
        runs
    }

    /// One provider's run over `groups`, each under its lease: two runs that overlap (a
    /// slow run and the next scheduled one) never ask about the same transaction.
    async fn sync_provider(
        &self,
        provider: &SyncedProvider,
        groups: &[usize],
        now: OffsetDateTime,
        deadline: Instant,
    ) -> ProviderRun {
        let name = provider.name;
        let mut run = ProviderRun { provider: name, ..ProviderRun::default() };
        let store = self.write_path.store();
        let source = provider.source.get(now).await.current;
        for &group in groups {
            if run.unavailable || run.failed || Instant::now() >= deadline {
                break;
            }
            let lease = format!("sync#{name}#{group}");
            let holder = holder();
            match store.take_lease(&lease, &holder, now, now + self.lease).await {
                Ok(true) => {}
                Ok(false) => {
                    tracing::info!(
                        provider = name,
                        shard_group = group,
                        "another status sync run holds this shard group: skipped"
                    );
                    run.busy = true;
                    continue;
                }
                Err(error) => {
                    tracing::error!(provider = name, error = %error, "status sync could not take its lease");
                    run.failed = true;
                    break;
                }
            }
            self.sync_group(provider, source.as_deref(), group, now, deadline, &mut run).await;
            if let Err(error) = store.release_lease(&lease, &holder).await {
                tracing::warn!(provider = name, error = %error, "status sync lease not released; it expires on its own");
            }
        }
        shared::runtime::metrics::seconds(SYNC_LAG, name, run.lag_seconds);
        run
    }

    /// The provider's due transactions in one shard group (with group 0, also those in
    /// the index kept before the sharding): their keys, then their records
    /// [`RECORDS_AT_ONCE`] at a time, so that memory does not grow with the batch.
    async fn sync_group(
        &self,
        provider: &SyncedProvider,
        source: Option<&dyn StatusSource>,
        group: usize,
        now: OffsetDateTime,
        deadline: Instant,
        run: &mut ProviderRun,
    ) {
        let name = provider.name;
        let store = self.write_path.store();
        let shards: Vec<String> = shared::model::shard::all(name, shared::model::shard::SYNC_SHARDS)
            .into_iter()
            .skip(group * SHARDS_AT_ONCE)
            .take(SHARDS_AT_ONCE)
            .collect();
        let keys = match store.due_in_shards(name, &shards, group == 0, now, self.batch).await {
            Ok(keys) => keys,
            Err(error) => {
                tracing::error!(provider = name, error = %error, "status sync could not read its index");
                run.failed = true;
                return;
            }
        };
        let stop = AtomicBool::new(false);
        for chunk in keys.chunks(RECORDS_AT_ONCE) {
            if stop.load(Ordering::Relaxed) || Instant::now() >= deadline {
                break;
            }
            let due = match store.due_records(chunk, now).await {
                Ok(due) => due,
                Err(error) => {
                    tracing::error!(provider = name, error = %error, "status sync could not read its due records");
                    run.failed = true;
                    break;
                }
            };
            run.due += due.len();
            // Keys come oldest first: the first chunk's oldest says how far behind the sync is.
            let oldest = due.first().and_then(|record| record.next_sync_at);
            let lag = oldest.map_or(0, |at| u64::try_from((now - at).whole_seconds()).unwrap_or(0));
            run.lag_seconds = run.lag_seconds.max(lag);
            let mut steps = futures_util::stream::iter(due)
                .map(|record| self.sync_one(provider, source, record, now, deadline, &stop))
                .buffer_unordered(self.concurrency);
            // The events the answers cause go out 10 to a call as soon as there are 10 (the
            // rest when the chunk is done), not all at the chunk's end.
            let mut outbox = Vec::new();
            while let Some((step, events)) = steps.next().await {
                outbox.extend(events);
                if outbox.len() >= EVENTS_PER_SEND {
                    self.send(name, std::mem::take(&mut outbox), &stop, run).await;
                }
                match step {
                    Step::Applied => run.applied += 1,
                    Step::Rescheduled => run.rescheduled += 1,
                    Step::Rejected => run.rejected += 1,
                    Step::GaveUp => run.gave_up += 1,
                    Step::Untouched => {}
                    Step::Unavailable => run.unavailable = true,
                    Step::Failed => run.failed = true,
                }
            }
            self.send(name, outbox, &stop, run).await;
        }
    }

    /// Sends the events the answers caused, in one `SendMessageBatch`. One not sent leaves
    /// its final record pending: the reconciler sends it; the provider's run ends.
    async fn send(&self, provider: &str, events: Vec<MerchantEvent>, stop: &AtomicBool, run: &mut ProviderRun) {
        for (event, result) in events.iter().zip(self.write_path.send_batch(&events).await) {
            match result {
                Ok(()) => {
                    tracing::info!(provider, reference = %event.data.reference, event_id = %event.id, event_type = %event.kind, "event sent to the queue (deduplicated by id)")
                }
                Err(error) => {
                    tracing::error!(provider, reference = %event.data.reference, event_id = %event.id, error = %error, "status sync could not send an event: the reconciler sends it");
                    stop.store(true, Ordering::Relaxed);
                    run.failed = true;
                    // An outcome keeps its record pending; anything else a final record
                    // shows (a mismatch, a refund) marks it so, for the reconciler.
                    let (reference, status) = (event.data.reference.as_str(), event.data.status);
                    if event.outcome().is_none() && status.is_final() {
                        if let Err(error) = self.write_path.store().mark_unsent(provider, reference, status).await {
                            tracing::error!(provider, reference, error = %error, "could not mark the unsent event for the reconciler: it is lost");
                        }
                    }
                }
            }
        }
    }

    /// [`ask`], holding one of the invocation's [`MAX_CONNECTIONS`] while it does; `None`
    /// when, once its turn comes, the run is past its deadline or `stop` is set.
    async fn ask_within_connections(
        &self,
        source: &dyn StatusSource,
        record: &TransactionRecord,
        now: OffsetDateTime,
        deadline: Instant,
        stop: &AtomicBool,
    ) -> Option<Result<Option<Observation>, SyncError>> {
        // Never closed: a permit is always given, in turn.
        let _connection = self.connections.acquire().await.ok();
        if stop.load(Ordering::Relaxed) || Instant::now() >= deadline {
            return None;
        }
        Some(ask(source, record, now).await)
    }

    /// One due transaction: ask, apply what moves it, or reschedule it. A failure of the
    /// provider or of our store sets `stop`: the calls not yet started are not made.
    async fn sync_one(
        &self,
        provider: &SyncedProvider,
        source: Option<&dyn StatusSource>,
        mut record: TransactionRecord,
        now: OffsetDateTime,
        deadline: Instant,
        stop: &AtomicBool,
    ) -> (Step, Vec<MerchantEvent>) {
        // The index lags the table: a transaction final a moment ago may still be listed.
        // A final one is asked about only while a refund of it is pending.
        let settled = record.status.is_final() && !record.awaits_refund();
        if stop.load(Ordering::Relaxed) || Instant::now() >= deadline || settled {
            return (Step::Untouched, Vec::new());
        }
        let name = provider.name;
        let reference = record.reference.as_str();
        let mut rejected = false;
        // The expiry the provider states goes on the record with the reschedule, even when
        // the answer changes nothing else (a charge registered first, then asked).
        let mut stated_expiry = None;
        let asked = match source {
            None => None,
            // Never into the provider's URL: a registration or an older release stored it.
            Some(_) if (provider.check_reference)(reference).is_err() => {
                Some(Err(SyncError::transaction("the stored reference is not in the provider's format: not asked")))
            }
            Some(source) => match self.ask_within_connections(source, &record, now, deadline, stop).await {
                // The run ended, or its provider failed, while this call waited its turn.
                None => return (Step::Untouched, Vec::new()),
                asked => asked,
            },
        };
        let answer = match asked {
            None => None,
            // An answer that cannot apply to the record as listed cannot apply to it
            // as stored either (the index only lags, to a lower rank, and the record
            // listed is not final): no write for it, only the reschedule.
            Some(Ok(answer)) => {
                let answer = answer.filter(|o| same_transaction(name, &record, o));
                stated_expiry = answer.as_ref().and_then(|o| o.expires_at);
                let refund_news = record.awaits_refund();
                answer.filter(|o| {
                    shared::model::applies(Some(record.status), o.status) || (refund_news && !o.refunds.is_empty())
                })
            }
            Some(Err(error)) if error.scope == SyncScope::Transaction => {
                tracing::warn!(provider = name, reference, error = %error, "provider status query failed for this transaction: rescheduled along the backoff");
                rejected = true;
                None
            }
            Some(Err(error)) => {
                tracing::warn!(provider = name, reference, error = %error, "provider status API unavailable: nothing written, asked again in a later run");
                stop.store(true, Ordering::Relaxed);
                return (Step::Unavailable, Vec::new());
            }
        };
        let mut events = Vec::new();
        if let Some(observation) = answer {
            match self.write_path.apply_deferred(name, provider.has_status_api, observation, now).await {
                Ok((outcome, caused)) if outcome.decision == Decision::Apply => return (Step::Applied, caused),
                // A final transaction whose last pending refund settled (the write path ended
                // its schedule).
                Ok((outcome, caused)) if record.status.is_final() && !outcome.awaits_refund => {
                    return (Step::Applied, caused)
                }
                Ok((_, caused)) => events = caused,
                Err(error) => {
                    tracing::error!(provider = name, reference, error = %error, "status sync could not apply the answer");
                    stop.store(true, Ordering::Relaxed);
                    return (Step::Failed, Vec::new());
                }
            }
        }
        record.expires_at = stated_expiry.map(shared::model::index_time).or(record.expires_at);
        let step = match self.nothing_new(provider, source.is_some(), &record, now).await {
            Ok(Some(SyncStep::Retry { .. })) if rejected => Step::Rejected,
            Ok(Some(SyncStep::Retry { .. })) => Step::Rescheduled,
            Ok(Some(SyncStep::GiveUp)) => Step::GaveUp,
            Ok(None) => Step::Untouched,
            Err(error) => {
                tracing::error!(provider = name, reference, error = %error, "status sync could not reschedule");
                stop.store(true, Ordering::Relaxed);
                Step::Failed
            }
        };
        (step, events)
    }

    /// The provider said nothing that moves `record`: the next rung, or give up. `None`
    /// when the record moved meanwhile (a webhook), which scheduled it afresh.
    async fn nothing_new(
        &self,
        provider: &SyncedProvider,
        configured: bool,
        record: &TransactionRecord,
        now: OffsetDateTime,
    ) -> Result<Option<SyncStep>, shared::storage::StoreError> {
        let step = self.write_path.policy().next(record, configured, now);
        if !self.write_path.store().reschedule(record, step, now).await? {
            return Ok(None);
        }
        if step == SyncStep::GiveUp {
            tracing::error!(provider = provider.name, reference = %record.reference, status = %record.status, updated_at = %record.updated_at, alarm = "status_sync_gave_up", "no final status after 7 days unchanged: status sync gave up, the transaction stays non-final");
            shared::runtime::metrics::count(SYNC_GAVE_UP, provider.name);
        }
        Ok(Some(step))
    }
}

/// A name for this run's hold on a lease, unique across instances and runs.
fn holder() -> String {
    static RUNS: AtomicU64 = AtomicU64::new(0);
    let nanos = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap_or_default().as_nanos();
    format!("{}-{nanos}-{}", std::process::id(), RUNS.fetch_add(1, Ordering::Relaxed))
}

/// One call with a timeout, tried [`CALL_ATTEMPTS`] times.
async fn ask(
    source: &dyn StatusSource,
    record: &TransactionRecord,
    now: OffsetDateTime,
) -> Result<Option<Observation>, SyncError> {
    let mut last = SyncError::new("not asked");
    for attempt in 0..CALL_ATTEMPTS {
        if attempt > 0 {
            tokio::time::sleep(RETRY_PAUSE).await;
        }
        match tokio::time::timeout(CALL_TIMEOUT, source.status(record, now)).await {
            Ok(Ok(answer)) => return Ok(answer),
            // Asking again would get the same refusal.
            Ok(Err(error)) if error.scope == SyncScope::Transaction => return Err(error),
            Ok(Err(error)) => last = error,
            Err(_) => last = SyncError::new(format!("no answer within {} s", CALL_TIMEOUT.as_secs())),
        }
    }
    Err(last)
}

/// An answer about another transaction is never applied to this one.
fn same_transaction(provider: &str, record: &TransactionRecord, observation: &Observation) -> bool {
    let same = observation.reference == record.reference;
    if !same {
        tracing::warn!(provider, reference = %record.reference, answered = %observation.reference, "provider answered about another transaction: ignored");
    }
    same
}

#[cfg(test)]
mod tests {
    use super::{shard_group, GROUPS};
    use std::sync::atomic::{AtomicUsize, Ordering};

    /// The calls two status APIs are answering at once, together.
    #[derive(Debug, Default)]
    struct InFlight {
        now: AtomicUsize,
        most: AtomicUsize,
    }

    /// A status API that answers nothing after 20 ms, counted in `in_flight`.
    #[derive(Debug)]
    struct Slow<'a> {
        in_flight: &'a InFlight,
        calls: AtomicUsize,
    }

    impl shared::pipeline::StatusSource for Slow<'_> {
        fn status<'a>(
            &'a self,
            _: &'a shared::model::TransactionRecord,
            _: time::OffsetDateTime,
        ) -> shared::pipeline::StatusFuture<'a> {
            Box::pin(async move {
                self.calls.fetch_add(1, Ordering::SeqCst);
                let at_once = self.in_flight.now.fetch_add(1, Ordering::SeqCst) + 1;
                self.in_flight.most.fetch_max(at_once, Ordering::SeqCst);
                tokio::time::sleep(std::time::Duration::from_millis(20)).await;
                self.in_flight.now.fetch_sub(1, Ordering::SeqCst);
                Ok(None)
            })
        }
    }

    /// Two providers' calls, each provider allowed 10 at once, share the invocation's
    /// connections: never more than its bound at once, and the bound is used.
    #[tokio::test]
    async fn calls_at_once_stay_within_the_invocations_connections_all_providers_together() {
        let dynamodb = aws_sdk_dynamodb::Client::from_conf(
            aws_sdk_dynamodb::Config::builder()
                .behavior_version(aws_sdk_dynamodb::config::BehaviorVersion::latest())
                .build(),
        );
        let sqs = aws_sdk_sqs::Client::from_conf(
            aws_sdk_sqs::Config::builder().behavior_version(aws_sdk_sqs::config::BehaviorVersion::latest()).build(),
        );
        let write_path = shared::pipeline::WritePath::new(
            shared::storage::TransactionStore::new(dynamodb, "unused"),
            shared::storage::EventQueue::new(sqs, "unused"),
            Default::default(),
        );
        let sync = super::StatusSync::new(write_path, Vec::new(), 1).with_concurrency(10).with_connections(3);
        let record: shared::model::TransactionRecord = serde_json::from_value(serde_json::json!({
            "provider": "azqr", "reference": "100000000001", "status": "created",
            "first_seen_at": "2026-11-30T00:00:00Z", "updated_at": "2026-11-30T00:00:00Z"
        }))
        .expect("record");
        let in_flight = InFlight::default();
        let azqr = Slow { in_flight: &in_flight, calls: AtomicUsize::new(0) };
        let pay3 = Slow { in_flight: &in_flight, calls: AtomicUsize::new(0) };
        let now = time::OffsetDateTime::UNIX_EPOCH;
        let (deadline, stop) = (std::time::Instant::now() + std::time::Duration::from_secs(60), Default::default());
        let asks = (0..20).map(|i| {
            let source: &dyn shared::pipeline::StatusSource = if i % 2 == 0 { &azqr } else { &pay3 };
            sync.ask_within_connections(source, &record, now, deadline, &stop)
        });
        for asked in futures_util::future::join_all(asks).await {
            assert!(asked.expect("asked before the deadline").expect("answer").is_none());
        }
        assert_eq!(in_flight.most.load(Ordering::SeqCst), 3, "3 at once, all providers together");
        assert_eq!((azqr.calls.load(Ordering::SeqCst), pay3.calls.load(Ordering::SeqCst)), (10, 10));
        // A call whose turn comes after its provider failed, or past the deadline, is not made.
        let stopped = std::sync::atomic::AtomicBool::new(true);
        assert!(sync.ask_within_connections(&azqr, &record, now, deadline, &stopped).await.is_none());
        let past = std::time::Instant::now();
        assert!(sync.ask_within_connections(&azqr, &record, now, past, &Default::default()).await.is_none());
        assert_eq!(azqr.calls.load(Ordering::SeqCst), 10, "no call made");
    }

    #[test]
    fn a_scheduled_event_names_one_shard_group_or_none() {
        use serde_json::json;
        assert_eq!(shard_group(&json!({})), Ok(None), "EventBridge's own event: every group");
        assert_eq!(shard_group(&json!({"shard_group": 0})), Ok(Some(0)));
        assert_eq!(shard_group(&json!({"shard_group": GROUPS - 1})), Ok(Some(GROUPS - 1)));
        for bad in [json!({"shard_group": GROUPS}), json!({"shard_group": -1}), json!({"shard_group": "1"})] {
            assert!(shard_group(&bad).is_err_and(|e| e.contains("shard_group")), "{bad}");
        }
    }
}
