//! The status sync: no transaction left in limbo. On a schedule, for each provider, it
//! takes the non-final transactions whose next sync is due from the sparse
//! `SyncSchedule` index (no scan), asks the provider's status API, and applies the answer
//! through the webhooks' own write path ([`Recorder`]), so a sync and a webhook can race
//! without regressing a transaction or duplicating its event.
//!
//! An answer that changes nothing moves the transaction one rung up the backoff; one
//! unchanged for 7 days is given up (left non-final, an alarm raised). A provider that
//! cannot be asked (down, slow, failing) ends that provider's run: nothing is written,
//! the same transactions are due again next run, and the other providers, synced
//! concurrently, are not held up.

use std::sync::Arc;
use std::time::{Duration, Instant};

use serde::Serialize;
use shared::config::positive_integer;
use shared::model::{Decision, Observation, SyncStep, TransactionRecord};
use shared::secrets::SecretsClient;
use shared::{ConfigError, Env, Provider, Recorder, Rotating, StatusSource, SyncError};
use time::OffsetDateTime;

/// How long one call to a provider may take, all included.
pub const CALL_TIMEOUT: Duration = Duration::from_secs(5);
/// Attempts per call (a failed one is tried once more after [`RETRY_PAUSE`]).
pub const CALL_ATTEMPTS: u32 = 2;
pub const RETRY_PAUSE: Duration = Duration::from_millis(500);
/// A run takes no new transaction after this long (the function's timeout is 120 s).
pub const RUN_BUDGET: Duration = Duration::from_secs(60);
/// Transactions per provider per run (`STATUS_SYNC_BATCH`).
pub const BATCH: u64 = 50;

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
    pub source: Rotating<Source>,
}

impl SyncedProvider {
    /// Configured from `env` alone, its credentials fixed (tests, and providers without
    /// a status API).
    pub fn of<P: Provider>(env: &impl Env) -> Result<Self, ConfigError> {
        Ok(SyncedProvider {
            name: P::NAME,
            has_status_api: P::HAS_STATUS_API,
            source: Rotating::fixed(P::status_api(env)?),
        })
    }

    /// Configured from `env`, its credentials read from the provider's secret (only
    /// for a provider with a status API: the others' secrets are never read).
    pub async fn load<P: Provider>(
        env: Arc<dyn Env + Send + Sync>,
        secrets: &SecretsClient,
        now: OffsetDateTime,
    ) -> Result<Self, ConfigError> {
        if !P::HAS_STATUS_API {
            return Ok(SyncedProvider { name: P::NAME, has_status_api: false, source: Rotating::fixed(None) });
        }
        let source = Rotating::load(P::SECRET, env, secrets, None, now, Box::new(|env| P::status_api(env))).await?;
        Ok(SyncedProvider { name: P::NAME, has_status_api: true, source })
    }
}

/// Every provider the function syncs (each provider's `status_api` says whether and how).
pub async fn providers(
    env: Arc<dyn Env + Send + Sync>,
    secrets: &SecretsClient,
    now: OffsetDateTime,
) -> Result<Vec<SyncedProvider>, ConfigError> {
    // Read concurrently: init waits for the slowest secret, not for their sum.
    let e = || Arc::clone(&env);
    let (azqr, pay3, qitech, key2pay, pagstar) = futures_util::future::try_join5(
        SyncedProvider::load::<azqr_webhook::Azqr>(e(), secrets, now),
        SyncedProvider::load::<pay3_webhook::Pay3>(e(), secrets, now),
        SyncedProvider::load::<qitech_webhook::QiTech>(e(), secrets, now),
        SyncedProvider::load::<key2pay_webhook::Key2Pay>(e(), secrets, now),
        SyncedProvider::load::<pagstar_webhook::Pagstar>(e(), secrets, now),
    )
    .await?;
    Ok(vec![azqr, pay3, qitech, key2pay, pagstar])
}

/// Every provider's name, and whether it has a status API (for writes that schedule the
/// sync outside a webhook: registrations).
pub fn known() -> Vec<(&'static str, bool)> {
    vec![
        (azqr_webhook::Azqr::NAME, azqr_webhook::Azqr::HAS_STATUS_API),
        (pay3_webhook::Pay3::NAME, pay3_webhook::Pay3::HAS_STATUS_API),
        (qitech_webhook::QiTech::NAME, qitech_webhook::QiTech::HAS_STATUS_API),
        (key2pay_webhook::Key2Pay::NAME, key2pay_webhook::Key2Pay::HAS_STATUS_API),
        (pagstar_webhook::Pagstar::NAME, pagstar_webhook::Pagstar::HAS_STATUS_API),
    ]
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
    pub gave_up: usize,
    /// The provider could not be asked: its run ended, nothing written.
    pub unavailable: bool,
    /// Our store or queue failed: its run ended.
    pub failed: bool,
}

#[derive(Debug)]
pub struct StatusSync {
    recorder: Recorder,
    providers: Vec<SyncedProvider>,
    batch: i32,
    budget: Duration,
}

impl StatusSync {
    pub fn new(recorder: Recorder, providers: Vec<SyncedProvider>, batch: u64) -> Self {
        StatusSync { recorder, providers, batch: batch.min(1_000) as i32, budget: RUN_BUDGET }
    }

