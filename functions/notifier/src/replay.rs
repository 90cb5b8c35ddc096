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
        for message in messages {
            let attributes = message.attributes.clone().unwrap_or_default();
            let group = attributes.get(&MessageSystemAttributeName::MessageGroupId).cloned().unwrap_or_default();
            let original = attributes
                .get(&MessageSystemAttributeName::MessageDeduplicationId)
                .cloned()
                .or(message.message_id.clone())
                .unwrap_or_default();
            let dedup: String = format!("{original}-replay-{}", now.unix_timestamp()).chars().take(128).collect();
            sqs.send_message()
                .queue_url(queue_url)
                .message_body(message.body.clone().unwrap_or_default())
                .message_group_id(group)
                .message_deduplication_id(dedup)
                .send()
                .await?;
            if let Some(handle) = message.receipt_handle() {
                sqs.delete_message().queue_url(dead_letter_queue_url).receipt_handle(handle).send().await?;
            }
            moved += 1;
        }
    }
}
