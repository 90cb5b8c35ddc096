//! The event log: every event the notifier handles, with every delivery attempt, in the
//! transactions table (single-table: key `evt#<id>`, so no transaction key can collide).
//! Per attempt, one `UpdateItem` stores the event the first time (its exact body, sent
//! again byte for byte on a resend; later it changes nothing, so the feed index is not
//! written again), one counts the attempt on the event's counter item (`evt#<id>#count`),
//! and one `PutItem` keeps the attempt as its own item (`evt#<id>#<n>`, the n-th): no
//! item grows with the number of attempts. The sparse `EventFeed` index (partition `feed`, sort `position` = creation
//! time in nanoseconds and the id) lists events in creation order without a scan; `feed`
//! is `events#<shard>`, one of 64 by a hash of the event id, so the feed has no hot
//! partition, and a listing merges every shard in position order. Items expire through
//! the table's TTL attribute `ttl`, `EVENT_RETENTION_DAYS` after the event was created.

use std::collections::HashMap;
use std::time::Duration;

use aws_sdk_dynamodb::types::AttributeValue;
use serde::{Deserialize, Serialize};
use time::format_description::well_known::Rfc3339;
use time::OffsetDateTime;

use crate::model::MerchantEvent;
use crate::store::{ItemEdit, ItemWrite, StoreError, KEY_ATTRIBUTE};

/// The sparse index of events by creation, as in template.yaml.
pub(crate) const FEED_INDEX: &str = "EventFeed";
/// The prefix of `feed` on every event item (its partition in the index: `events#<shard>`;
/// items written before the sharding hold `events` itself, still listed).
const FEED: &str = "events";
/// The most attempts one event's listing shows: the latest.
pub(crate) const MAX_LISTED_ATTEMPTS: u32 = 100;
/// The most of a response body an attempt keeps.
pub const MAX_RESPONSE_BYTES: usize = 256;
/// Index queries one listing makes at most (beyond one per shard) before it returns a
/// cursor.
const MAX_QUERIES: usize = 200;

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
    /// From the queue message's `kind` attribute; anything else is automatic.
    pub fn from_attribute(value: Option<&str>) -> Self {
        match value {
            Some("resend") => AttemptKind::Resend,
            Some("recover") => AttemptKind::Recover,
            Some(_) | None => AttemptKind::Automatic,
        }
    }
}

