//! The notifier: delivers each terminal event from the FIFO queue to the merchant's
//! backend, signed per the Standard Webhooks specification, and records the delivery.
//!
//! Per message, in stages (`Notifier::process`): decode, deliver, then exactly one of
//! delivered, refused or failed, each returning the message's `Disposition`.
//!
//! A 2xx clears the transaction's notification-pending marker (a no-op if
//! already cleared). Anything else is a batch item failure, so only that message comes
//! back: its visibility is set by a backoff on its receive count (or the merchant's
//! `Retry-After`, within bounds), and after the queue's `maxReceiveCount` SQS moves it to
//! the dead-letter queue. A 410 is a permanent refusal: logged, and the message goes to
//! the dead-letter queue at once.

use std::sync::Arc;
use std::time::Duration;

use aws_lambda_events::sqs::{BatchItemFailure, SqsBatchResponse, SqsEvent, SqsMessage};
use futures_util::future::join_all;
use shared::model::{MerchantEvent, NotificationOutcome};
use shared::runtime::config::{ConfigError, Env, Secret, Setting};
use shared::runtime::{FromSecret, SecretSpec};
use shared::storage::{Attempt, AttemptKind, EventLog, TransactionStore, MAX_RESPONSE_BYTES};
use time::OffsetDateTime;

pub mod health;

mod https;
pub mod replay;

/// Limit for one delivery to the merchant.
pub const DELIVERY_TIMEOUT: Duration = Duration::from_secs(10);
/// Visibility delay after the 1st, 2nd, … failed delivery; the last repeats.
pub const BACKOFF: [Duration; 5] = [
    Duration::from_secs(5),
    Duration::from_secs(30),
    Duration::from_secs(2 * 60),
    Duration::from_secs(10 * 60),
    Duration::from_secs(30 * 60),
];
/// A merchant's `Retry-After` is honoured between these bounds.
pub const RETRY_AFTER_MIN: Duration = Duration::from_secs(1);
pub const RETRY_AFTER_MAX: Duration = Duration::from_secs(60 * 60);

/// Configuration from the environment.
#[derive(Debug, Clone)]
pub struct NotifierConfig {
    pub notify_url: String,
    pub table_name: String,
    pub queue_url: String,
    pub dead_letter_queue_url: String,
    /// How long the event log keeps an event and its attempts (`EVENT_RETENTION_DAYS`).
    pub event_retention: Duration,
    /// After how long of every attempt failing the endpoint counts as failing
    /// (`NOTIFY_FAILING_ALERT_MINUTES`).
    pub failing_alert: Duration,
}

/// `EVENT_RETENTION_DAYS` when unset.
pub const EVENT_RETENTION_DAYS: u64 = 30;
/// `NOTIFY_FAILING_ALERT_MINUTES` when unset.
pub const NOTIFY_FAILING_ALERT_MINUTES: u64 = 30;

const NOTIFY_URL: Setting = Setting::required("NOTIFY_URL", "the merchant's endpoint");
const DEAD_LETTER_QUEUE_URL: Setting =
    Setting::required("DEAD_LETTER_QUEUE_URL", "where a 410-refused event goes (set by the template)");
/// Accepted up to a year of days, kept at most 3,650 (ten years).
const RETENTION: Setting = Setting::positive(
    "EVENT_RETENTION_DAYS",
    EVENT_RETENTION_DAYS,
    "days the event log keeps each event and its attempts",
);
const FAILING_ALERT: Setting = Setting::positive(
    "NOTIFY_FAILING_ALERT_MINUTES",
    NOTIFY_FAILING_ALERT_MINUTES,
    "minutes of every delivery failing before MerchantEndpointFailing counts",
);

/// The variables the function reads.
pub const SETTINGS: [Setting; 7] = [
    NOTIFY_URL,
    shared::runtime::config::TABLE_NAME,
    shared::runtime::config::QUEUE_URL,
    DEAD_LETTER_QUEUE_URL,
    RETENTION,
    FAILING_ALERT,
    Setting::optional(SECRET.arn, None, "the ARN of the merchant's signing secret (in development, NOTIFY_SECRET)"),
];

impl NotifierConfig {
    /// Reads [`SETTINGS`] but the secret's.
    pub fn from_env(env: &impl Env) -> Result<Self, ConfigError> {
        let days = RETENTION.number_from(env)?.min(3650);
        Ok(NotifierConfig {
            notify_url: env.required(NOTIFY_URL.name)?,
            table_name: env.required(shared::runtime::config::TABLE_NAME.name)?,
            queue_url: env.required(shared::runtime::config::QUEUE_URL.name)?,
            dead_letter_queue_url: env.required(DEAD_LETTER_QUEUE_URL.name)?,
            event_retention: Duration::from_secs(days * 24 * 60 * 60),
            failing_alert: Duration::from_secs(FAILING_ALERT.number_from(env)? * 60),
        })
    }
}

