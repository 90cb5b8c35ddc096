//! The common webhook flow, the same for every provider:
//! size and content type → authenticate (the provider's first step: nothing is trusted
//! before it) → normalize (its second step) → conditional write → enqueue the terminal
//! event. `Webhook::process` takes these steps in this order.

use std::future::Future;
use std::sync::Arc;

use http::StatusCode;
use serde::de::{DeserializeOwned, IntoDeserializer};
use time::OffsetDateTime;

use crate::config::{ConfigError, Env, Setting, StorageConfig, SECRET_PREVIOUS_GRACE_MINUTES, WRITE_PATH};
use crate::error::{WebhookError, MAX_BODY_BYTES};
use crate::inbound::Inbound;
use crate::model::notification::{EventType, EventTypes};
use crate::model::{notification, Decision, MerchantEvent, Observation, SyncPolicy, WritePlan};
use crate::queue::EventQueue;
use crate::secrets::{FromSecret, SecretVersions};
use crate::store::{ConflictWrite, TransactionStore};

/// A provider's check of a hint ([`Provider::HINT`]; `shared::hints` queues and confirms it): the request's shape only, nothing
/// is trusted. Returns the hint to queue, rewritten to what the provider's `authenticate`
/// reads and nothing more of the request; a hint with nothing to ask is a 4xx.
pub type HintCheck = fn(&Inbound) -> Result<Vec<u8>, WebhookError>;

/// A payment provider's webhook: how to verify it and what it says.
pub trait Provider: Send + Sync + 'static {
    /// Short lowercase name, used in transaction keys, logs and events.
    const NAME: &'static str;
    /// The status answered when a webhook is acknowledged (the provider's expectation).
    const ACK_STATUS: StatusCode;
    /// Its route, exactly as in template.yaml and openapi.yaml.
    const METHOD: &'static str;
    const PATH: &'static str;
    /// Other paths the same webhook is also served at (same method), as in template.yaml.
    const ALSO_AT: &'static [&'static str] = &[];

    /// Whether the status sync can ask this provider about a transaction (it has a
    /// status API we call). Without one, a record says `"sync": "unsupported"`.
    const HAS_STATUS_API: bool;

    /// Only for a webhook that is a hint, which carries nothing we can verify (its
    /// `authenticate` asks the provider): the check of its shape, after which the
    /// webhook function queues it and answers, and the hint queue's consumer takes the
    /// steps below (`shared::hints`). `None`: a webhook verified on arrival.
    const HINT: Option<HintCheck> = None;

    /// Its reference format, checked wherever a reference enters: its webhooks, the
    /// transactions API, the status sync (before the reference goes into a URL). An
    /// invalid one is 400 `invalid_field`. The default is [`check_reference`] alone; a
    /// provider's own format goes through [`reference_format`], which applies it too.
    fn check_reference(reference: &str) -> Result<(), WebhookError>
    where
        Self: Sized,
    {
        check_reference(reference)
    }

    /// The variables its webhook reads besides the write path's and its secret's (see
    /// [`Webhook::settings`]).
    const SETTINGS: &'static [crate::config::Setting] = &[];
    /// The variables its status API reads besides its secret's (the status sync's).
    const STATUS_API_SETTINGS: &'static [crate::config::Setting] = &[];

    /// Its secrets: one Secrets Manager secret, found by the ARN in `SECRET.arn`, whose
    /// keys [`Self::from_env`] reads as if they were environment variables.
    const SECRET: crate::secrets::SecretSpec;

    /// Reads its configuration (secrets, its API's URL) from the environment; called
    /// again with the new values whenever its secret rotates.
    fn from_env(env: &impl Env) -> Result<Self, ConfigError>
    where
        Self: Sized;

    /// Its status API for the status sync, when it has one ([`Self::HAS_STATUS_API`]) and
    /// the environment configures it; `None` otherwise.
    fn status_api(_env: &impl Env) -> Result<Option<Box<dyn crate::sync::StatusSource>>, ConfigError>
    where
        Self: Sized,
    {
        Ok(None)
    }

    /// Whether its callback URL carries a token per payment ([`Self::callback_token`]),
    /// which the transactions API's registration answers: for a provider whose webhooks
    /// carry no signature of their own (Key2Pay).
    const CALLBACK_TOKEN: bool = false;

    /// The token the merchant puts in the callback URL it gives the provider for the
    /// payment `reference`, when [`Self::CALLBACK_TOKEN`]; `None` otherwise.
    fn callback_token(&self, _reference: &str) -> Option<String> {
        None
    }

    /// What `authenticate` vouches for: the request's content, once its origin is verified.
    type Verified: Send;

    /// Step 1: verifies where the request comes from (a key, a signature, a token, or a
    /// call back to the provider) and returns its verified content, parsed once. Nothing
    /// in the request is acted on before this. An error writes nothing: 401 when the
    /// request cannot be verified, 503 when the provider cannot be asked.
    fn authenticate(
        &self,
        request: &Inbound,
        now: OffsetDateTime,
    ) -> impl Future<Output = Result<Self::Verified, WebhookError>> + Send;

    /// Step 2: what the verified content says, in the canonical model. An unknown status
    /// is an error (422); a message that changes nothing is no observation.
    fn normalize(&self, verified: Self::Verified) -> Result<Vec<Observation>, WebhookError>;

    /// Both steps in order, as the pipeline takes them.
    fn receive(
        &self,
        request: &Inbound,
        now: OffsetDateTime,
    ) -> impl Future<Output = Result<Vec<Observation>, WebhookError>> + Send {
        async move { self.normalize(self.authenticate(request, now).await?) }
    }
}

