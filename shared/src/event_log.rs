//! The event log: every event the notifier handles, with every delivery attempt, in the
//! transactions table (single-table: key `evt#<id>`, so no transaction key can collide).
//! One `UpdateItem` per attempt stores the event the first time (its exact body, sent
//! again byte for byte on a resend) and appends the attempt. The sparse `EventFeed` index
//! (partition `feed`, sort `position` = creation time in nanoseconds and the id) lists
//! events in creation order without a scan. Items expire through the table's TTL
//! attribute `ttl`, `EVENT_RETENTION_DAYS` after the event was created.

use std::collections::HashMap;
use std::time::Duration;

use aws_sdk_dynamodb::types::AttributeValue;
use serde::{Deserialize, Serialize};
use time::format_description::well_known::Rfc3339;
use time::OffsetDateTime;

use crate::model::TerminalEvent;
use crate::store::{StoreError, KEY_ATTRIBUTE};

/// The sparse index of events by creation, as in template.yaml.
pub const FEED_INDEX: &str = "EventFeed";
/// The value of `feed` on every event item (its partition in the index).
const FEED: &str = "events";
/// The most of a response body an attempt keeps.
pub const MAX_RESPONSE_BYTES: usize = 256;
/// Pages of the index one listing reads at most before it returns a cursor.
const MAX_PAGES: usize = 10;

/// Why an attempt was made.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum AttemptKind {
    /// The notifier's own delivery and retries.
    Automatic,
    /// `POST /events/{id}/resend`.
    Resend,
    /// `POST /events/recover`.
    Recover,
}

impl AttemptKind {
    pub fn as_str(self) -> &'static str {
        match self {
            AttemptKind::Automatic => "automatic",
            AttemptKind::Resend => "resend",
            AttemptKind::Recover => "recover",
        }
    }

    /// From the queue message's `kind` attribute; anything else is automatic.
    pub fn from_attribute(value: Option<&str>) -> Self {
        match value {
            Some("resend") => AttemptKind::Resend,
            Some("recover") => AttemptKind::Recover,
            Some(_) | None => AttemptKind::Automatic,
        }
    }
}

/// One delivery attempt.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Attempt {
    #[serde(with = "time::serde::rfc3339")]
    pub at: OffsetDateTime,
    /// The merchant's HTTP status, when it answered.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub status: Option<u16>,
    /// The transport error, when it did not (`timed out`, `connection failed`…).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
    pub duration_ms: u64,
    /// At most the first [`MAX_RESPONSE_BYTES`] of the response body.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub response: Option<String>,
    pub kind: AttemptKind,
}

/// An event as the log holds it.
#[derive(Debug, Clone, PartialEq)]
pub struct StoredEvent {
    /// The event exactly as delivered: `{"id", "type", "created_at", "data"}`.
    pub event: serde_json::Value,
    /// The body as sent, byte for byte.
    pub body: String,
    pub delivered_at: Option<OffsetDateTime>,
    pub attempt_count: u32,
    pub attempts: Vec<Attempt>,
    /// Its place in the feed (the listing cursor).
    pub position: String,
}

impl StoredEvent {
    pub fn id(&self) -> &str {
        self.event["id"].as_str().unwrap_or_default()
    }
}

/// What a listing asks for.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct EventQuery {
    pub since: Option<OffsetDateTime>,
    pub until: Option<OffsetDateTime>,
    /// A cursor from an earlier page: events after it.
    pub after: Option<String>,
    pub limit: usize,
    pub kind: Option<String>,
    pub delivered: Option<bool>,
}

/// A page of events, oldest first, and the cursor of the next page, if any.
#[derive(Debug, Clone, PartialEq)]
pub struct EventPage {
    pub events: Vec<StoredEvent>,
    pub next: Option<String>,
}

/// An event's place in the feed: its creation time (nanoseconds, zero-padded so that the
/// text sorts as the time) and its id.
pub fn position(created_at: OffsetDateTime, id: &str) -> String {
    format!("{:020}#{id}", created_at.unix_timestamp_nanos().max(0))
}

/// Whether `text` is a position (a cursor a client may send back).
pub fn is_position(text: &str) -> bool {
    text.split_once('#').is_some_and(|(nanos, id)| {
        nanos.len() == 20 && nanos.bytes().all(|b| b.is_ascii_digit()) && !id.is_empty() && id.len() <= 64
    })
}