/// What the merchant's endpoint did with one attempt, as the event log keeps it.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Answer {
    pub status: Option<u16>,
    pub error: Option<String>,
    pub response: Option<String>,
    pub duration: Duration,
}

/// The notify secret: `NOTIFY_SECRET` in the secret `NOTIFY_SECRET_ARN` names (the stack
/// generates it). `whsec_<base64>` (the prefix may be left out, as in the generated
/// value), or several separated by spaces while the merchant rotates: every delivery is
/// signed with each.
pub const SECRET: SecretSpec = SecretSpec { arn: "NOTIFY_SECRET_ARN", keys: &["NOTIFY_SECRET"] };

/// The signers, one per secret of `NOTIFY_SECRET`, in its order; kept current as it rotates.
pub type Signers = FromSecret<Vec<standardwebhooks::Webhook>>;

/// Signers for `secret`, never read again (tests, benchmarks).
pub fn fixed_signers(secret: &str) -> Result<Signers, ConfigError> {
    signers(&Secret::new(secret)).map(FromSecret::fixed)
}

/// The signers of [`SECRET`] as `env` configures it, read again every 5 minutes.
pub async fn signers_from_env(
    env: Arc<dyn Env + Send + Sync>,
    secrets: &shared::runtime::SecretsClient,
    now: OffsetDateTime,
) -> Result<Signers, ConfigError> {
    FromSecret::load(SECRET, env, secrets, None, now, Box::new(|env| signers(&env.secret("NOTIFY_SECRET")?))).await
}

/// One or more `whsec_<base64>` secrets separated by spaces, at most 10.
fn signers(secret: &Secret) -> Result<Vec<standardwebhooks::Webhook>, ConfigError> {
    let invalid = |reason: &str| ConfigError::Invalid { name: "NOTIFY_SECRET", reason: reason.into() };
    let secrets: Vec<&str> = secret.expose().split_whitespace().collect();
    if secrets.is_empty() || secrets.len() > 10 {
        return Err(invalid("must be 1 to 10 whsec_<base64> secrets separated by spaces"));
    }
    secrets
        .into_iter()
        .map(|one| {
            let key = one.strip_prefix("whsec_").unwrap_or(one);
            let decoded = base64::Engine::decode(&base64::engine::general_purpose::STANDARD, key);
            match decoded.map(|bytes| bytes.len()) {
                Ok(24..=64) => standardwebhooks::Webhook::new(one)
                    .map_err(|_| invalid("each secret must be whsec_<base64> of 24 to 64 bytes")),
                Ok(_) | Err(_) => Err(invalid("each secret must be whsec_<base64> of 24 to 64 bytes")),
            }
        })
        .collect()
}

/// What one delivery attempt came to.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Delivery {
    Delivered {
        status: u16,
    },
    /// Worth retrying: a non-2xx answer, a timeout or a connection error.
    Failed {
        reason: String,
        retry_after: Option<Duration>,
    },
    /// 410 Gone: the merchant refuses this event for good.
    Refused,
}

/// What happens to a message once its stage is done.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Disposition {
    /// Done with: deleted from the queue.
    Delete,
    /// Reported as failed: SQS delivers it again after the queue's visibility timeout, and
    /// moves it to the dead-letter queue after `maxReceiveCount`.
    Keep,
    /// Reported as failed, and delivered again after this delay.
    RetryAfter(Duration),
}

/// Stage one: the message's terminal event and its body, sent to the merchant as it is.
/// A message that is not one is kept failing until SQS moves it to the dead-letter
/// queue, where it can be read.
pub fn decode(message: &SqsMessage) -> Result<(MerchantEvent, &str), Disposition> {
    let body = message.body.as_deref().unwrap_or_default();
    serde_json::from_str(body).map(|event| (event, body)).map_err(|error| {
        let message_id = message.message_id.as_deref().unwrap_or_default();
        tracing::error!(message_id, error = %error, "queue message is not a terminal event");
        Disposition::Keep
    })
}

pub struct Notifier {
    http: reqwest::Client,
    url: String,
    signers: Signers,
    store: TransactionStore,
    events: EventLog,
    health: health::Health,
    sqs: aws_sdk_sqs::Client,
    queue_url: String,
    dead_letter_queue_url: String,
    backoff: Vec<Duration>,
}