impl crate::store::TransactionStore {
    /// The event log, kept in the same table (items `evt#<id>`), with its retention.
    pub fn event_log(&self, retention: std::time::Duration) -> EventLog {
        let (client, table) = self.parts();
        EventLog::new(client, table, retention)
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
    /// The latest [`MAX_LISTED_ATTEMPTS`] attempts, oldest first ([`EventLog::get`] only).
    pub attempts: Vec<Attempt>,
    /// Its place in the feed (the listing cursor).
    pub position: String,
}

impl StoredEvent {
    pub fn id(&self) -> &str {
        self.event.get("id").and_then(serde_json::Value::as_str).unwrap_or_default()
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
    pub kind: Option<crate::model::EventType>,
    pub delivered: Option<bool>,
}

impl EventQuery {
    /// The feed positions the query reads from (exclusive) and, with `until`, up to: the
    /// values of its key condition on the `EventFeed` index.
    pub fn key_range(&self) -> (String, Option<String>) {
        let from = match (&self.after, self.since) {
            (Some(after), _) => after.clone(),
            (None, Some(since)) => format!("{:020}", since.unix_timestamp_nanos().max(0)),
            // Below every position (DynamoDB takes no empty key value).
            (None, None) => "0".to_owned(),
        };
        let until = self.until.map(|t| format!("{:020}", t.unix_timestamp_nanos().max(0)));
        (from, until)
    }
}

/// A page of events, oldest first, and the cursor of the next page, if any.
#[derive(Debug, Clone, PartialEq)]
pub struct EventPage {
    pub events: Vec<StoredEvent>,
    pub next: Option<String>,
}

/// An event's place in the feed: its creation time (nanoseconds, zero-padded so that the
/// text sorts as the time) and its id.
pub(crate) fn position(created_at: OffsetDateTime, id: &str) -> String {
    format!("{:020}#{id}", created_at.unix_timestamp_nanos().max(0))
}

/// Whether `text` is a position (a cursor a client may send back).
pub fn is_position(text: &str) -> bool {
    text.split_once('#').is_some_and(|(nanos, id)| {
        nanos.len() == 20 && nanos.bytes().all(|b| b.is_ascii_digit()) && !id.is_empty() && id.len() <= 64
    })
}

/// What recording one delivery attempt writes, as descriptions the store sends and
/// `scripts/capacity` applies: the event item, its attempt counter, and the attempt.
#[derive(Debug, Clone)]
pub struct AttemptWrites {
    /// The event item: stored on the first attempt (its body, feed position and type),
    /// unchanged by later ones but for `delivered_at`, set once.
    pub event: ItemWrite,
    /// The event's counter item: one more attempt.
    pub counter: ItemWrite,
    attempt: HashMap<String, AttributeValue>,
    event_id: String,
}

impl AttemptWrites {
    /// The writes for `attempt` at delivering `event` (sent as `body`), kept `retention`
    /// after the event's creation.
    pub fn new(
        event: &MerchantEvent,
        body: &str,
        attempt: &Attempt,
        delivered: bool,
        retention: Duration,
    ) -> Result<Self, StoreError> {
        let expires = AttributeValue::N((event.created_at + retention).unix_timestamp().to_string());
        let text = |value: String| AttributeValue::S(value);
        let edit = |name: &str, edit: ItemEdit, value: AttributeValue| (name.to_owned(), edit, value);
        let mut edits = vec![
            edit("body", ItemEdit::SetIfAbsent, text(body.to_owned())),
            edit("feed", ItemEdit::SetIfAbsent, text(feed_of(&event.id))),
            edit("position", ItemEdit::SetIfAbsent, text(position(event.created_at, &event.id))),
            edit("type", ItemEdit::Set, text(event.kind.as_str().to_owned())),
            edit("ttl", ItemEdit::SetIfAbsent, expires.clone()),
        ];
        if delivered {
            edits.push(edit("delivered_at", ItemEdit::SetIfAbsent, text(rfc3339(attempt.at)?)));
        }
        let event_write = ItemWrite { key: key(&event.id), edits, removed: Vec::new(), replace: false };
        let counter = ItemWrite {
            key: counter_key(&event.id),
            edits: vec![
                edit("ttl", ItemEdit::SetIfAbsent, expires.clone()),
                edit("attempt_count", ItemEdit::Add, AttributeValue::N("1".to_owned())),
            ],
            removed: Vec::new(),
            replace: false,
        };
        let mut attempt: HashMap<String, AttributeValue> =
            serde_dynamo::to_item(attempt).map_err(StoreError::Decode)?;
        attempt.insert("ttl".to_owned(), expires);
        Ok(AttemptWrites { event: event_write, counter, attempt, event_id: event.id.clone() })
    }

    /// The attempt's own item, as attempt `number` of its event (the counter's new value).
    pub fn attempt(&self, number: u32) -> ItemWrite {
        let mut edits: Vec<(String, ItemEdit, AttributeValue)> =
            self.attempt.iter().map(|(name, value)| (name.clone(), ItemEdit::Set, value.clone())).collect();
        edits.sort_by(|a, b| a.0.cmp(&b.0));
        ItemWrite { key: attempt_key(&self.event_id, number), edits, removed: Vec::new(), replace: true }
    }
}

#[derive(Debug, Clone)]
pub struct EventLog {
    client: aws_sdk_dynamodb::Client,
    table: String,
    retention: Duration,
}

impl EventLog {
    pub(crate) fn new(client: aws_sdk_dynamodb::Client, table: impl Into<String>, retention: Duration) -> Self {
        EventLog { client, table: table.into(), retention }
    }

