//! Terminal events to the SQS FIFO queue.

use crate::model::{transaction_key, MerchantEvent};

#[derive(Debug, thiserror::Error)]
pub enum QueueError {
    #[error("SQS request failed")]
    Send(#[source] Box<dyn std::error::Error + Send + Sync>),
    #[error("terminal event could not be encoded")]
    Encode(#[source] serde_json::Error),
}

/// The most one `SendMessageBatch` carries: SQS's limit on a batch's total payload is
/// 256 KiB in every region (1 MiB where raised); the largest event is about 46 KB.
pub(crate) const MAX_BATCH_BYTES: usize = 200 * 1024;

/// A stored event to send again: its body as sent, its group (the transaction) and id.
#[derive(Debug, Clone)]
pub struct Resend<'a> {
    pub body: &'a str,
    pub group: String,
    pub event_id: &'a str,
}

/// Why one entry of a batch was not sent.
#[derive(Debug, Clone, thiserror::Error)]
#[error("batch entry not sent: {0}")]
pub(crate) struct BatchEntryError(String);

/// The message attribute that says why a message was sent again (`resend`, `recover`).
pub const KIND_ATTRIBUTE: &str = "kind";

#[derive(Debug, Clone)]
pub struct EventQueue {
    client: aws_sdk_sqs::Client,
    url: String,
}

impl EventQueue {
    pub fn new(client: aws_sdk_sqs::Client, url: impl Into<String>) -> Self {
        EventQueue { client, url: url.into() }
    }

    /// Sends the event to the FIFO queue: grouped by transaction, deduplicated by the
    /// event's deterministic id, so a resend of the same outcome is dropped by SQS.
    pub async fn send(&self, event: &MerchantEvent) -> Result<(), QueueError> {
        let body = body_of(event).map_err(QueueError::Encode)?;
        self.client
            .send_message()
            .queue_url(&self.url)
            .message_body(body)
            .message_group_id(transaction_key(&event.data.provider, &event.data.reference))
            .message_deduplication_id(&event.id)
            .send()
            .await
            .map_err(|e| QueueError::Send(Box::new(e)))?;
        Ok(())
    }

    /// Sends `events`, each as [`Self::send`] sends it, in `SendMessageBatch` calls of at
    /// most 10 entries and [`MAX_BATCH_BYTES`]; returns, in order, whether each was
    /// accepted. A call that fails as a whole fails its entries only.
    pub async fn send_batch(&self, events: &[MerchantEvent]) -> Vec<Result<(), QueueError>> {
        let mut results: Vec<Result<(), QueueError>> = Vec::with_capacity(events.len());
        let mut batch: Vec<(String, &MerchantEvent)> = Vec::new();
        let mut bytes = 0;
        for event in events {
            let body = match body_of(event) {
                Ok(body) => body,
                Err(error) => {
                    results.extend(self.send_entries(std::mem::take(&mut batch)).await);
                    bytes = 0;
                    results.push(Err(QueueError::Encode(error)));
                    continue;
                }
            };
            if batch.len() == 10 || (!batch.is_empty() && bytes + body.len() > MAX_BATCH_BYTES) {
                results.extend(self.send_entries(std::mem::take(&mut batch)).await);
                bytes = 0;
            }
            bytes += body.len();
            batch.push((body, event));
        }
        results.extend(self.send_entries(batch).await);
        results
    }

    /// One `SendMessageBatch` call; whether each entry was accepted, in order.
    async fn send_entries(&self, batch: Vec<(String, &MerchantEvent)>) -> Vec<Result<(), QueueError>> {
        if batch.is_empty() {
            return Vec::new();
        }
        let count = batch.len();
        let failed = |reason: String| {
            (0..count).map(|_| Err(QueueError::Send(Box::new(BatchEntryError(reason.clone()))))).collect()
        };
        let mut entries = Vec::with_capacity(count);
        for (index, (body, event)) in batch.into_iter().enumerate() {
            let entry = aws_sdk_sqs::types::SendMessageBatchRequestEntry::builder()
                .id(index.to_string())
                .message_body(body)
                .message_group_id(transaction_key(&event.data.provider, &event.data.reference))
                .message_deduplication_id(&event.id)
                .build();
            match entry {
                Ok(entry) => entries.push(entry),
                Err(error) => return failed(error.to_string()),
            }
        }
        let output = match self.client.send_message_batch().queue_url(&self.url).set_entries(Some(entries)).send().await
        {
            Ok(output) => output,
            Err(error) => return failed(aws_sdk_sqs::error::DisplayErrorContext(&error).to_string()),
        };
        (0..count)
            .map(|index| {
                let id = index.to_string();
                match output.failed.iter().find(|f| f.id == id) {
                    Some(failed) => Err(QueueError::Send(Box::new(BatchEntryError(format!(
                        "{}: {}",
                        failed.code,
                        failed.message.as_deref().unwrap_or_default()
                    ))))),
                    None => Ok(()),
                }
            })
            .collect()
    }

