//! The SQS triggers, locally, with the event source's semantics (the messages not
//! reported as failed are deleted; a failed one is received again after its visibility
//! timeout): the terminal-events queue's, which runs the notifier, and the hint queue's,
//! which confirms hints through the provider's pipeline. On AWS, Lambda's event source
//! mappings do this.

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;

use std::collections::HashMap;

use aws_lambda_events::sqs::{SqsEvent, SqsMessage};
use aws_sdk_sqs::types::MessageSystemAttributeName;
use notifier::Notifier;
use shared::pipeline::{Provider, QueuedHint, Webhook};
use time::OffsetDateTime;

/// Receives one batch from the terminal-events queue `queue_url` (waiting up to
/// `wait_seconds` for it) and runs it through `notifier`; deletes what did not fail.
/// Returns how many were received.
pub async fn poll_notifier(
    notifier: &Notifier,
    sqs: &aws_sdk_sqs::Client,
    queue_url: &str,
    wait_seconds: i32,
) -> Result<usize, aws_sdk_sqs::Error> {
    let output = sqs
        .receive_message()
        .queue_url(queue_url)
        .max_number_of_messages(10)
        .wait_time_seconds(wait_seconds)
        .message_system_attribute_names(MessageSystemAttributeName::All)
        .message_attribute_names("All")
        .customize()
        .config_override(shared::runtime::long_poll_timeouts(wait_seconds))
        .send()
        .await?;
    let messages = output.messages.unwrap_or_default();
    if messages.is_empty() {
        return Ok(0);
    }
    let response = notifier.handle_batch(to_sqs_event(&messages), OffsetDateTime::now_utc()).await;
    for message in &messages {
        let failed =
            response.batch_item_failures.iter().any(|f| Some(&f.item_identifier) == message.message_id.as_ref());
        if let (false, Some(handle)) = (failed, message.receipt_handle.as_deref()) {
            sqs.delete_message().queue_url(queue_url).receipt_handle(handle).send().await?;
        }
    }
    Ok(messages.len())
}

/// The event Lambda's SQS trigger would build from these messages.
pub fn to_sqs_event(messages: &[aws_sdk_sqs::types::Message]) -> SqsEvent {
    let records = messages
        .iter()
        .map(|m| {
            let mut record = SqsMessage::default();
            record.message_id = m.message_id.clone();
            record.receipt_handle = m.receipt_handle.clone();
            record.body = m.body.clone();
            record.attributes = m
                .attributes
                .iter()
                .flatten()
                .map(|(k, v)| (k.as_str().to_owned(), v.clone()))
                .collect::<HashMap<_, _>>();
            record.message_attributes = m
                .message_attributes
                .iter()
                .flatten()
                .map(|(name, value)| {
                    let mut attribute = aws_lambda_events::sqs::SqsMessageAttribute::default();
                    attribute.string_value = value.string_value.clone();
                    attribute.data_type = Some(value.data_type.clone());
                    (name.clone(), attribute)
                })
                .collect::<HashMap<_, _>>();
            record
        })
        .collect();
    let mut event = SqsEvent::default();
    event.records = records;
    event
}

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
            .message_system_attribute_names(aws_sdk_sqs::types::MessageSystemAttributeName::ApproximateReceiveCount)
            .customize()
            .config_override(shared::runtime::long_poll_timeouts(wait_seconds))
            .send()
            .await?;
        let messages = output.messages.unwrap_or_default();
        let count = |m: &aws_sdk_sqs::types::Message| {
            let attributes = m.attributes.as_ref()?;
            attributes.get(&aws_sdk_sqs::types::MessageSystemAttributeName::ApproximateReceiveCount).cloned()
        };
        let hints: Vec<QueuedHint> = messages
            .iter()
            .map(|m| {
                let (id, body) = (m.message_id.clone().unwrap_or_default(), m.body.clone().unwrap_or_default());
                QueuedHint::new(id, body, count(m).as_deref())
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