    /// Reads `TABLE_NAME`, `QUEUE_URL`, `STATUS_SYNC_AFTER_SECONDS`, `NOTIFY_EVENT_TYPES`,
    /// `STATUS_SYNC_BATCH` and each provider's API configuration.
    /// Each provider's credentials are read from its secret at init.
    pub async fn from_env(env: Arc<dyn Env + Send + Sync>, now: OffsetDateTime) -> Result<Self, ConfigError> {
        let batch = positive_integer(&env, "STATUS_SYNC_BATCH", BATCH)?;
        let aws = shared::AwsClients::from_env().await;
        let recorder = Recorder::from_env(&env, &aws)?;
        let providers = providers(env, &aws.secrets, now).await?;
        Ok(StatusSync::new(recorder, providers, batch))
    }

    /// One run at `now`: every provider concurrently.
    pub async fn run(&self, now: OffsetDateTime) -> Vec<ProviderRun> {
        let deadline = Instant::now() + self.budget;
        let runs =
            futures_util::future::join_all(self.providers.iter().map(|p| self.sync_provider(p, now, deadline))).await;
        for run in &runs {
            tracing::info!(
                provider = run.provider,
                due = run.due,
                applied = run.applied,
                rescheduled = run.rescheduled,
                gave_up = run.gave_up,
                unavailable = run.unavailable,
                failed = run.failed,
                "status sync run"
            );
        }
        runs
    }

    async fn sync_provider(&self, provider: &SyncedProvider, now: OffsetDateTime, deadline: Instant) -> ProviderRun {
        let name = provider.name;
        let mut run = ProviderRun { provider: name, ..ProviderRun::default() };
        let due = match self.recorder.store().due_for_sync(name, now, self.batch).await {
            Ok(due) => due,
            Err(error) => {
                tracing::error!(provider = name, error = %error, "status sync could not read its index");
                run.failed = true;
                return run;
            }
        };
        run.due = due.len();
        let source = provider.source.get(now).await.current;
        for record in due {
            if Instant::now() >= deadline {
                break;
            }
            // The index lags the table: a transaction final a moment ago may still be listed.
            if record.status.is_final() {
                continue;
            }
            let reference = record.reference.as_str();
            let answer = match source.as_ref() {
                None => None,
                Some(source) => match ask(source.as_ref(), &record, now).await {
                    // An answer that cannot apply to the record as listed cannot apply to
                    // it as stored either (the index only lags, to a lower rank, and the
                    // record listed is not final): no write for it, only the reschedule.
                    Ok(answer) => answer
                        .filter(|o| same_transaction(name, &record, o))
                        .filter(|o| shared::model::applies(Some(record.status), o.status)),
                    Err(error) => {
                        tracing::warn!(provider = name, reference, error = %error, "provider status API unavailable: nothing written, asked again in a later run");
                        run.unavailable = true;
                        break;
                    }
                },
            };
            if let Some(observation) = answer {
                match self.recorder.apply(name, provider.has_status_api, observation, now).await {
                    Ok(outcome) if outcome.decision == Decision::Apply => {
                        run.applied += 1;
                        continue;
                    }
                    Ok(_) => {}
                    Err(error) => {
                        tracing::error!(provider = name, reference, error = %error, "status sync could not apply the answer");
                        run.failed = true;
                        break;
                    }
                }
            }
            if let Err(error) = self.nothing_new(provider, source.is_some(), &record, now, &mut run).await {
                tracing::error!(provider = name, reference, error = %error, "status sync could not reschedule");
                run.failed = true;
                break;
            }
        }
        run
    }

    /// The provider said nothing that moves `record`: the next rung, or give up.
    async fn nothing_new(
        &self,
        provider: &SyncedProvider,
        configured: bool,
        record: &TransactionRecord,
        now: OffsetDateTime,
        run: &mut ProviderRun,
    ) -> Result<(), shared::store::StoreError> {
        let step = self.recorder.policy().next(record, configured, now);
        if !self.recorder.store().reschedule(record, step).await? {
            return Ok(()); // moved meanwhile (a webhook): it has its own schedule
        }
        match step {
            SyncStep::Retry { .. } => run.rescheduled += 1,
            SyncStep::GiveUp => {
                run.gave_up += 1;
                tracing::error!(provider = provider.name, reference = %record.reference, status = %record.status, updated_at = %record.updated_at, alarm = "status_sync_gave_up", "no final status after 7 days unchanged: status sync gave up, the transaction stays non-final");
                shared::metrics::count(shared::metrics::SYNC_GAVE_UP, provider.name);
            }
        }
        Ok(())
    }
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
    #[test]
    fn every_provider_is_known_and_three_have_a_status_api() {
        let known = super::known();
        let names: Vec<&str> = known.iter().map(|(name, _)| *name).collect();
        assert_eq!(names, ["azqr", "pay3", "qitech", "key2pay", "pagstar"]);
        let synced: Vec<&str> = known.iter().filter(|(_, api)| *api).map(|(name, _)| *name).collect();
        assert_eq!(synced, ["azqr", "pay3", "pagstar"]);
    }
}