impl std::fmt::Debug for Notifier {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Notifier")
            .field("url", &self.url)
            .field("signers", &self.signers)
            .field("queue_url", &self.queue_url)
            .finish_non_exhaustive()
    }
}

impl Notifier {
    pub fn new(
        config: NotifierConfig,
        signers: Signers,
        store: TransactionStore,
        sqs: aws_sdk_sqs::Client,
        timeout: Duration,
    ) -> Result<Self, ConfigError> {
        let http = https::merchant_client_builder()
            .timeout(timeout)
            .connect_timeout(timeout.min(Duration::from_secs(3)))
            .build()
            .map_err(|e| ConfigError::Invalid { name: "NOTIFY_URL", reason: format!("HTTP client: {e}") })?;
        Ok(Notifier {
            http,
            url: config.notify_url,
            signers,
            events: store.event_log(config.event_retention),
            health: {
                let (client, table) = store.parts();
                health::Health::new(client, table, config.failing_alert)
            },
            store,
            sqs,
            queue_url: config.queue_url,
            dead_letter_queue_url: config.dead_letter_queue_url,
            backoff: BACKOFF.to_vec(),
        })
    }

    /// With AWS clients from the Lambda environment, and the notify secret read at init.
    pub async fn from_env(env: Arc<dyn Env + Send + Sync>, now: OffsetDateTime) -> Result<Self, ConfigError> {
        let config = NotifierConfig::from_env(&env)?;
        let aws = shared::runtime::AwsClients::from_env().await;
        let signers = signers_from_env(env, &aws.secrets, now).await?;
        let store = TransactionStore::new(aws.dynamodb, &config.table_name);
        Notifier::new(config, signers, store, aws.sqs, DELIVERY_TIMEOUT)
    }

    /// Replaces the backoff schedule (tests and local runs use short ones).
    pub fn with_backoff(mut self, backoff: Vec<Duration>) -> Self {
        if !backoff.is_empty() {
            self.backoff = backoff;
        }
        self
    }

    pub fn queue_url(&self) -> &str {
        &self.queue_url
    }

    /// Handles one SQS batch; reports exactly the failed messages. FIFO order holds: the
    /// messages of one group (one transaction) are delivered one after another, in the
    /// batch's order, and after a failure the rest of that group is reported failed too,
    /// untried; different groups are delivered at once.
    pub async fn handle_batch(&self, event: SqsEvent, now: OffsetDateTime) -> SqsBatchResponse {
        let groups = in_groups(&event.records);
        let failed = join_all(groups.iter().map(|group| self.deliver_group(group, now))).await;
        let mut response = SqsBatchResponse::default();
        response.batch_item_failures = failed
            .into_iter()
            .flatten()
            .map(|message| {
                let mut failure = BatchItemFailure::default();
                failure.item_identifier = message.message_id.clone().unwrap_or_default();
                failure
            })
            .collect();
        response
    }