    /// Stores `event` (sent as `body`) if it is not stored yet (`delivered` sets
    /// `delivered_at` the first time), counts `attempt` on the event's counter item, and
    /// keeps the attempt as its own item, numbered by that count. After the first attempt
    /// the event item's write changes nothing, so the feed index is written only when an
    /// event is stored and when it is delivered, however many attempts it takes.
    pub async fn record_attempt(
        &self,
        event: &MerchantEvent,
        body: &str,
        attempt: &Attempt,
        delivered: bool,
    ) -> Result<(), StoreError> {
        let writes = AttemptWrites::new(event, body, attempt, delivered, self.retention)?;
        writes.event.send(&self.client, &self.table).await?;
        let counted = writes.counter.send_returning(&self.client, &self.table).await?;
        let number = count_of(&counted).unwrap_or(1);
        writes.attempt(number).send(&self.client, &self.table).await?;
        Ok(())
    }

    /// The attempt counts of `ids`, from their counter items (100 to a `BatchGetItem`);
    /// an id without one (an event logged before the counters) is left out.
    async fn counts(&self, ids: &[&str]) -> Result<HashMap<String, u32>, StoreError> {
        let keys: Vec<String> = ids.iter().map(|id| counter_key(id)).collect();
        let mut counts = HashMap::new();
        for item in crate::store::batch_get(&self.client, &self.table, &keys, false).await? {
            let id = item.get(KEY_ATTRIBUTE).and_then(|k| k.as_s().ok()).and_then(|k| event_of_counter(k));
            if let (Some(id), Some(count)) = (id, count_of(&item)) {
                counts.insert(id.to_owned(), count);
            }
        }
        Ok(counts)
    }

    /// Gives back the resend of event `id` claimed at `claimed_at`, when sending it failed:
    /// a retry is not refused by a cooldown nothing was sent in. Nothing when another
    /// claim came since.
    pub async fn release_resend(&self, id: &str, claimed_at: OffsetDateTime) -> Result<(), StoreError> {
        let result = self
            .client
            .update_item()
            .table_name(&self.table)
            .key(KEY_ATTRIBUTE, AttributeValue::S(key(id)))
            .update_expression("REMOVE #resent")
            .condition_expression("#resent = :claimed")
            .expression_attribute_names("#resent", "resent_at_epoch")
            .expression_attribute_values(":claimed", AttributeValue::N(claimed_at.unix_timestamp().to_string()))
            .send()
            .await;
        crate::store::written(result).map(|_| ())
    }

    /// Claims a resend of event `id` at `now`, one conditional update: `Ok(true)` when no
    /// resend was claimed within `cooldown` before (its time is now `now`), `Ok(false)`
    /// when one was, or the event does not exist.
    pub async fn claim_resend(&self, id: &str, now: OffsetDateTime, cooldown: Duration) -> Result<bool, StoreError> {
        let cutoff = now.unix_timestamp().saturating_sub(i64::try_from(cooldown.as_secs()).unwrap_or(i64::MAX));
        let result = self
            .client
            .update_item()
            .table_name(&self.table)
            .key(KEY_ATTRIBUTE, AttributeValue::S(key(id)))
            .update_expression("SET #resent = :now")
            .condition_expression("attribute_exists(#pk) AND (attribute_not_exists(#resent) OR #resent <= :cutoff)")
            .expression_attribute_names("#pk", KEY_ATTRIBUTE)
            .expression_attribute_names("#resent", "resent_at_epoch")
            .expression_attribute_values(":now", AttributeValue::N(now.unix_timestamp().to_string()))
            .expression_attribute_values(":cutoff", AttributeValue::N(cutoff.to_string()))
            .send()
            .await;
        crate::store::written(result)
    }