    /// Sends stored events again, as [`Self::resend`] sends one, in `SendMessageBatch`
    /// calls of at most 10 entries and [`MAX_BATCH_BYTES`]; stops at the first entry SQS
    /// refuses. Returns how many were sent.
    pub async fn resend_batch(&self, events: &[Resend<'_>], kind: &str, nonce: i128) -> Result<usize, QueueError> {
        let attribute = aws_sdk_sqs::types::MessageAttributeValue::builder()
            .data_type("String")
            .string_value(kind)
            .build()
            .map_err(|e| QueueError::Send(Box::new(e)))?;
        let mut sent = 0;
        let mut rest = events;
        while !rest.is_empty() {
            // Up to 10 per batch, within SQS's batch size (one alone, whatever its size).
            let mut take = 0;
            let mut bytes = 0;
            for event in rest.iter().take(10) {
                if take > 0 && bytes + event.body.len() > MAX_BATCH_BYTES {
                    break;
                }
                bytes += event.body.len();
                take += 1;
            }
            let (batch, remaining) = rest.split_at(take);
            let mut entries = Vec::with_capacity(batch.len());
            for (index, event) in batch.iter().enumerate() {
                let entry = aws_sdk_sqs::types::SendMessageBatchRequestEntry::builder()
                    .id(index.to_string())
                    .message_body(sqs_text(event.body))
                    .message_group_id(&event.group)
                    .message_deduplication_id(format!("{}:{kind}:{nonce}", event.event_id))
                    .message_attributes(KIND_ATTRIBUTE, attribute.clone())
                    .build()
                    .map_err(|e| QueueError::Send(Box::new(e)))?;
                entries.push(entry);
            }
            let output = self
                .client
                .send_message_batch()
                .queue_url(&self.url)
                .set_entries(Some(entries))
                .send()
                .await
                .map_err(|e| QueueError::Send(Box::new(e)))?;
            if let Some(failed) = output.failed.first() {
                let reason = format!("{}: {}", failed.code, failed.message.as_deref().unwrap_or_default());
                return Err(QueueError::Send(Box::new(BatchEntryError(reason))));
            }
            sent += batch.len();
            rest = remaining;
        }
        Ok(sent)
    }

    /// Sends a stored event again on a merchant's request (`kind`: `resend` or `recover`,
    /// carried as the message attribute the notifier records with the attempt). The body
    /// and so the `webhook-id` are the same; the deduplication id is new (`<id>:<kind>:<n>`),
    /// so SQS does not drop it within its 5-minute window as a repeat of the first send.
    pub async fn resend(
        &self,
        body: &str,
        group: &str,
        event_id: &str,
        kind: &str,
        nonce: i128,
    ) -> Result<(), QueueError> {
        let attribute = aws_sdk_sqs::types::MessageAttributeValue::builder()
            .data_type("String")
            .string_value(kind)
            .build()
            .map_err(|e| QueueError::Send(Box::new(e)))?;
        self.client
            .send_message()
            .queue_url(&self.url)
            .message_body(sqs_text(body))
            .message_group_id(group)
            .message_deduplication_id(format!("{event_id}:{kind}:{nonce}"))
            .message_attributes(KIND_ATTRIBUTE, attribute)
            .send()
            .await
            .map_err(|e| QueueError::Send(Box::new(e)))?;
        Ok(())
    }
}

/// An event as the queue's message body: its JSON, with the two characters SQS refuses in
/// a message (U+FFFE and U+FFFF, which serde_json writes as they are) written as JSON
/// escapes, which decode to the same text. Records stored before provider text was cleaned
/// of them still make events SQS accepts.
fn body_of(event: &MerchantEvent) -> Result<String, serde_json::Error> {
    serde_json::to_string(event).map(|json| sqs_text(&json))
}

/// `json` with U+FFFE and U+FFFF as JSON escapes (only inside strings can they be there).
fn sqs_text(json: &str) -> String {
    if !json.contains(['\u{FFFE}', '\u{FFFF}']) {
        return json.to_owned();
    }
    json.replace('\u{FFFE}', "\\ufffe").replace('\u{FFFF}', "\\uffff")
}

#[cfg(test)]
mod tests {
    use super::*;

    /// What SQS accepts in a message: tab, newline, carriage return, and U+0020 to U+D7FF,
    /// U+E000 to U+FFFD, U+10000 and above.
    fn sqs_accepts(text: &str) -> bool {
        text.chars()
            .all(|c| matches!(c, '\t' | '\n' | '\r' | ' '..='\u{D7FF}' | '\u{E000}'..='\u{FFFD}' | '\u{10000}'..))
    }

    #[test]
    fn an_event_with_text_sqs_refuses_becomes_a_body_it_accepts_and_reads_back_the_same() {
        let at = time::OffsetDateTime::from_unix_timestamp(1_795_000_000).expect("time");
        let mut record = crate::model::tests::record("azqr", "123456789012", crate::model::Status::Failed, at);
        record.final_at = Some(at);
        record.reason = Some("AM04\u{FFFF} Insufficient\u{FFFE}Funds \u{1F4B8} \u{0}\u{1F}".into());
        let event = MerchantEvent::for_record(&record).expect("final");
        let raw = serde_json::to_string(&event).expect("JSON");
        assert!(!sqs_accepts(&raw), "serde_json writes U+FFFF as it is: the reason this exists");
        let body = body_of(&event).expect("body");
        assert!(sqs_accepts(&body), "{body}");
        assert_eq!(serde_json::from_str::<MerchantEvent>(&body).expect("decodes"), event, "the same text");
        assert_eq!(sqs_text("{\"a\":\"plain\"}"), "{\"a\":\"plain\"}");
    }
}
