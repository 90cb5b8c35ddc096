//! Moves messages from the dead-letter queue back to the main queue, so that an operator
//! can recover after the merchant's outage. Each message keeps its body (and so its event
//! id, which the merchant dedupes on) and its group; it gets a new deduplication id so
//! that SQS does not drop it as a repeat of the original send.

use aws_sdk_sqs::types::MessageSystemAttributeName;
use time::OffsetDateTime;

/// Moves every message now in `dead_letter_queue_url` to `queue_url`; returns how many.
/// A message is deleted from the dead-letter queue only after it was sent to the main one.
pub async fn replay_dead_letters(
    sqs: &aws_sdk_sqs::Client,
    dead_letter_queue_url: &str,
    queue_url: &str,
    now: OffsetDateTime,
) -> Result<usize, aws_sdk_sqs::Error> {
    let mut moved = 0;
    loop {
        let messages = sqs
            .receive_message()
            .queue_url(dead_letter_queue_url)
            .max_number_of_messages(10)
            .visibility_timeout(60)
            .message_system_attribute_names(MessageSystemAttributeName::All)
            .send()
            .await?
            .messages
            .unwrap_or_default();
        if messages.is_empty() {
            return Ok(moved);
        }
        // Ten to a SendMessageBatch, then the ones sent deleted in one DeleteMessageBatch.
        let mut entries = Vec::with_capacity(messages.len());
        for (index, message) in messages.iter().enumerate() {
            let attributes = message.attributes.clone().unwrap_or_default();
            let group = attributes.get(&MessageSystemAttributeName::MessageGroupId).cloned().unwrap_or_default();
            let original = attributes
                .get(&MessageSystemAttributeName::MessageDeduplicationId)
                .cloned()
                .or(message.message_id.clone())
                .unwrap_or_default();
            let dedup: String = format!("{original}-replay-{}", now.unix_timestamp()).chars().take(128).collect();
            let entry = aws_sdk_sqs::types::SendMessageBatchRequestEntry::builder()
                .id(index.to_string())
                .message_body(message.body.clone().unwrap_or_default())
                .message_group_id(group)
                .message_deduplication_id(dedup)
                .build()
                .map_err(aws_sdk_sqs::Error::from)?;
            entries.push(entry);
        }
        let output = sqs.send_message_batch().queue_url(queue_url).set_entries(Some(entries)).send().await?;
        let deletes: Vec<_> = output
            .successful
            .iter()
            .filter_map(|sent| {
                let message = messages.get(sent.id.parse::<usize>().ok()?)?;
                aws_sdk_sqs::types::DeleteMessageBatchRequestEntry::builder()
                    .id(sent.id.clone())
                    .receipt_handle(message.receipt_handle()?)
                    .build()
                    .ok()
            })
            .collect();
        moved += deletes.len();
        if !deletes.is_empty() {
            sqs.delete_message_batch().queue_url(dead_letter_queue_url).set_entries(Some(deletes)).send().await?;
        }
        if !output.failed.is_empty() {
            // Left in the dead-letter queue (visible again in 60 s): stop rather than loop on it.
            return Ok(moved);
        }
    }
}
