//! The hint queue's SQS trigger, locally: hints are received in batches and confirmed by
//! the provider's pipeline with the event source's semantics (the messages not reported
//! as failed are deleted; a failed one is received again after its visibility timeout).

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;

use shared::hints::QueuedHint;
use shared::{Provider, Webhook};
use time::OffsetDateTime;

type Confirm =
    dyn Fn(Vec<QueuedHint>, OffsetDateTime) -> Pin<Box<dyn Future<Output = Vec<String>> + Send>> + Send + Sync;

/// One hint queue and the pipeline that confirms its hints.
#[derive(Clone)]
pub struct HintConsumer {
    sqs: aws_sdk_sqs::Client,
    url: String,
    confirm: Arc<Confirm>,
}

impl std::fmt::Debug for HintConsumer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("HintConsumer").field("url", &self.url).finish_non_exhaustive()
    }
}

impl HintConsumer {
    pub fn new<P: Provider>(sqs: aws_sdk_sqs::Client, url: impl Into<String>, webhook: Arc<Webhook<P>>) -> Self {
        let confirm = move |hints: Vec<QueuedHint>, now: OffsetDateTime| {
            let webhook = Arc::clone(&webhook);
            Box::pin(async move { webhook.confirm_hints(&hints, now).await })
                as Pin<Box<dyn Future<Output = Vec<String>> + Send>>
        };
        HintConsumer { sqs, url: url.into(), confirm: Arc::new(confirm) }
    }

    /// Receives one batch (waiting up to `wait_seconds` for it), confirms it, and deletes
    /// what did not fail. Returns how many hints were received.
    pub async fn poll_once(&self, wait_seconds: i32) -> Result<usize, aws_sdk_sqs::Error> {
        self.poll_at(wait_seconds, None).await
    }

    /// Polls until the queue has nothing visible, confirming at `now` (a test's clock);
    /// returns how many hints were received.
    pub async fn drain_at(&self, now: OffsetDateTime) -> Result<usize, aws_sdk_sqs::Error> {
        let mut received = 0;
        loop {
            match self.poll_at(0, Some(now)).await? {
                0 => return Ok(received),
                n => received += n,
            }
        }
    }

    async fn poll_at(&self, wait_seconds: i32, now: Option<OffsetDateTime>) -> Result<usize, aws_sdk_sqs::Error> {
        let output = self
            .sqs
            .receive_message()
            .queue_url(&self.url)
            .max_number_of_messages(10)
            .wait_time_seconds(wait_seconds)
            .customize()
            .config_override(shared::aws::long_poll_timeouts(wait_seconds))
            .send()
            .await?;
        let messages = output.messages.unwrap_or_default();
        let hints: Vec<QueuedHint> = messages
            .iter()
            .map(|m| QueuedHint {
                message_id: m.message_id.clone().unwrap_or_default(),
                body: m.body.clone().unwrap_or_default(),
            })
            .collect();
        if hints.is_empty() {
            return Ok(0);
        }
        let failed = (self.confirm)(hints, now.unwrap_or_else(OffsetDateTime::now_utc)).await;
        for message in &messages {
            let retry = message.message_id.as_ref().is_some_and(|id| failed.contains(id));
            if let (false, Some(handle)) = (retry, message.receipt_handle.as_deref()) {
                self.sqs.delete_message().queue_url(&self.url).receipt_handle(handle).send().await?;
            }
        }
        Ok(messages.len())
    }
}