/// What the pipeline did with one observation.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Outcome {
    pub reference: String,
    pub decision: Decision,
    /// Whether a terminal event was sent to the queue.
    pub enqueued: bool,
    /// Whether a refund of the transaction is still pending after the write.
    pub awaits_refund: bool,
}

/// How long after a refund's status, or an amount mismatch, was first heard a repeat of
/// the word sends its event again (the provider retrying after our 5xx, an earlier send
/// having failed). Later repeats, which anyone can cause with an unsigned hint, send
/// nothing: they would only cost sends and deliveries.
const RESEND_WITHIN: time::Duration = time::Duration::hours(1);

/// Whether what was first heard at `heard` is sent again on a repeat at `now`.
fn still_resent(heard: OffsetDateTime, now: OffsetDateTime) -> bool {
    now - heard < RESEND_WITHIN
}

/// The one write path for a provider's word, whether a webhook or the status sync
/// brought it: the single conditional write, a conflict kept as data, and the events to
/// the merchant. Webhooks and syncs can race; the write's condition orders them.
#[derive(Debug, Clone)]
pub struct WritePath {
    store: TransactionStore,
    queue: EventQueue,
    policy: SyncPolicy,
    events: EventTypes,
}

impl WritePath {
    /// With the default event types (every type but `transaction.updated`).
    pub fn new(store: TransactionStore, queue: EventQueue, policy: SyncPolicy) -> Self {
        WritePath { store, queue, policy, events: EventTypes::default() }
    }

    /// The event types the merchant receives (`NOTIFY_EVENT_TYPES`).
    pub fn with_events(self, events: EventTypes) -> Self {
        WritePath { events, ..self }
    }

    /// With `aws`'s clients and the Lambda environment (`TABLE_NAME`, `QUEUE_URL`,
    /// `STATUS_SYNC_AFTER_SECONDS`, `NOTIFY_EVENT_TYPES`).
    pub fn from_env(env: &impl Env, aws: &crate::aws::AwsClients) -> Result<Self, ConfigError> {
        let storage = StorageConfig::from_env(env)?;
        let policy = crate::config::sync_policy(env)?;
        let events = crate::config::event_types(env)?;
        let store = TransactionStore::new(aws.dynamodb.clone(), storage.table_name);
        Ok(WritePath::new(store, EventQueue::new(aws.sqs.clone(), storage.queue_url), policy).with_events(events))
    }

    pub fn store(&self) -> &TransactionStore {
        &self.store
    }

    pub fn policy(&self) -> SyncPolicy {
        self.policy
    }