    /// One group's messages in order, up to the first that is not done with; returns it
    /// and every message after it, which wait behind it: all come back together after its
    /// retry delay (one batch call sets it on them all).
    async fn deliver_group<'a>(&self, group: &[&'a SqsMessage], now: OffsetDateTime) -> Vec<&'a SqsMessage> {
        for (index, message) in group.iter().enumerate() {
            let disposition = self.process(message, now).await;
            if disposition == Disposition::Delete {
                continue;
            }
            let held = group.get(index..).unwrap_or_default();
            if let Disposition::RetryAfter(delay) = disposition {
                self.delay(held, delay).await;
            }
            if held.len() > 1 {
                let message_id = message.message_id.as_deref().unwrap_or_default();
                tracing::info!(
                    message_id,
                    held = held.len() - 1,
                    "later messages of the same transaction wait behind a failed one"
                );
            }
            return held.to_vec();
        }
        Vec::new()
    }

    /// One message, in stages: decode, deliver, then exactly one of delivered, refused or
    /// failed, each saying what happens to the message.
    async fn process(&self, message: &SqsMessage, now: OffsetDateTime) -> Disposition {
        match decode(message) {
            Err(disposition) => disposition,
            Ok((event, _)) if self.overtaken(&event).await => Disposition::Delete,
            Ok((event, body)) => {
                let (delivery, answer) = self.deliver_recorded(&event.id, body, now).await;
                if !self.record_attempt(message, &event, body, &delivery, answer, now).await {
                    // An event leaves the queue only once the event log holds it (the events
                    // API lists it, and recovery finds it): tried again, whatever the answer.
                    let reason = "the attempt could not be recorded in the event log";
                    return self.on_failed(message, &event, reason, None);
                }
                match delivery {
                    Delivery::Delivered { status } => self.on_delivered(&event, status, now).await,
                    Delivery::Refused => self.on_refused(message, &event, now).await,
                    Delivery::Failed { reason, retry_after } => {
                        self.hand_to_queue(&event).await;
                        self.on_failed(message, &event, &reason, retry_after)
                    }
                }
            }
        }
    }

    /// Keeps the attempt in the event log (storing the event the first time); returns
    /// whether it did. A failure is logged, and the message is tried again: found by
    /// `scripts/chaos`, where a delivered event was missing from `GET /events`.
    async fn record_attempt(
        &self,
        message: &SqsMessage,
        event: &MerchantEvent,
        body: &str,
        delivery: &Delivery,
        answer: Answer,
        now: OffsetDateTime,
    ) -> bool {
        let kind =
            message.message_attributes.get(shared::storage::KIND_ATTRIBUTE).and_then(|a| a.string_value.as_deref());
        let attempt = Attempt {
            at: now,
            status: answer.status,
            error: answer.error,
            duration_ms: answer.duration.as_millis().min(u128::from(u64::MAX)) as u64,
            response: answer.response,
            kind: AttemptKind::from_attribute(kind),
        };
        let delivered = matches!(delivery, Delivery::Delivered { .. });
        let recorded = match self.events.record_attempt(event, body, &attempt, delivered).await {
            Ok(_) => true,
            Err(error) => {
                tracing::error!(event_id = %event.id, error = %error, "delivery attempt not recorded in the event log; the event will be delivered again");
                false
            }
        };
        let health = match delivery {
            Delivery::Delivered { .. } => self.health.success(now).await.map(|()| None),
            Delivery::Failed { .. } => self.health.failure(now).await,
            Delivery::Refused => Ok(None),
        };
        match health {
            Ok(Some(failing)) => {
                tracing::error!(
                    failing_minutes = failing.as_secs() / 60,
                    alarm = "merchant_endpoint_failing",
                    "every delivery to the merchant has failed for too long"
                );
                shared::runtime::metrics::count(health::FAILING_METRIC, &event.data.provider);
            }
            Ok(None) => {}
            Err(error) => tracing::warn!(error = %error, "delivery health not recorded"),
        }
        recorded
    }

    /// A progress event (`transaction.updated`) is dropped once the merchant has the
    /// transaction's outcome (its delivery, or its refusal for good, is recorded): a late
    /// resend. Never merely because the record is final: under a backlog the outcome is
    /// written long before the notifier reads the progress events queued ahead of it in
    /// the transaction's FIFO group, and those are delivered, in order.
    async fn overtaken(&self, event: &MerchantEvent) -> bool {
        if event.kind != shared::model::EventType::Updated {
            return false;
        }
        let (provider, reference) = (event.data.provider.as_str(), event.data.reference.as_str());
        match self.store.get(provider, reference).await {
            Ok(Some(record)) if record.notified_at.is_some() || record.notification_refused_at.is_some() => {
                tracing::info!(provider, reference, event_id = %event.id, "progress event after the merchant had the outcome: dropped");
                true
            }
            Ok(_) => false,
            // Unknown: deliver it; order within the group still holds.
            Err(error) => {
                tracing::warn!(provider, reference, error = %error, "could not check the transaction before a progress event");
                false
            }
        }
    }

    /// Delivered: the transaction is no longer pending notification (a conflict event
    /// is no outcome: nothing to record).
    async fn on_delivered(&self, event: &MerchantEvent, status: u16, now: OffsetDateTime) -> Disposition {
        let (provider, reference) = (event.data.provider.as_str(), event.data.reference.as_str());
        let Some(final_status) = event.outcome() else {
            tracing::info!(provider, reference, event_id = %event.id, event_type = %event.kind, status, "event delivered");
            return Disposition::Delete;
        };
        let outcome = NotificationOutcome::Delivered;
        match self.store.mark_notification(provider, reference, final_status, outcome, now).await {
            Ok(cleared) => {
                tracing::info!(provider, reference, event_id = %event.id, status, cleared, "terminal event delivered");
                Disposition::Delete
            }
            Err(error) => {
                // Delivered but not recorded: redeliver (same id; the merchant dedupes).
                tracing::error!(provider, reference, event_id = %event.id, error = %error, "delivered, but recording it failed");
                Disposition::Keep
            }
        }
    }

    /// Refused for good (410): to the dead-letter queue at once, and no longer pending, so
    /// that the reconciler does not send it again every 5 minutes.
    async fn on_refused(&self, message: &SqsMessage, event: &MerchantEvent, now: OffsetDateTime) -> Disposition {
        let (provider, reference) = (event.data.provider.as_str(), event.data.reference.as_str());
        tracing::error!(provider, reference, event_id = %event.id, "merchant refused the event permanently (410); moving it to the dead-letter queue");
        if !self.to_dead_letter_queue(message, event).await {
            return Disposition::Keep;
        }
        let Some(final_status) = event.outcome() else {
            return Disposition::Delete;
        };
        let outcome = NotificationOutcome::Refused;
        if let Err(error) = self.store.mark_notification(provider, reference, final_status, outcome, now).await {
            // It is safely in the dead-letter queue; the reconciler may send it once more.
            tracing::error!(event_id = %event.id, error = %error, "refused event moved, but recording it failed");
        }
        Disposition::Delete
    }

    /// A failed delivery of an outcome: the record's marker says the event is in the
    /// queue's hands, so the reconciler (which looks for events that never reached the
    /// queue) no longer reads it: a merchant outage does not make it re-send a backlog.
    /// Conditional on the marker as the webhook set it, so every later failure changes
    /// nothing (whatever the receive count: a message held behind a failed one of its
    /// group is first tried late). A failure here is harmless: the reconciler may send the
    /// event once more.
    async fn hand_to_queue(&self, event: &MerchantEvent) {
        let Some(status) = event.outcome() else {
            return;
        };
        let (provider, reference) = (event.data.provider.as_str(), event.data.reference.as_str());
        if let Err(error) = self.store.mark_queued(provider, reference, status).await {
            tracing::warn!(provider, reference, error = %error, "could not mark the notification as in the queue's hands");
        }
    }

    /// Failed (worth retrying): back on the queue after the backoff.
    fn on_failed(
        &self,
        message: &SqsMessage,
        event: &MerchantEvent,
        reason: &str,
        retry_after: Option<Duration>,
    ) -> Disposition {
        let receive_count =
            message.attributes.get("ApproximateReceiveCount").and_then(|c| c.parse::<usize>().ok()).unwrap_or(1);
        let delay = self.retry_delay(receive_count, retry_after, &event.id);
        let (provider, reference) = (event.data.provider.as_str(), event.data.reference.as_str());
        tracing::warn!(provider, reference, event_id = %event.id, reason, receive_count, retry_in_seconds = delay.as_secs(), "delivery failed; will retry");
        Disposition::RetryAfter(delay)
    }

    /// Makes `messages` (at most a batch, 10) visible again after `delay`, in one call. A
    /// failure leaves the queue's visibility timeout in force: logged, nothing lost.
    async fn delay(&self, messages: &[&SqsMessage], delay: Duration) {
        let visibility = i32::try_from(delay.as_secs()).unwrap_or(i32::MAX);
        let entries: Vec<_> = messages
            .iter()
            .enumerate()
            .filter_map(|(index, message)| {
                let handle = message.receipt_handle.as_deref()?;
                aws_sdk_sqs::types::ChangeMessageVisibilityBatchRequestEntry::builder()
                    .id(index.to_string())
                    .receipt_handle(handle)
                    .visibility_timeout(visibility)
                    .build()
                    .ok()
            })
            .collect();
        if entries.is_empty() {
            return;
        }
        let changed = self
            .sqs
            .change_message_visibility_batch()
            .queue_url(&self.queue_url)
            .set_entries(Some(entries))
            .send()
            .await;
        let failed = match changed {
            Ok(output) => output.failed.len(),
            Err(error) => {
                tracing::warn!(error = %error, "could not set the retry delay; the queue's visibility timeout applies");
                return;
            }
        };
        if failed > 0 {
            tracing::warn!(
                failed,
                "could not set the retry delay of some messages; the queue's visibility timeout applies"
            );
        }
    }

    /// The delay before the next attempt: the merchant's `Retry-After` within bounds, or
    /// the backoff for this receive count plus a jitter of up to a fifth of it, so that
    /// events that failed together (a merchant outage) are not all retried together.
    pub fn retry_delay(&self, receive_count: usize, retry_after: Option<Duration>, event_id: &str) -> Duration {
        match retry_after {
            Some(after) => after.clamp(RETRY_AFTER_MIN, RETRY_AFTER_MAX),
            None => {
                // Past the last rung, the last; no rungs at all is no delay of ours.
                let rung = self.backoff.get(receive_count.saturating_sub(1)).or(self.backoff.last());
                let base = rung.copied().unwrap_or_default();
                base + jitter(base / 5, event_id, receive_count)
            }
        }
    }

    /// The `webhook-signature` value for `body`: `v1,<base64 HMAC-SHA256>` for each secret,
    /// separated by spaces (Standard Webhooks), so that a merchant rotating its secret
    /// verifies with either.
    /// The secret is read again first when its cache expired.
    pub async fn sign(&self, event_id: &str, timestamp: i64, body: &str) -> Option<String> {
        let now = OffsetDateTime::from_unix_timestamp(timestamp).ok()?;
        let signers = self.signers.get(now).await.current;
        let signatures: Result<Vec<String>, _> =
            signers.iter().map(|signer| signer.sign(event_id, timestamp, body.as_bytes())).collect();
        signatures.ok().map(|list| list.join(" "))
    }

    /// POSTs `body` to the merchant with the Standard Webhooks headers.
    pub async fn deliver(&self, event_id: &str, body: &str, now: OffsetDateTime) -> Delivery {
        self.deliver_recorded(event_id, body, now).await.0
    }

    /// [`Self::deliver`], and what the endpoint answered, for the event log.
    pub async fn deliver_recorded(&self, event_id: &str, body: &str, now: OffsetDateTime) -> (Delivery, Answer) {
        let started = std::time::Instant::now();
        let timestamp = now.unix_timestamp();
        let signature = match self.sign(event_id, timestamp, body).await {
            Some(signature) => signature,
            None => {
                let answer = Answer { error: Some("body is not UTF-8".into()), ..Answer::default() };
                return (Delivery::Failed { reason: "body is not UTF-8".into(), retry_after: None }, answer);
            }
        };
        let response = self
            .http
            .post(&self.url)
            .header("content-type", "application/json")
            .header(standardwebhooks::HEADER_WEBHOOK_ID, event_id)
            .header(standardwebhooks::HEADER_WEBHOOK_TIMESTAMP, timestamp.to_string())
            .header(standardwebhooks::HEADER_WEBHOOK_SIGNATURE, signature)
            .body(body.to_owned())
            .send()
            .await;
        let response = match response {
            Ok(response) => response,
            Err(error) => {
                let reason = if error.is_timeout() {
                    "timed out"
                } else if error.is_connect() {
                    "connection failed"
                } else {
                    "request failed"
                };
                let answer =
                    Answer { error: Some(reason.to_owned()), duration: started.elapsed(), ..Answer::default() };
                return (Delivery::Failed { reason: reason.into(), retry_after: None }, answer);
            }
        };
        let status = response.status().as_u16();
        let delivery = match status {
            200..=299 => Delivery::Delivered { status },
            410 => Delivery::Refused,
            _ => Delivery::Failed {
                reason: format!("merchant answered {status}"),
                retry_after: retry_after(response.headers(), now),
            },
        };
        let response_start = first_bytes(response).await;
        (delivery, Answer { status: Some(status), error: None, response: response_start, duration: started.elapsed() })
    }

    /// Sends the message to the dead-letter queue (same group, same event id); `true` if it
    /// got there, so it may be deleted from the main queue.
    async fn to_dead_letter_queue(&self, message: &SqsMessage, event: &MerchantEvent) -> bool {
        let group = shared::model::transaction_key(&event.data.provider, &event.data.reference);
        let sent = self
            .sqs
            .send_message()
            .queue_url(&self.dead_letter_queue_url)
            .message_body(message.body.clone().unwrap_or_default())
            .message_group_id(group)
            .message_deduplication_id(format!("{}-refused", event.id))
            .send()
            .await;
        match sent {
            Ok(_) => true,
            Err(error) => {
                tracing::error!(event_id = %event.id, error = %error, "could not move the refused event to the dead-letter queue");
                false
            }
        }
    }
}