#[derive(Debug, Clone)]
pub struct EventLog {
    client: aws_sdk_dynamodb::Client,
    table: String,
    retention: Duration,
}

impl EventLog {
    pub fn new(client: aws_sdk_dynamodb::Client, table: impl Into<String>, retention: Duration) -> Self {
        EventLog { client, table: table.into(), retention }
    }

    /// Stores `event` (sent as `body`) if it is not stored yet, and appends `attempt`, in
    /// one write; `delivered` sets `delivered_at` the first time.
    pub async fn record_attempt(
        &self,
        event: &TerminalEvent,
        body: &str,
        attempt: &Attempt,
        delivered: bool,
    ) -> Result<(), StoreError> {
        let expires = event.created_at + self.retention;
        let attempt_value = serde_dynamo::to_attribute_value(attempt).map_err(StoreError::Decode)?;
        let mut expression = "SET #body = if_not_exists(#body, :body), #feed = :feed, \
             #position = if_not_exists(#position, :position), #type = :type, \
             #ttl = if_not_exists(#ttl, :ttl), \
             #attempts = list_append(if_not_exists(#attempts, :empty), :attempt)"
            .to_owned();
        let mut request = self
            .client
            .update_item()
            .table_name(&self.table)
            .key(KEY_ATTRIBUTE, AttributeValue::S(key(&event.id)))
            .expression_attribute_names("#body", "body")
            .expression_attribute_names("#feed", "feed")
            .expression_attribute_names("#position", "position")
            .expression_attribute_names("#type", "type")
            .expression_attribute_names("#ttl", "ttl")
            .expression_attribute_names("#attempts", "attempts")
            .expression_attribute_names("#count", "attempt_count")
            .expression_attribute_values(":body", AttributeValue::S(body.to_owned()))
            .expression_attribute_values(":feed", AttributeValue::S(FEED.to_owned()))
            .expression_attribute_values(":position", AttributeValue::S(position(event.created_at, &event.id)))
            .expression_attribute_values(":type", AttributeValue::S(event.kind.clone()))
            .expression_attribute_values(":ttl", AttributeValue::N(expires.unix_timestamp().to_string()))
            .expression_attribute_values(":empty", AttributeValue::L(Vec::new()))
            .expression_attribute_values(":attempt", AttributeValue::L(vec![attempt_value]))
            .expression_attribute_values(":one", AttributeValue::N("1".to_owned()));
        if delivered {
            expression.push_str(", #delivered_at = if_not_exists(#delivered_at, :at)");
            request = request
                .expression_attribute_names("#delivered_at", "delivered_at")
                .expression_attribute_values(":at", AttributeValue::S(rfc3339(attempt.at)?));
        }
        expression.push_str(" ADD #count :one");
        request.update_expression(expression).send().await.map_err(|e| StoreError::Request(Box::new(e)))?;
        Ok(())
    }

    /// One event, or `None`.
    pub async fn get(&self, id: &str) -> Result<Option<StoredEvent>, StoreError> {
        let output = self
            .client
            .get_item()
            .table_name(&self.table)
            .key(KEY_ATTRIBUTE, AttributeValue::S(key(id)))
            .consistent_read(true)
            .send()
            .await
            .map_err(|e| StoreError::Request(Box::new(e)))?;
        output.item.map(decode).transpose()
    }