    /// Begins the request `fingerprint` under the client's idempotency key `key` (of
    /// `route`) at `now`: [`Idempotent::New`] when the key is new (it is now held, for
    /// [`IDEMPOTENCY_RETENTION`]), else what the first request with it made.
    pub async fn begin_idempotent(
        &self,
        route: &str,
        key: &str,
        fingerprint: &str,
        now: OffsetDateTime,
    ) -> Result<Idempotent, StoreError> {
        let pk = idempotency_key(route, key);
        let expires = (now + IDEMPOTENCY_RETENTION).unix_timestamp().to_string();
        let result = self
            .client
            .put_item()
            .table_name(&self.table)
            .item(KEY_ATTRIBUTE, AttributeValue::S(pk.clone()))
            .item("fingerprint", AttributeValue::S(fingerprint.to_owned()))
            .item("ttl", AttributeValue::N(expires))
            .condition_expression("attribute_not_exists(#pk)")
            .expression_attribute_names("#pk", KEY_ATTRIBUTE)
            .return_values_on_condition_check_failure(
                aws_sdk_dynamodb::types::ReturnValuesOnConditionCheckFailure::AllOld,
            )
            .send()
            .await;
        let held = match result.map_err(aws_sdk_dynamodb::error::SdkError::into_service_error) {
            Ok(_) => return Ok(Idempotent::New),
            Err(aws_sdk_dynamodb::operation::put_item::PutItemError::ConditionalCheckFailedException(failed)) => {
                failed.item.unwrap_or_default()
            }
            Err(error) => return Err(StoreError::Request(Box::new(error))),
        };
        let text = |name: &str| held.get(name).and_then(|v| v.as_s().ok()).cloned();
        if text("fingerprint").as_deref() != Some(fingerprint) {
            return Ok(Idempotent::Reused);
        }
        let status = held.get("status").and_then(|v| v.as_n().ok()).and_then(|n| n.parse::<u16>().ok());
        Ok(match (status, text("answer")) {
            (Some(status), Some(answer)) => Idempotent::Answered { status, answer },
            _ => Idempotent::InProgress,
        })
    }

    /// Keeps the answer of the request begun under `key` ([`Self::begin_idempotent`]):
    /// the same key answers it again, without acting again.
    pub async fn finish_idempotent(&self, route: &str, key: &str, status: u16, answer: &str) -> Result<(), StoreError> {
        self.client
            .update_item()
            .table_name(&self.table)
            .key(KEY_ATTRIBUTE, AttributeValue::S(idempotency_key(route, key)))
            .update_expression("SET #status = :status, answer = :answer")
            .expression_attribute_names("#status", "status")
            .expression_attribute_values(":status", AttributeValue::N(status.to_string()))
            .expression_attribute_values(":answer", AttributeValue::S(answer.to_owned()))
            .send()
            .await
            .map_err(|e| StoreError::Request(Box::new(e)))?;
        Ok(())
    }

    /// Lets go of `key` after its request failed on our side: a retry with it acts.
    pub async fn abandon_idempotent(&self, route: &str, key: &str) -> Result<(), StoreError> {
        self.client
            .delete_item()
            .table_name(&self.table)
            .key(KEY_ATTRIBUTE, AttributeValue::S(idempotency_key(route, key)))
            .send()
            .await
            .map_err(|e| StoreError::Request(Box::new(e)))?;
        Ok(())
    }

    /// One event with its latest [`MAX_LISTED_ATTEMPTS`] attempts, or `None`.
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
        let Some(mut event) = output.item.map(decode).transpose()? else {
            return Ok(None);
        };
        // Attempts kept on the item itself (before they became items) come first; the
        // counter numbers the attempts kept as items since.
        let counted = self.counts(&[id]).await?.get(id).copied().unwrap_or(0);
        event.attempt_count += counted;
        let first = counted.saturating_sub(MAX_LISTED_ATTEMPTS - 1).max(1);
        let mut attempts = match counted {
            0 => Vec::new(),
            _ => self.attempts(id, first, counted).await?,
        };
        attempts.sort_by_key(|(number, _)| *number);
        event.attempts.extend(attempts.into_iter().map(|(_, attempt)| attempt));
        let excess = event.attempts.len().saturating_sub(MAX_LISTED_ATTEMPTS as usize);
        event.attempts.drain(..excess);
        Ok(Some(event))
    }