    /// Applies what `provider` said (`has_status_api`: whether the sync can ask it) at `now`,
    /// and sends the events it causes.
    pub async fn apply(
        &self,
        provider: &str,
        has_status_api: bool,
        observation: Observation,
        now: OffsetDateTime,
    ) -> Result<Outcome, WebhookError> {
        let (mut outcome, events) = self.apply_deferred(provider, has_status_api, observation, now).await?;
        let resend = outcome.decision != Decision::Apply;
        for event in &events {
            self.queue.send(event).await?;
            tracing::info!(provider, reference = %outcome.reference, event_id = %event.id, event_type = %event.kind, resend, "event sent to the queue (deduplicated by id)");
            outcome.enqueued = true;
        }
        Ok(outcome)
    }

    /// As [`Self::apply`], but the outcome and progress events it causes are returned for
    /// the caller to send, batched with others ([`Self::send_batch`]; the status sync). A
    /// final one whose send fails stays pending on its record: the reconciler sends it.
    pub async fn apply_deferred(
        &self,
        provider: &str,
        has_status_api: bool,
        observation: Observation,
        now: OffsetDateTime,
    ) -> Result<(Outcome, Vec<MerchantEvent>), WebhookError> {
        let reference = observation.reference.as_str();
        let plan = WritePlan { policy: self.policy, supported: has_status_api, events: self.events };
        let mut sent = false;
        let (decision, mut record) = self.store.record(provider, &observation, now, plan).await?;
        // The word that settled the last pending refund of a final transaction: asked no more.
        let refund_settled = !observation.refunds.is_empty() && !record.awaits_refund();
        if record.status.is_final() && refund_settled && record.next_sync_at.is_some() {
            self.store.end_schedule(&record).await?;
            (record.sync, record.next_sync_at, record.sync_attempts) = (None, None, 0);
        }
        match decision {
            Decision::Apply => {
                tracing::info!(provider, reference, status = %record.status, provider_status = %observation.provider_status, outcome = "applied", "transition applied");
            }
            Decision::Conflict => sent = self.conflict(provider, &observation, &record, now).await?,
            Decision::Duplicate | Decision::Stale => {
                tracing::info!(provider, reference, stored = %record.status, received = %observation.status, outcome = ?decision, "nothing to apply")
            }
        }
        if decision != Decision::Conflict {
            // Also on a duplicate: the retry of a webhook whose flag was not written.
            self.flag_attention(&record, now).await?;
        }
        let applied = decision == Decision::Apply;
        // A mismatch is new when the final that shows it applied, or when this word was
        // the first to report an under-payment (it set the time).
        let reported_now = observation.underpaid && record.underpaid_reported_at == Some(now);
        if let (true, true, Some(mismatch)) =
            (record.status.is_final(), applied || reported_now, &record.amount_mismatch)
        {
            crate::metrics::count(crate::metrics::AMOUNT_MISMATCHES, provider);
            tracing::error!(provider, reference, status = %record.status, kind = ?mismatch.kind, expected = mismatch.expected.as_deref(), reported = mismatch.reported.as_deref(), expected_currency = mismatch.expected_currency.as_deref(), reported_currency = mismatch.reported_currency.as_deref(), alarm = "amount_mismatch", "final amount differs from the one expected, could not be read, or was reported short; applied as the provider says");
        }
        let outcome = notification::to_send(applied, &record).filter(|e| self.events.enabled(e.kind));
        // Progress (opt in): on the transition, and again on a duplicate while the
        // transaction is at that status and not final (an earlier send may have been lost).
        let progress = (applied || decision == Decision::Duplicate)
            .then(|| MerchantEvent::for_update(&record))
            .flatten()
            .filter(|_| self.events.enabled(EventType::Updated));
        // An amount mismatch: with the final that showed it or the word that reported it, and
        // again when they are repeated (an earlier send may have been lost), under an id of
        // its kind.
        let told = applied || decision == Decision::Duplicate || observation.underpaid;
        let mismatch = (record.status.is_final() && told)
            .then(|| MerchantEvent::for_mismatch(&record))
            .flatten()
            .filter(|event| still_resent(event.created_at, now))
            .filter(|_| self.events.enabled(EventType::AmountMismatch));
        let refunds = self.refund_events(provider, &observation, &record, now);
        let events: Vec<MerchantEvent> = outcome.into_iter().chain(progress).chain(mismatch).chain(refunds).collect();
        let awaits_refund = record.awaits_refund();
        Ok((Outcome { reference: observation.reference, decision, enqueued: sent, awaits_refund }, events))
    }

