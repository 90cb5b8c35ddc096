//! Webhooks that are only hints (Pagstar's carries no signature; what it names is asked of
//! the provider). Their webhook function checks a hint's shape, queues it on a standard
//! SQS queue (`HINT_QUEUE_URL`) and answers at once; the queue's consumer, a function the
//! queue triggers, takes the pipeline's steps, the call to the provider first.
//!
//! Why not ask the provider while the webhook waits: each webhook would hold a Lambda
//! instance for the provider's latency (a slow provider would take the account's
//! concurrency from every provider's webhooks), and an unsigned request could make us
//! call the provider at whatever rate it is sent. Behind the queue the calls are bounded
//! by the trigger's `MaximumConcurrency`, and a failed one is retried by SQS
//! (`maxReceiveCount`, then the hint dead-letter queue) rather than by the provider.

use std::marker::PhantomData;

use lambda_http::{Body, Response};
use time::OffsetDateTime;

use crate::config::{ConfigError, Env, Setting};
use crate::error::WebhookError;
use crate::inbound::Inbound;
use crate::queue::QueueError;
use crate::webhook::{check_body, HintCheck, Provider, Webhook};

/// The standard SQS queue of hints.
#[derive(Debug, Clone)]
pub struct HintQueue {
    client: aws_sdk_sqs::Client,
    url: String,
}

impl HintQueue {
    pub fn new(client: aws_sdk_sqs::Client, url: impl Into<String>) -> Self {
        HintQueue { client, url: url.into() }
    }

    pub fn url(&self) -> &str {
        &self.url
    }

    pub fn client(&self) -> &aws_sdk_sqs::Client {
        &self.client
    }

    /// Queues one hint (JSON a [`HintCheck`] wrote).
    pub(crate) async fn send(&self, hint: &[u8]) -> Result<(), QueueError> {
        let body = String::from_utf8_lossy(hint);
        self.client
            .send_message()
            .queue_url(&self.url)
            .message_body(body)
            .send()
            .await
            .map_err(|e| QueueError::Send(Box::new(e)))?;
        Ok(())
    }
}

/// The webhook function of a provider whose webhook is a hint: it checks the hint, queues
/// it and acknowledges. It holds no secret of the provider and calls nothing but SQS.
#[derive(Debug)]
pub struct HintRelay<P> {
    queue: HintQueue,
    check: HintCheck,
    provider: PhantomData<fn() -> P>,
}

impl<P: Provider> HintRelay<P> {
    /// The settings of the provider's webhook function when its webhook is a hint: the
    /// queue alone.
    pub fn settings() -> Vec<Setting> {
        vec![crate::config::HINT_QUEUE_URL]
    }

    /// `None` when `P`'s webhook is verified on arrival (it has no [`Provider::HINT`]).
    pub fn new(queue: HintQueue) -> Option<Self> {
        P::HINT.map(|check| HintRelay { queue, check, provider: PhantomData })
    }

    /// The Lambda function at init: `HINT_QUEUE_URL`.
    pub(crate) async fn from_env(env: &impl Env) -> Result<Self, ConfigError> {
        let url = env.required(crate::config::HINT_QUEUE_URL.name)?;
        let aws = crate::aws::AwsClients::from_env().await;
        Self::new(HintQueue::new(aws.sqs, url)).ok_or(ConfigError::Invalid {
            name: crate::config::HINT_QUEUE_URL.name,
            reason: format!("{}'s webhook is not a hint", P::NAME),
        })
    }

    /// Size and content type, the provider's check, then the queue. Nothing else is
    /// written; a send that fails is our 500, so the provider delivers again.
    pub(crate) async fn process(&self, request: &Inbound) -> Result<(), WebhookError> {
        check_body(request)?;
        let hint = (self.check)(request)?;
        self.queue.send(&hint).await?;
        tracing::info!(provider = P::NAME, "hint queued");
        Ok(())
    }

    /// Handles one request and answers it: the provider's acknowledgement once the hint
    /// is queued, or the error mapped to HTTP.
    pub async fn answer(&self, request: &Inbound) -> Response<Body> {
        crate::edge::answer::<P, _>(self.process(request).await)
    }
}

/// One message of the hint queue: its id (what a failure is reported by), its body, and
/// how many times it has been received (SQS's `ApproximateReceiveCount`, 1 the first time).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct QueuedHint {
    pub message_id: String,
    pub body: String,
    pub receive_count: u32,
}

/// The header that tells a provider's `authenticate` how many times the hint it reads has
/// been received ([`QueuedHint::receive_count`]): a provider may ask again later about
/// what it does not know yet, a bounded number of times.
pub const HINT_RECEIVE_COUNT_HEADER: &str = "x-hint-receive-count";

impl QueuedHint {
    /// `body` as SQS's message `message_id`, with its receive count (text; 1 when absent or unreadable).
    pub fn new(message_id: impl Into<String>, body: impl Into<String>, receive_count: Option<&str>) -> Self {
        let receive_count = receive_count.and_then(|n| n.parse().ok()).unwrap_or(1);
        QueuedHint { message_id: message_id.into(), body: body.into(), receive_count }
    }
}

impl<P: Provider> Webhook<P> {
    /// The hint queue's consumer: takes each queued hint through the pipeline, all of
    /// them at once (each waits on the provider), and returns the ids of the messages to
    /// receive again: those that failed on our side or the provider's (5xx), and those the
    /// pipeline refuses (4xx): the relay wrote nothing it would refuse, so such a message
    /// is foreign or from another release, and it goes to the dead-letter queue (and its
    /// alarm) after its receives rather than being dropped.
    pub async fn confirm_hints(&self, hints: &[QueuedHint], now: OffsetDateTime) -> Vec<String> {
        let results = futures_util::future::join_all(hints.iter().map(|hint| async move {
            let request = Inbound::new(http::Method::POST, hint.body.as_bytes())
                .with_header(HINT_RECEIVE_COUNT_HEADER, &hint.receive_count.to_string());
            (hint, self.process(&request, now).await)
        }))
        .await;
        let mut failed = Vec::new();
        for (hint, result) in results {
            let message_id = hint.message_id.as_str();
            match result {
                Ok(outcomes) => {
                    tracing::info!(provider = P::NAME, message_id, applied = outcomes.len(), "hint confirmed")
                }
                Err(error) if error.status().is_server_error() => {
                    crate::edge::log_error(P::NAME, &error);
                    failed.push(hint.message_id.clone());
                }
                Err(error) => {
                    tracing::error!(provider = P::NAME, message_id, code = error.code(), error = %error, "queued hint refused: received again, then kept in the dead-letter queue");
                    failed.push(hint.message_id.clone());
                }
            }
        }
        failed
    }
}