    /// Attempts `first..=last` of event `id` that exist, with their numbers, in any order.
    async fn attempts(&self, id: &str, first: u32, last: u32) -> Result<Vec<(u32, Attempt)>, StoreError> {
        let keys: Vec<String> = (first..=last).map(|n| attempt_key(id, n)).collect();
        let mut found = Vec::new();
        for mut item in crate::store::batch_get(&self.client, &self.table, &keys, false).await? {
            let number = item
                .remove(KEY_ATTRIBUTE)
                .and_then(|k| k.as_s().ok().and_then(|k| k.rsplit_once('#')).and_then(|(_, n)| n.parse().ok()));
            let attempt: Attempt = serde_dynamo::from_item(item).map_err(StoreError::Decode)?;
            found.push((number.unwrap_or(0), attempt));
        }
        Ok(found)
    }

    /// Events in creation order from the feed index: after the cursor (or from `since`),
    /// before `until`, of one type and delivery state if asked, at most `limit`. Every
    /// shard is read in position order and merged: a page holds the `limit` events with
    /// the lowest positions after the cursor, whichever shards hold them.
    pub async fn list(&self, query: &EventQuery) -> Result<EventPage, StoreError> {
        let (from, until) = query.key_range();
        let mut shards: Vec<Shard> = feed_values().into_iter().map(Shard::new).collect();
        // Enough per query that a page seldom needs a second round, and never less than 2.
        let per_query = (query.limit / shards.len() + 2).min(1_000);
        let mut events = Vec::new();
        let mut queries = 0;
        while events.len() < query.limit {
            let lowest = shards
                .iter()
                .enumerate()
                .filter_map(|(i, shard)| shard.buffer.front().map(|e| (i, e.position.clone())))
                .min_by(|a, b| a.1.cmp(&b.1));
            // A shard holds up the lowest event in hand only while it may still hold a
            // lower one: not read to its end, nothing in hand, and read to below it.
            let blocking: Vec<bool> = shards
                .iter()
                .map(|shard| {
                    shard.needs_reading()
                        && lowest.as_ref().is_none_or(|(_, low)| shard.read_to().is_none_or(|r| r < *low))
                })
                .collect();
            let reading = blocking.iter().filter(|b| **b).count();
            if reading == 0 {
                match lowest.and_then(|(i, _)| shards.get_mut(i)).and_then(|shard| shard.buffer.pop_front()) {
                    Some(event) => events.push(event),
                    None => break,
                }
                continue;
            }
            if queries >= shards.len() + MAX_QUERIES {
                break;
            }
            queries += reading;
            let reads = shards
                .iter()
                .zip(&blocking)
                .filter(|(_, blocks)| **blocks)
                .map(|(shard, _)| self.read_shard(shard, &from, until.as_deref(), query, per_query));
            let mut pages = futures_util::future::join_all(reads).await.into_iter();
            for (shard, _) in shards.iter_mut().zip(&blocking).filter(|(_, blocks)| **blocks) {
                if let Some(page) = pages.next() {
                    let (items, next) = page?;
                    shard.fill(items, next);
                }
            }
        }
        let ids: Vec<String> = events.iter().map(|e| e.id().to_owned()).collect();
        let counts = self.counts(&ids.iter().map(String::as_str).collect::<Vec<_>>()).await?;
        for event in &mut events {
            // The item's own count is of the attempts it kept before the counter items.
            event.attempt_count += counts.get(event.id()).copied().unwrap_or(0);
        }
        let exhausted = shards.iter().all(|s| s.done && s.buffer.is_empty());
        let next = match (events.last(), events.len() >= query.limit || !exhausted) {
            (_, false) => None,
            // Every event after the last one returned is still unread or in a buffer: it was
            // returned only once no shard could still hold a lower one.
            (Some(last), true) => Some(last.position.clone()),
            // Nothing matched within the query budget: continue below what is unread.
            (None, true) => Some(resume_point(&shards, &from)),
        };
        Ok(EventPage { events, next })
    }