    /// Puts `record` in the list of what needs a human, for what it needs one for and is
    /// not listed for yet (one more write, only then).
    async fn flag_attention(
        &self,
        record: &crate::model::TransactionRecord,
        now: OffsetDateTime,
    ) -> Result<(), WebhookError> {
        // A conflict, a failed refund and what a give-up or a refusal found are listed by
        // the write that keeps them; what only the record shows (an amount unlike the one
        // registered) is listed here. Not a reason to fail the write it follows: its events
        // are still sent, the amount-mismatch alarm has it, and the next write about the
        // transaction lists it.
        match self.store.flag_attention(record, now).await {
            Ok(flagged) if !flagged.is_empty() => {
                let reasons: Vec<&str> = flagged.iter().map(|r| r.as_str()).collect();
                tracing::warn!(provider = %record.provider, reference = %record.reference, reasons = ?reasons, "needs a human: listed in GET /transactions?attention=true");
            }
            Ok(_) => {}
            Err(error) => {
                tracing::error!(provider = %record.provider, reference = %record.reference, %error, "not listed among what needs a human; the next write about it lists it")
            }
        }
        Ok(())
    }

    /// The event of each refund `observation` reports at the status the record now shows
    /// for it: when first heard, and again when repeated within [`RESEND_WITHIN`] (an
    /// earlier send may have been lost; the id is the same). A status the record does not
    /// show (a `pending` heard after the refund settled, a final after another final) is
    /// no event.
    fn refund_events(
        &self,
        provider: &str,
        observation: &Observation,
        record: &crate::model::TransactionRecord,
        now: OffsetDateTime,
    ) -> Vec<MerchantEvent> {
        if !self.events.enabled(EventType::RefundUpdated) {
            return Vec::new();
        }
        let reference = observation.reference.as_str();
        let mut events = Vec::new();
        for heard in &observation.refunds {
            match record.refunds.iter().find(|r| r.id == heard.id) {
                Some(refund) if refund.status == heard.status && !still_resent(refund.updated_at, now) => {
                    tracing::info!(provider, reference, refund = %refund.id, status = refund.status.as_str(), "refund status told long ago: not sent again")
                }
                Some(refund) if refund.status == heard.status => {
                    if refund.status == crate::model::RefundStatus::Failed {
                        tracing::warn!(provider, reference, refund = %refund.id, provider_status = %refund.provider_status, "refund failed");
                    }
                    events.push(MerchantEvent::for_refund(record, refund));
                }
                Some(refund) => {
                    tracing::info!(provider, reference, refund = %refund.id, stored = refund.status.as_str(), received = heard.status.as_str(), "refund status not applied: the refund has settled")
                }
                None => tracing::warn!(provider, reference, refund = %heard.id, "refund not on the record"),
            }
        }
        events
    }

    /// Sends events [`Self::apply_deferred`] returned, 10 to a `SendMessageBatch` call;
    /// whether each was accepted, in order.
    pub async fn send_batch(&self, events: &[MerchantEvent]) -> Vec<Result<(), crate::queue::QueueError>> {
        self.queue.send_batch(events).await
    }

    /// A final status contradicting the stored final: kept on the record and sent to the
    /// merchant as a `transaction.conflict` event (again, with the same id, when the
    /// provider repeats it: an earlier send may have been lost). Returns whether sent.
    async fn conflict(
        &self,
        provider: &str,
        observation: &Observation,
        current: &crate::model::TransactionRecord,
        now: OffsetDateTime,
    ) -> Result<bool, WebhookError> {
        let reference = observation.reference.as_str();
        let (record, new) = match self.store.record_conflict(provider, observation, current.status, now).await? {
            ConflictWrite::Recorded { record, .. } => (record, true),
            ConflictWrite::Known(record) => (record, false),
        };
        if new {
            tracing::error!(provider, reference, stored = %record.status, received = %observation.status, provider_status = %observation.provider_status, outcome = "conflict", alarm = "transaction_conflict", "final status conflicts with the stored final status: kept on the record, not applied");
            crate::metrics::count(crate::metrics::CONFLICTS, provider);
        }
        self.flag_attention(&record, now).await?;
        if !self.events.enabled(EventType::Conflict) {
            return Ok(false);
        }
        let Some(conflict) = record.conflicts.iter().find(|c| c.status == observation.status) else {
            tracing::warn!(provider, reference, received = %observation.status, "conflict not kept: the record holds the most conflicts it may");
            return Ok(false);
        };
        let event = MerchantEvent::for_conflict(&record, conflict);
        self.queue.send(&event).await?;
        tracing::info!(provider, reference, event_id = %event.id, event_type = %event.kind, resend = !new, "conflict event sent to the queue (deduplicated by id)");
        Ok(true)
    }
}