    /// Events in creation order from the feed index: after the cursor (or from `since`),
    /// before `until`, of one type and delivery state if asked, at most `limit`.
    pub async fn list(&self, query: &EventQuery) -> Result<EventPage, StoreError> {
        let from = match (&query.after, query.since) {
            (Some(after), _) => after.clone(),
            (None, Some(since)) => format!("{:020}", since.unix_timestamp_nanos().max(0)),
            // Below every position (DynamoDB takes no empty key value).
            (None, None) => "0".to_owned(),
        };
        let until = query.until.map(|t| format!("{:020}", t.unix_timestamp_nanos().max(0)));
        let mut events = Vec::new();
        let mut start: Option<HashMap<String, AttributeValue>> = None;
        for _ in 0..MAX_PAGES {
            let remaining = query.limit.saturating_sub(events.len()).max(1);
            let mut request = self
                .client
                .query()
                .table_name(&self.table)
                .index_name(FEED_INDEX)
                .expression_attribute_names("#feed", "feed")
                .expression_attribute_names("#position", "position")
                .expression_attribute_values(":feed", AttributeValue::S(FEED.to_owned()))
                .expression_attribute_values(":from", AttributeValue::S(from.clone()))
                .limit(remaining.min(1_000) as i32)
                .set_exclusive_start_key(start.take());
            request = match &until {
                Some(until) => request
                    .key_condition_expression("#feed = :feed AND #position BETWEEN :from AND :until")
                    .expression_attribute_values(":until", AttributeValue::S(until.clone())),
                None => request.key_condition_expression("#feed = :feed AND #position > :from"),
            };
            let mut filters = Vec::new();
            if let Some(kind) = &query.kind {
                filters.push("#type = :type");
                request = request
                    .expression_attribute_names("#type", "type")
                    .expression_attribute_values(":type", AttributeValue::S(kind.clone()));
            }
            if let Some(delivered) = query.delivered {
                filters.push(if delivered {
                    "attribute_exists(#delivered_at)"
                } else {
                    "attribute_not_exists(#delivered_at)"
                });
                request = request.expression_attribute_names("#delivered_at", "delivered_at");
            }
            if !filters.is_empty() {
                request = request.filter_expression(filters.join(" AND "));
            }
            let output = request.send().await.map_err(|e| StoreError::Request(Box::new(e)))?;
            for item in output.items.unwrap_or_default() {
                let event = decode(item)?;
                // BETWEEN includes its bound; `from` is exclusive (a cursor, or a bare time
                // no position equals).
                if event.position != from {
                    events.push(event);
                }
            }
            start = output.last_evaluated_key.filter(|key| !key.is_empty());
            if start.is_none() || events.len() >= query.limit {
                break;
            }
        }
        events.truncate(query.limit);
        let next = match (&start, events.len() >= query.limit) {
            (None, false) => None,
            // A full page: continue after its last event; or after the last one read.
            (_, true) => events.last().map(|e| e.position.clone()),
            (Some(key), false) => key.get("position").and_then(|v| v.as_s().ok()).cloned(),
        };
        Ok(EventPage { events, next })
    }
}

fn key(id: &str) -> String {
    format!("evt#{id}")
}

fn rfc3339(at: OffsetDateTime) -> Result<String, StoreError> {
    at.format(&Rfc3339).map_err(StoreError::Timestamp)
}

/// The item as stored, for decoding.
#[derive(Debug, Deserialize)]
struct Item {
    body: String,
    position: String,
    #[serde(default, with = "time::serde::rfc3339::option")]
    delivered_at: Option<OffsetDateTime>,
    #[serde(default)]
    attempt_count: u32,
    #[serde(default)]
    attempts: Vec<Attempt>,
}

fn decode(item: HashMap<String, AttributeValue>) -> Result<StoredEvent, StoreError> {
    let item: Item = serde_dynamo::from_item(item).map_err(StoreError::Decode)?;
    let event = serde_json::from_str(&item.body).unwrap_or(serde_json::Value::Null);
    Ok(StoredEvent {
        event,
        body: item.body,
        delivered_at: item.delivered_at,
        attempt_count: item.attempt_count,
        attempts: item.attempts,
        position: item.position,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn positions_sort_as_creation_times_and_cursors_are_checked() {
        let at = |nanos: i128| OffsetDateTime::from_unix_timestamp_nanos(nanos).expect("time");
        let early = position(at(1_795_000_000_000_000_000), "evt_b");
        let late = position(at(1_795_000_000_000_000_001), "evt_a");
        assert!(early < late, "{early} < {late}");
        assert!(is_position(&early));
        for bad in ["", "123#evt", "abcdefghijklmnopqrst#evt", "01795000000000000000#", "01795000000000000000"] {
            assert!(!is_position(bad), "{bad:?}");
        }
        assert_eq!(AttemptKind::from_attribute(Some("resend")), AttemptKind::Resend);
        assert_eq!(AttemptKind::from_attribute(Some("other")), AttemptKind::Automatic);
    }
}