    /// The next events of one shard after `shard.after` (or `from`), at most `limit`.
    async fn read_shard(
        &self,
        shard: &Shard,
        from: &str,
        until: Option<&str>,
        query: &EventQuery,
        limit: usize,
    ) -> Result<(Vec<StoredEvent>, Option<HashMap<String, AttributeValue>>), StoreError> {
        let mut request = self
            .client
            .query()
            .table_name(&self.table)
            .index_name(FEED_INDEX)
            .expression_attribute_names("#feed", "feed")
            .expression_attribute_names("#position", "position")
            .expression_attribute_values(":feed", AttributeValue::S(shard.value.clone()))
            .expression_attribute_values(":from", AttributeValue::S(from.to_owned()))
            .limit(i32::try_from(limit).unwrap_or(1_000))
            .set_exclusive_start_key(shard.start.clone());
        request = match until {
            Some(until) => request
                .key_condition_expression("#feed = :feed AND #position BETWEEN :from AND :until")
                .expression_attribute_values(":until", AttributeValue::S(until.to_owned())),
            None => request.key_condition_expression("#feed = :feed AND #position > :from"),
        };
        let mut filters = Vec::new();
        if let Some(kind) = &query.kind {
            filters.push("#type = :type");
            request = request
                .expression_attribute_names("#type", "type")
                .expression_attribute_values(":type", AttributeValue::S(kind.as_str().to_owned()));
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
        let mut events = Vec::new();
        for item in output.items.unwrap_or_default() {
            let event = decode(item)?;
            // BETWEEN includes its bound; `from` is exclusive (a cursor, or a bare time
            // no position equals).
            if event.position != from {
                events.push(event);
            }
        }
        Ok((events, output.last_evaluated_key.filter(|key| !key.is_empty())))
    }
}

/// One feed shard as a listing reads it: what it has read and not yet returned, and where
/// its next query starts.
#[derive(Debug)]
struct Shard {
    value: String,
    buffer: std::collections::VecDeque<StoredEvent>,
    start: Option<HashMap<String, AttributeValue>>,
    /// Read to its end.
    done: bool,
}

impl Shard {
    fn new(value: String) -> Self {
        Shard { value, buffer: Default::default(), start: None, done: false }
    }

    fn needs_reading(&self) -> bool {
        self.buffer.is_empty() && !self.done
    }

    fn fill(&mut self, events: Vec<StoredEvent>, next: Option<HashMap<String, AttributeValue>>) {
        self.buffer.extend(events);
        self.done = next.is_none();
        self.start = next;
    }