/// A provider's webhook wired to the store and the queue.
#[derive(Debug)]
pub struct Webhook<P> {
    provider: FromSecret<P>,
    write_path: WritePath,
}

impl<P: Provider> Webhook<P> {
    /// The settings of the provider's webhook function: the write path, its secret (by
    /// ARN, with the rotation's grace) and its own ([`Provider::SETTINGS`]). A webhook that
    /// is a hint is two functions: the relay (`HintRelay::settings`), and the consumer,
    /// which reads these.
    pub fn settings() -> Vec<Setting> {
        let secret = Setting::optional(
            P::SECRET.arn,
            None,
            "the ARN of the provider's secret (in development, its keys as variables)",
        );
        let mut settings = WRITE_PATH.to_vec();
        settings.extend([secret, SECRET_PREVIOUS_GRACE_MINUTES]);
        settings.extend_from_slice(P::SETTINGS);
        settings
    }

    /// With the default sync policy (`STATUS_SYNC_AFTER_SECONDS` unset).
    pub fn new(provider: P, store: TransactionStore, queue: EventQueue) -> Self {
        Webhook::with_write_path(provider, WritePath::new(store, queue, SyncPolicy::default()))
    }

    /// A provider built by the caller, its secrets fixed.
    pub fn with_write_path(provider: P, write_path: WritePath) -> Self {
        Webhook::rotating(FromSecret::fixed(provider), write_path)
    }

    pub fn rotating(provider: FromSecret<P>, write_path: WritePath) -> Self {
        Webhook { provider, write_path }
    }

    /// The provider as configured by `env`, its secret read from Secrets Manager
    /// (`P::SECRET`; plain variables only as a development fallback) and kept current.
    pub async fn provider_from_env(
        env: Arc<dyn Env + Send + Sync>,
        secrets: &aws_sdk_secretsmanager::Client,
        now: OffsetDateTime,
    ) -> Result<FromSecret<P>, ConfigError> {
        let grace = crate::secrets::previous_grace(&env)?;
        FromSecret::load(P::SECRET, env, secrets, Some(grace), now, Box::new(|env| P::from_env(env))).await
    }

    /// The Lambda function at init: its AWS clients, its provider and its secret, from the
    /// environment (`TABLE_NAME`, `QUEUE_URL`, `STATUS_SYNC_AFTER_SECONDS`,
    /// `NOTIFY_EVENT_TYPES`, `SECRET_PREVIOUS_GRACE_MINUTES`, and the provider's own).
    pub(crate) async fn from_env(env: Arc<dyn Env + Send + Sync>, now: OffsetDateTime) -> Result<Self, ConfigError> {
        let aws = crate::aws::AwsClients::from_env().await;
        let write_path = WritePath::from_env(&env, &aws)?;
        Ok(Webhook::rotating(Self::provider_from_env(env, &aws.secrets, now).await?, write_path))
    }

    /// Step 1 with the current secret, then the previous one while its grace lasts; and
    /// when both fail, once more after reading the secret again early (at most once a
    /// minute), so a key the provider just rotated is accepted.
    async fn authenticate(
        &self,
        request: &Inbound,
        now: OffsetDateTime,
    ) -> Result<(Arc<P>, P::Verified), WebhookError> {
        let keys = self.provider.get(now).await;
        match authenticate_with(&keys, request, now).await {
            Err(error) if matches!(error, WebhookError::Unauthorized { .. }) => {
                match self.provider.refresh_early(now).await {
                    Some(keys) => authenticate_with(&keys, request, now).await,
                    None => Err(error),
                }
            }
            result => result,
        }
    }

