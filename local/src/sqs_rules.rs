//! What real SQS refuses and moto accepts, refused at the local SQS clients' SDK layer so
//! that a test sees the failure a deployed function would meet.
//!
//! SQS takes a message's text only within XML's character set (`#x9 | #xA | #xD |
//! #x20-#xD7FF | #xE000-#xFFFD | #x10000-#x10FFFF`) and at most 256 KiB per message, and
//! per batch. moto takes anything. Rust strings hold no surrogates, and every control
//! character the pipeline writes is a JSON escape, so in practice U+FFFE, U+FFFF and
//! size are what this catches; it checks the whole set all the same.

use aws_sdk_sqs::config::interceptors::BeforeSerializationInterceptorContextRef;
use aws_sdk_sqs::config::{ConfigBag, Intercept, RuntimeComponents};
use aws_sdk_sqs::error::BoxError;
use aws_sdk_sqs::operation::send_message::SendMessageInput;
use aws_sdk_sqs::operation::send_message_batch::SendMessageBatchInput;
use aws_sdk_sqs::types::MessageAttributeValue;
use std::collections::HashMap;

/// The largest message, and batch, SQS takes by default: 256 KiB.
pub const MAX_MESSAGE_BYTES: usize = 256 * 1024;

/// The interceptor of the local SQS clients that fails a `SendMessage` or
/// `SendMessageBatch` whose text real SQS would refuse (`InvalidMessageContents`) or whose
/// size it would refuse, before it is sent.
#[derive(Debug, Clone, Copy)]
pub struct SqsRules;

/// Whether SQS takes `c` in a message's text.
fn allowed(c: char) -> bool {
    matches!(c, '\u{9}' | '\u{A}' | '\u{D}' | '\u{20}'..='\u{D7FF}' | '\u{E000}'..='\u{FFFD}' | '\u{10000}'..)
}

/// Why SQS would refuse a message of `body` and `attributes`, if it would.
fn refusal(body: Option<&str>, attributes: Option<&HashMap<String, MessageAttributeValue>>) -> Option<String> {
    let attribute_texts = attributes
        .into_iter()
        .flatten()
        .flat_map(|(name, value)| [Some(name.as_str()), value.string_value()])
        .flatten();
    let texts = body.into_iter().chain(attribute_texts);
    for text in texts.clone() {
        if let Some(c) = text.chars().find(|c| !allowed(*c)) {
            return Some(format!(
                "InvalidMessageContents: the message holds U+{:04X}, outside SQS's character set",
                u32::from(c)
            ));
        }
    }
    let size = message_size(body, attributes);
    (size > MAX_MESSAGE_BYTES).then(|| format!("the message is {size} bytes, over SQS's {MAX_MESSAGE_BYTES}"))
}

/// A message's size as SQS counts it: its body, and each attribute's name, type and value.
fn message_size(body: Option<&str>, attributes: Option<&HashMap<String, MessageAttributeValue>>) -> usize {
    let attributes = attributes.into_iter().flatten().map(|(name, value)| {
        name.len()
            + value.data_type().len()
            + value.string_value().map_or(0, str::len)
            + value.binary_value().map_or(0, |b| b.as_ref().len())
    });
    body.map_or(0, str::len) + attributes.sum::<usize>()
}

impl Intercept for SqsRules {
    fn name(&self) -> &'static str {
        "SQS's message rules"
    }

    fn read_before_serialization(
        &self,
        context: &BeforeSerializationInterceptorContextRef<'_>,
        _: &RuntimeComponents,
        _: &mut ConfigBag,
    ) -> Result<(), BoxError> {
        let input = context.input();
        if let Some(send) = input.downcast_ref::<SendMessageInput>() {
            if let Some(why) = refusal(send.message_body(), send.message_attributes()) {
                return Err(why.into());
            }
        }
        if let Some(batch) = input.downcast_ref::<SendMessageBatchInput>() {
            let mut total = 0;
            for entry in batch.entries() {
                if let Some(why) = refusal(Some(entry.message_body()), entry.message_attributes()) {
                    return Err(format!("entry {}: {why}", entry.id()).into());
                }
                total += message_size(Some(entry.message_body()), entry.message_attributes());
            }
            if total > MAX_MESSAGE_BYTES {
                return Err(format!("the batch is {total} bytes, over SQS's {MAX_MESSAGE_BYTES}").into());
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn refuses_what_sqs_refuses_and_takes_the_rest() {
        for text in ["a\u{FFFE}b", "\u{FFFF}", "nul \u{0}", "bell \u{7}", "esc \u{1B}"] {
            assert!(refusal(Some(text), None).is_some(), "{text:?}");
        }
        for text in ["plain", "tab\tnewline\n\r", "\u{D7FF}\u{E000}\u{FFFD}\u{10000}\u{10FFFF}", "pix \u{1F4B8}"] {
            assert_eq!(refusal(Some(text), None), None, "{text:?}");
        }
        let attribute =
            MessageAttributeValue::builder().data_type("String").string_value("x\u{FFFE}").build().expect("attribute");
        let attributes = HashMap::from([("kind".to_owned(), attribute)]);
        assert!(refusal(Some("ok"), Some(&attributes)).is_some());
        assert!(refusal(Some(&"a".repeat(MAX_MESSAGE_BYTES + 1)), None).is_some());
        assert_eq!(refusal(Some(&"a".repeat(MAX_MESSAGE_BYTES)), None), None);
    }
}