    /// The position up to which this shard has been read.
    fn read_to(&self) -> Option<String> {
        self.start.as_ref().and_then(|key| key.get("position")).and_then(|v| v.as_s().ok()).cloned()
    }
}

/// A cursor below every unread and unreturned event, when a listing returned none: the
/// least of each unfinished shard's progress, and just below each buffered event.
fn resume_point(shards: &[Shard], from: &str) -> String {
    let below = |position: &str| {
        let nanos: i128 = position.split_once('#').and_then(|(n, _)| n.parse().ok()).unwrap_or(0);
        // `~` sorts after every id character: above every position of that nanosecond.
        format!("{:020}#~", (nanos - 1).max(0))
    };
    shards
        .iter()
        .filter_map(|shard| match shard.buffer.front() {
            Some(event) => Some(below(&event.position)),
            None if shard.done => None,
            // Never read (the budget ran out first): nothing past the cursor is known read.
            None => Some(shard.read_to().unwrap_or_else(|| from.to_owned())),
        })
        .min()
        .map_or_else(|| from.to_owned(), |point| point.max(from.to_owned()))
}

/// The feed shard of event `id`.
pub(crate) fn feed_of(id: &str) -> String {
    crate::model::shard::sharded(FEED, id, crate::model::shard::FEED_SHARDS)
}

/// Every value of `feed`: each shard's, then the unsharded one.
pub fn feed_values() -> Vec<String> {
    let mut values = crate::model::shard::all(FEED, crate::model::shard::FEED_SHARDS);
    values.push(FEED.to_owned());
    values
}

/// The key of event `id`'s attempt counter.
fn counter_key(id: &str) -> String {
    format!("evt#{id}#count")
}

/// The event id of a counter key.
fn event_of_counter(key: &str) -> Option<&str> {
    key.strip_prefix("evt#")?.strip_suffix("#count")
}

/// `attempt_count` of an item.
fn count_of(item: &HashMap<String, AttributeValue>) -> Option<u32> {
    item.get("attempt_count").and_then(|v| v.as_n().ok()).and_then(|n| n.parse().ok())
}

/// The key of the `number`-th attempt of event `id`.
fn attempt_key(id: &str, number: u32) -> String {
    format!("evt#{id}#{number}")
}

fn key(id: &str) -> String {
    format!("evt#{id}")
}

/// The item of an idempotency key: the route's and the key's hash (a client's key is any
/// text; the hash keeps the item's key short and its own).
fn idempotency_key(route: &str, key: &str) -> String {
    use sha2::{Digest, Sha256};
    let digest = Sha256::digest(format!("{route}\n{key}").as_bytes());
    format!("idem#{}", hex::encode(digest.get(..16).unwrap_or_default()))
}

/// How long an idempotency key answers its first request again.
pub const IDEMPOTENCY_RETENTION: time::Duration = time::Duration::hours(24);

/// What a request under an idempotency key finds ([`EventLog::begin_idempotent`]).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Idempotent {
    /// The key is new: act, then keep the answer.
    New,
    /// The first request with the key was answered so: answer the same, act not.
    Answered { status: u16, answer: String },
    /// The first request with the key is still being acted on.
    InProgress,
    /// The key was used with another request.
    Reused,
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

    /// The descriptions, applied as the store sends them: the event item is stored once
    /// and delivered once, the counter counts, and the attempt item reads back as sent.
    #[test]
    fn attempt_writes_store_once_count_and_keep_the_attempt() {
        let record = crate::model::tests::record("azqr", "123456789012", crate::model::Status::Completed, at(0));
        let event = MerchantEvent::for_record(&record).expect("event");
        let attempt = |status: u16| Attempt {
            at: at(5),
            status: Some(status),
            error: None,
            duration_ms: 12,
            response: Some("busy".into()),
            kind: AttemptKind::Automatic,
        };
        let day = Duration::from_secs(86_400);
        let failed = AttemptWrites::new(&event, "{}", &attempt(503), false, day).expect("writes");
        let delivered = AttemptWrites::new(&event, "{\"changed\":1}", &attempt(204), true, day).expect("writes");
        let stored = failed.event.apply(&HashMap::new());
        let after = delivered.event.apply(&stored);
        assert_eq!(after["body"], AttributeValue::S("{}".into()), "the body as first stored");
        assert_eq!(after["feed"], stored["feed"]);
        assert!(!stored.contains_key("delivered_at") && after.contains_key("delivered_at"));
        let counted = delivered.counter.apply(&failed.counter.apply(&HashMap::new()));
        assert_eq!(count_of(&counted), Some(2));
        let item = delivered.attempt(2).apply(&HashMap::new());
        assert_eq!(item[KEY_ATTRIBUTE], AttributeValue::S(attempt_key(&event.id, 2)));
        let read: Attempt = serde_dynamo::from_item(item).expect("an attempt");
        assert_eq!(read, attempt(204));
    }

    fn at(seconds: i64) -> OffsetDateTime {
        OffsetDateTime::from_unix_timestamp(1_795_000_000 + seconds).expect("time")
    }
}