    /// The whole flow for one request, without the HTTP answer.
    pub(crate) async fn process(&self, request: &Inbound, now: OffsetDateTime) -> Result<Vec<Outcome>, WebhookError> {
        check_body(request)?;
        let (provider, verified) = self.authenticate(request, now).await?;
        let observations = provider.normalize(verified)?;
        for observation in &observations {
            P::check_reference(&observation.reference)?;
        }
        let mut outcomes = Vec::with_capacity(observations.len());
        for observation in observations {
            outcomes.push(self.write_path.apply(P::NAME, P::HAS_STATUS_API, observation, now).await?);
        }
        Ok(outcomes)
    }
}

async fn authenticate_with<P: Provider>(
    keys: &SecretVersions<P>,
    request: &Inbound,
    now: OffsetDateTime,
) -> Result<(Arc<P>, P::Verified), WebhookError> {
    match keys.current.authenticate(request, now).await {
        Ok(verified) => Ok((Arc::clone(&keys.current), verified)),
        Err(error) => match (&keys.previous, matches!(error, WebhookError::Unauthorized { .. })) {
            (Some(previous), true) => {
                let verified = previous.authenticate(request, now).await?;
                tracing::info!(provider = P::NAME, "verified with the previous version of the secret (rotation grace)");
                Ok((Arc::clone(previous), verified))
            }
            (Some(_), false) | (None, _) => Err(error),
        },
    }
}

/// Size and content type, checked before any provider code sees the body.
/// Every provider sends JSON: a content type, when given, must be JSON.
pub(crate) fn check_body(request: &Inbound) -> Result<(), WebhookError> {
    if request.body.len() > MAX_BODY_BYTES {
        return Err(WebhookError::PayloadTooLarge);
    }
    if let Some(content_type) = request.header("content-type") {
        let media_type =
            std::str::from_utf8(content_type).unwrap_or_default().split(';').next().unwrap_or_default().trim();
        let media_type = media_type.to_ascii_lowercase();
        if media_type != "application/json" && !media_type.ends_with("+json") {
            return Err(WebhookError::UnsupportedMediaType);
        }
    }
    Ok(())
}

/// References become DynamoDB keys and SQS group ids: short, printable, no spaces.
pub fn check_reference(reference: &str) -> Result<(), WebhookError> {
    let valid = (1..=100).contains(&reference.len()) && reference.bytes().all(|b| b.is_ascii_graphic());
    if valid {
        Ok(())
    } else {
        Err(WebhookError::InvalidField {
            field: "reference",
            reason: "must be 1 to 100 printable ASCII characters".into(),
        })
    }
}

/// `reference` as [`check_reference`] requires and as a provider's `format` accepts
/// (`described` says what that is, in the 400's message).
pub fn reference_format(
    reference: &str,
    format: impl Fn(&str) -> bool,
    described: &'static str,
) -> Result<(), WebhookError> {
    check_reference(reference)?;
    match format(reference) {
        true => Ok(()),
        false => Err(WebhookError::InvalidField { field: "reference", reason: described.into() }),
    }
}

/// A provider as the functions that serve every provider see it (the transactions API,
/// the status sync): its name, whether the status sync can ask it, its reference format.
#[derive(Debug, Clone, Copy)]
pub struct KnownProvider {
    pub name: &'static str,
    pub has_status_api: bool,
    pub check_reference: fn(&str) -> Result<(), WebhookError>,
}

impl KnownProvider {
    pub fn new<P: Provider>() -> Self {
        KnownProvider { name: P::NAME, has_status_api: P::HAS_STATUS_API, check_reference: P::check_reference }
    }
}

/// A provider's callback tokens ([`Provider::callback_token`]) as the transactions API
/// issues them: from its secret's current version, kept current as it rotates.
pub trait CallbackTokens: Send + Sync + std::fmt::Debug {
    /// The provider's name.
    fn provider(&self) -> &'static str;
    /// The token for the payment `reference` at `now`.
    fn token<'a>(
        &'a self,
        reference: &'a str,
        now: OffsetDateTime,
    ) -> futures_util::future::BoxFuture<'a, Option<String>>;
}