/// The batch's messages by FIFO group (`MessageGroupId`), each group in the batch's
/// order, the groups in the order they first appear. A message without a group (not from
/// a FIFO queue) is a group of its own.
fn in_groups(messages: &[SqsMessage]) -> Vec<Vec<&SqsMessage>> {
    let mut groups: Vec<(Option<&str>, Vec<&SqsMessage>)> = Vec::new();
    for message in messages {
        let group = message.attributes.get("MessageGroupId").map(String::as_str);
        match groups.iter_mut().find(|(id, _)| group.is_some() && *id == group) {
            Some((_, members)) => members.push(message),
            None => groups.push((group, vec![message])),
        }
    }
    groups.into_iter().map(|(_, members)| members).collect()
}

/// A part of `max` that depends only on the event and the attempt: the same inputs give
/// the same delay (tests need no randomness), different events spread out.
fn jitter(max: Duration, event_id: &str, receive_count: usize) -> Duration {
    use std::hash::{Hash, Hasher};
    let mut hasher = std::collections::hash_map::DefaultHasher::new();
    (event_id, receive_count).hash(&mut hasher);
    let per_mille = u32::try_from(hasher.finish() % 1001).unwrap_or(0);
    max * per_mille / 1000
}

/// `Retry-After` as seconds or an HTTP date.
fn retry_after(headers: &reqwest::header::HeaderMap, now: OffsetDateTime) -> Option<Duration> {
    let value = headers.get(reqwest::header::RETRY_AFTER)?.to_str().ok()?.trim();
    if let Ok(seconds) = value.parse::<u64>() {
        return Some(Duration::from_secs(seconds));
    }
    let at = httpdate::parse_http_date(value).ok()?;
    let now = std::time::UNIX_EPOCH + Duration::from_secs(u64::try_from(now.unix_timestamp()).ok()?);
    Some(at.duration_since(now).unwrap_or_default())
}