impl<P: Provider> CallbackTokens for crate::secrets::FromSecret<P> {
    fn provider(&self) -> &'static str {
        P::NAME
    }

    fn token<'a>(
        &'a self,
        reference: &'a str,
        now: OffsetDateTime,
    ) -> futures_util::future::BoxFuture<'a, Option<String>> {
        Box::pin(async move { self.get(now).await.current.callback_token(reference) })
    }
}

/// Parses a JSON body once into the provider's wire type. Every provider sends an
/// object; serde would otherwise also read a struct from an array.
pub fn parse_json<T: DeserializeOwned>(body: &[u8]) -> Result<T, WebhookError> {
    if body.iter().find(|b| !b.is_ascii_whitespace()) != Some(&b'{') {
        return Err(WebhookError::MalformedJson(serde::de::Error::custom("expected a JSON object")));
    }
    serde_json::from_slice(body).map_err(WebhookError::MalformedJson)
}

/// Reads a provider's status word into its wire enum; an unknown word is `422 unsupported_value`.
pub fn parse_status<T: DeserializeOwned>(value: &str) -> Result<T, WebhookError> {
    T::deserialize(IntoDeserializer::<serde::de::value::Error>::into_deserializer(value))
        .map_err(|_| WebhookError::Unsupported { field: "status", value: value.chars().take(64).collect() })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn request(body: &[u8], content_type: Option<&str>) -> Inbound {
        let request = Inbound::new(http::Method::PUT, body);
        match content_type {
            Some(content_type) => request.with_header("content-type", content_type),
            None => request,
        }
    }

    #[test]
    fn body_limits_and_content_types() {
        assert!(check_body(&request(b"{}", None)).is_ok());
        assert!(check_body(&request(b"{}", Some("application/json; charset=utf-8"))).is_ok());
        assert!(check_body(&request(b"{}", Some("application/vnd.x+json"))).is_ok());
        assert!(matches!(check_body(&request(b"{}", Some("text/plain"))), Err(WebhookError::UnsupportedMediaType)));
        let big = vec![b' '; MAX_BODY_BYTES + 1];
        assert!(matches!(check_body(&request(&big, None)), Err(WebhookError::PayloadTooLarge)));
        assert!(check_body(&request(&big[..MAX_BODY_BYTES], None)).is_ok());
    }

    #[test]
    fn references_must_be_short_and_printable() {
        assert!(check_reference("123456789012").is_ok());
        assert!(check_reference("order-1:fiat").is_ok());
        for bad in ["", "has space", "tab\t", "ünicode", &"x".repeat(101)] {
            assert!(check_reference(bad).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn malformed_json_error_does_not_echo_the_body() {
        #[derive(Debug, serde::Deserialize)]
        #[allow(dead_code)]
        struct Shape {
            count: u64,
        }
        let error = parse_json::<Shape>(br#"{"count": "s3cret-value"}"#).expect_err("wrong type");
        assert_eq!(error.code(), "malformed_json");
        assert!(!error.public_message().contains("s3cret"), "{}", error.public_message());
        assert!(error.public_message().contains("line 1"));
    }

    #[test]
    fn only_objects_are_accepted() {
        #[derive(Debug, serde::Deserialize)]
        #[allow(dead_code)]
        struct Shape {
            status: String,
        }
        assert!(parse_json::<Shape>(br#" {"status":"x"}"#).is_ok());
        for body in [&br#"["x"]"#[..], b"", b"  ", b"null", b"\"x\""] {
            let error = parse_json::<Shape>(body).expect_err("not an object");
            assert_eq!(error.code(), "malformed_json");
        }
    }

    #[derive(Debug, serde::Deserialize, PartialEq)]
    #[serde(rename_all = "lowercase")]
    enum Word {
        Paid,
    }

    #[test]
    fn status_words_parse_or_are_unsupported() {
        assert_eq!(parse_status::<Word>("paid").ok(), Some(Word::Paid));
        let error = parse_status::<Word>("PAID").expect_err("case matters");
        assert_eq!(error.status(), StatusCode::UNPROCESSABLE_ENTITY);
    }
}