/// At most the first [`MAX_RESPONSE_BYTES`] of a response body (cut on a character
/// boundary), read for at most a second; `None` when empty. Never logged.
async fn first_bytes(mut response: reqwest::Response) -> Option<String> {
    let mut bytes = Vec::new();
    let read = async {
        while bytes.len() < MAX_RESPONSE_BYTES {
            match response.chunk().await {
                Ok(Some(chunk)) => bytes.extend_from_slice(&chunk),
                Ok(None) | Err(_) => break,
            }
        }
    };
    let _ = tokio::time::timeout(Duration::from_secs(1), read).await;
    bytes.truncate(MAX_RESPONSE_BYTES);
    let mut text = String::from_utf8_lossy(&bytes).into_owned();
    while text.len() > MAX_RESPONSE_BYTES {
        text.pop();
    }
    (!text.is_empty()).then_some(text)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn notifier() -> Notifier {
        let config =
            aws_sdk_sqs::Config::builder().behavior_version(aws_sdk_sqs::config::BehaviorVersion::latest()).build();
        let dynamo = aws_sdk_dynamodb::Config::builder()
            .behavior_version(aws_sdk_dynamodb::config::BehaviorVersion::latest())
            .build();
        let config_values = NotifierConfig {
            notify_url: "http://127.0.0.1:9/merchant".into(),
            table_name: "t".into(),
            queue_url: "q".into(),
            dead_letter_queue_url: "d".into(),
            event_retention: Duration::from_secs(86_400),
            failing_alert: Duration::from_secs(30 * 60),
        };
        let store = TransactionStore::new(aws_sdk_dynamodb::Client::from_conf(dynamo), "t");
        let signers = fixed_signers("whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw").expect("signers");
        Notifier::new(config_values, signers, store, aws_sdk_sqs::Client::from_conf(config), DELIVERY_TIMEOUT)
            .expect("notifier")
    }

    #[test]
    fn backoff_follows_the_receive_count_and_retry_after_is_bounded() {
        let n = notifier();
        let base = [5, 30, 120, 600, 1800, 1800, 1800].map(Duration::from_secs);
        for (count, base) in (1..=7).zip(base) {
            for event in ["evt_a", "evt_b", "evt_c"] {
                let delay = n.retry_delay(count, None, event);
                assert!(delay >= base && delay <= base + base / 5, "{event} #{count}: {delay:?} for {base:?}");
                assert_eq!(delay, n.retry_delay(count, None, event), "the same inputs, the same delay");
            }
        }
        let spread: std::collections::BTreeSet<Duration> =
            (0..20).map(|i| n.retry_delay(4, None, &format!("evt_{i}"))).collect();
        assert!(spread.len() > 10, "events failing together retry at different times: {spread:?}");
        assert_eq!(n.retry_delay(1, Some(Duration::from_secs(90)), "evt_a"), Duration::from_secs(90));
        assert_eq!(n.retry_delay(1, Some(Duration::ZERO), "evt_a"), RETRY_AFTER_MIN);
        assert_eq!(n.retry_delay(1, Some(Duration::from_secs(86_400)), "evt_a"), RETRY_AFTER_MAX);
    }

    #[test]
    fn a_message_that_is_not_a_terminal_event_is_kept_failing_toward_the_dead_letter_queue() {
        let mut message = SqsMessage::default();
        message.body = Some(r#"{"id": "evt_x"}"#.into());
        assert_eq!(decode(&message).err(), Some(Disposition::Keep));
        let n = notifier();
        let event: MerchantEvent = serde_json::from_value(serde_json::json!({
            "id": "evt_a", "type": "transaction.completed", "created_at": "2026-11-22T10:00:00Z",
            "data": {"provider": "azqr", "reference": "100000000006", "status": "completed",
                     "provider_status": "completed", "history": [], "first_seen_at": "2026-11-22T10:00:00Z",
                     "updated_at": "2026-11-22T10:00:00Z"}
        }))
        .expect("event");
        message.body = Some(serde_json::to_string(&event).expect("JSON"));
        assert_eq!(decode(&message).ok().map(|(decoded, _)| decoded), Some(event.clone()));
        message.attributes.insert("ApproximateReceiveCount".into(), "2".into());
        assert_eq!(
            n.on_failed(&message, &event, "merchant answered 500", None),
            Disposition::RetryAfter(n.retry_delay(2, None, "evt_a"))
        );
    }

    #[test]
    fn retry_after_in_seconds_or_as_a_date() {
        let now = OffsetDateTime::from_unix_timestamp(1_795_000_000).expect("time");
        let mut headers = reqwest::header::HeaderMap::new();
        headers.insert("retry-after", "120".parse().expect("header"));
        assert_eq!(retry_after(&headers, now), Some(Duration::from_secs(120)));
        let later = httpdate::fmt_http_date(std::time::UNIX_EPOCH + Duration::from_secs(1_795_000_300));
        headers.insert("retry-after", later.parse().expect("header"));
        assert_eq!(retry_after(&headers, now), Some(Duration::from_secs(300)));
        headers.insert("retry-after", "soon".parse().expect("header"));
        assert_eq!(retry_after(&headers, now), None);
    }

    #[test]
    fn the_secret_must_be_a_whsec_value_and_is_never_printed() {
        let n = notifier();
        assert!(!format!("{n:?}").contains("MfKQ9r8G"));
        let error = fixed_signers("plain-secret").expect_err("not whsec");
        assert!(matches!(error, ConfigError::Invalid { name: "NOTIFY_SECRET", .. }));
        for bad in ["whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw plain", "   ", "whsec_!!!", "whsec_c2hvcnQ="] {
            assert!(signers(&Secret::new(bad)).is_err(), "{bad:?}");
        }
        // The stack's generated value: 48 letters and digits, without the prefix.
        let generated = "Q3kT9xWm2ZpL7vRb4NcY8sHd1FgJ6uAe5KtE0oViXyMnBqUw";
        assert_eq!(signers(&Secret::new(generated)).map(|s| s.len()).ok(), Some(1));
    }

    /// Rotation: with two secrets, every delivery carries two signatures, and a merchant
    /// holding either secret verifies it with the standardwebhooks crate.
    #[tokio::test]
    async fn with_two_secrets_each_signature_verifies_on_its_own() {
        let (old, new) = ("whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw", "whsec_c2Vjb25kLXNlY3JldC1mb3Itcm90YXRpb24=");
        let mut n = notifier();
        n.signers = fixed_signers(&format!("{old}  {new}")).expect("two secrets");
        let body = r#"{"id":"evt_a","type":"transaction.completed"}"#;
        let timestamp = OffsetDateTime::now_utc().unix_timestamp();
        let signature = n.sign("evt_a", timestamp, body).await.expect("signed");
        assert_eq!(signature.split(' ').filter(|s| s.starts_with("v1,")).count(), 2, "{signature}");
        let mut headers = http::HeaderMap::new();
        headers.insert("webhook-id", "evt_a".parse().expect("header"));
        headers.insert("webhook-timestamp", timestamp.to_string().parse().expect("header"));
        headers.insert("webhook-signature", signature.parse().expect("header"));
        for secret in [old, new] {
            let merchant = standardwebhooks::Webhook::new(secret).expect("secret");
            assert!(merchant.verify(body.as_bytes(), &headers).is_ok(), "verifies with {}", &secret[..10]);
        }
        let stranger = standardwebhooks::Webhook::new("whsec_b3RoZXItc2VjcmV0LW5vdC1pbi11c2U=").expect("secret");
        assert!(stranger.verify(body.as_bytes(), &headers).is_err());
    }
}
