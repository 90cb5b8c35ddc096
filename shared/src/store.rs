//! The transaction store: one DynamoDB item per (provider, reference), written with a
//! single conditional `UpdateItem` per observation and no read before the write. The
//! model decides (what applies, what the record becomes, why nothing changed); the store
//! only translates that into DynamoDB's expressions and back.

use std::collections::HashMap;

use aws_sdk_dynamodb::operation::update_item::UpdateItemError;
use aws_sdk_dynamodb::types::{AttributeValue, ReturnValue, ReturnValuesOnConditionCheckFailure};
use time::format_description::well_known::Rfc3339;
use time::OffsetDateTime;

use crate::model::notification::{NotificationOutcome, PENDING_FIELD, UNQUEUED_PREFIX};
use crate::model::refund::{REFUND_PREFIX, SETTLED_SUFFIX, WORD_PREFIX};
use crate::model::{
    transaction_key, Change, Condition, Conflict, Decision, Edit, NotificationPending, Observation, RefundStatus,
    Registration, RegistrationMatch, Status, SyncStep, TransactionRecord, Value, WritePlan, MAX_CONFLICTS,
};

/// Partition key attribute of the table (string): `{provider}#{reference}`.
pub(crate) const KEY_ATTRIBUTE: &str = "pk";
/// The notification-pending marker; present only while a final outcome awaits delivery.
pub(crate) const PENDING_ATTRIBUTE: &str = PENDING_FIELD;
/// The sparse index on the marker (range key `final_at`), as in template.yaml.
pub(crate) const PENDING_INDEX: &str = "PendingNotifications";
/// The sparse index of non-final transactions by sync shard (`sync_shard`, one of
/// [`crate::model::shard::SYNC_SHARDS`] per provider) and next sync time (`sync_at`,
/// present only while the sync is scheduled), keys only, as in template.yaml.
pub(crate) const SYNC_INDEX: &str = "SyncShards";
/// The index the schedule was kept in before the sharding (partition `provider`, sort
/// `next_sync_at`): no write adds to it any more; the sync reads it until it is empty.
pub(crate) const LEGACY_SYNC_INDEX: &str = "SyncSchedule";
/// The sparse index of the transactions that need a human ([`crate::model::Attention`]).
pub(crate) const ATTENTION_INDEX: &str = "Attention";

#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("DynamoDB request failed")]
    Request(#[source] Box<dyn std::error::Error + Send + Sync>),
    #[error("stored item could not be decoded")]
    Decode(#[source] serde_dynamo::Error),
    #[error("time cannot be written as RFC 3339")]
    Timestamp(#[source] time::error::Format),
    /// A record's rank fell between two writes, which no write does: nothing more written.
    #[error("a stored status ranked lower than a moment before")]
    RankFell,
}

/// Whether a conditional write took: `Ok(false)` when its condition did not hold, the
/// request's error otherwise.
pub(crate) fn written<O, E, R>(result: Result<O, aws_sdk_dynamodb::error::SdkError<E, R>>) -> Result<bool, StoreError>
where
    E: aws_sdk_dynamodb::error::ProvideErrorMetadata + std::error::Error + Send + Sync + 'static,
    R: std::fmt::Debug + Send + Sync + 'static,
{
    use aws_sdk_dynamodb::error::ProvideErrorMetadata;
    match result {
        Ok(_) => Ok(true),
        Err(error) if error.as_service_error().and_then(ProvideErrorMetadata::code) == Some(CONDITION_FAILED) => {
            Ok(false)
        }
        Err(error) => Err(StoreError::Request(Box::new(error))),
    }
}

/// DynamoDB's error code for a write whose condition did not hold.
const CONDITION_FAILED: &str = "ConditionalCheckFailedException";

/// What a registration did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Registered {
    /// A new `created` record.
    Created(TransactionRecord),
    /// The record existed: the registration was attached (`Unregistered`), was already
    /// there (`Same`), or differs from the one there (`Different`, nothing changed).
    Existing { matched: RegistrationMatch, record: TransactionRecord },
}

/// A transaction that needs a human, as the `Attention` index lists it.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct AttentionEntry {
    pub provider: String,
    pub reference: String,
    pub status: String,
    /// The reasons ([`crate::model::Attention`]), in order.
    pub attention: Vec<String>,
    /// Its place in the index (the `attention_at` sort key): a page's last is its cursor.
    #[serde(skip)]
    pub cursor: String,
}

/// A page of [`TransactionStore::needing_attention`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AttentionPage {
    pub entries: Vec<AttentionEntry>,
    /// The cursor of the next page, if there is one.
    pub next: Option<String>,
}

/// What recording a conflict did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum ConflictWrite {
    /// Newly kept on the record.
    Recorded { record: TransactionRecord, conflict: Conflict },
    /// Already kept (or the record holds [`MAX_CONFLICTS`]); nothing changed.
    Known(TransactionRecord),
}

#[derive(Debug, Clone)]
pub struct TransactionStore {
    client: aws_sdk_dynamodb::Client,
    table: String,
}

impl TransactionStore {
    pub fn new(client: aws_sdk_dynamodb::Client, table: impl Into<String>) -> Self {
        TransactionStore { client, table: table.into() }
    }

    /// The DynamoDB client and table, for the notifier's delivery-health item.
    pub fn parts(&self) -> (aws_sdk_dynamodb::Client, String) {
        (self.client.clone(), self.table.clone())
    }

    /// Applies `observation` if the transition rule allows it, in one conditional write:
    /// the model's [`Change`], with its condition [`crate::model::applies`] written as
    /// `attribute_not_exists(pk) OR rank < :rank`. When the condition fails, DynamoDB
    /// returns the current item, and the model says why without a read: what the write
    /// decided, and the record as it now stands.
    ///
    /// A word with money after the outcome (refunds, an under-payment, an after-final word)
    /// first tries the write that keeps it alone, on a record its status does not move (one
    /// write, the usual case: a refund after the final status); failing that, the status
    /// write carries it (two writes: a refund on a transaction's first word); and if another
    /// word moved the record in between, the write that keeps it alone again (three).
    pub async fn record(
        &self,
        provider: &str,
        observation: &Observation,
        now: OffsetDateTime,
        sync: WritePlan,
    ) -> Result<(Decision, TransactionRecord), StoreError> {
        let reference = observation.reference.as_str();
        let not_applied =
            |current: TransactionRecord| (Decision::not_applied(current.status, observation.status), current);
        if !observation.has_money_after() {
            return match self.apply(provider, reference, Change::observed(provider, observation, now, sync)).await? {
                Ok(record) => Ok((Decision::Apply, record)),
                Err(current) => Ok(not_applied(current)),
            };
        }
        // Money after the outcome mostly comes once the status it names is stored (a refund
        // after the final): kept alone, in one write, while the status does not apply.
        // Otherwise the status write carries it; and should another word have moved the
        // record meanwhile, so that the status no longer applies, it is kept alone after all.
        let money_after = || Change::money_after(provider, observation, now, sync);
        if let Ok(record) = self.apply_to_any(provider, reference, money_after()).await? {
            return Ok(not_applied(record));
        }
        match self.apply(provider, reference, Change::observed(provider, observation, now, sync)).await? {
            Ok(record) => Ok((Decision::Apply, record)),
            // The record exists and ranks at least the word now: this applies.
            Err(_) => match self.apply(provider, reference, money_after()).await? {
                Ok(record) => Ok(not_applied(record)),
                Err(_) => Err(StoreError::RankFell),
            },
        }
    }

    /// A merchant's registration: a new `created` record if none exists; otherwise the
    /// registration is attached to a record not yet registered, or compared with the
    /// one it has. Never moves a record's status.
    pub async fn register(
        &self,
        provider: &str,
        reference: &str,
        registration: &Registration,
        now: OffsetDateTime,
        sync: WritePlan,
    ) -> Result<Registered, StoreError> {
        let change = Change::register(provider, reference, registration, now, sync);
        let existing = match self.apply(provider, reference, change).await? {
            Ok(record) => return Ok(Registered::Created(record)),
            Err(existing) => existing,
        };
        let matched = registration.compare(&existing);
        if matched != RegistrationMatch::Unregistered {
            return Ok(Registered::Existing { matched, record: existing });
        }
        match self.apply(provider, reference, Change::attach(registration, now)).await? {
            Ok(record) => Ok(Registered::Existing { matched, record }),
            // Another registration came first: compare with it.
            Err(record) => Ok(Registered::Existing { matched: registration.compare(&record), record }),
        }
    }

    /// One conditional `UpdateItem` for `change`: the record as it now stands, or, when
    /// the condition fails, as it stood (DynamoDB returns it: no read).
    async fn apply(
        &self,
        provider: &str,
        reference: &str,
        change: Change,
    ) -> Result<Result<TransactionRecord, TransactionRecord>, StoreError> {
        match self.apply_to_any(provider, reference, change).await? {
            Ok(record) => Ok(Ok(record)),
            Err(existing) => Ok(Err(decode(existing)?)),
        }
    }

    /// As [`Self::apply`], for a change whose condition also fails when there is no
    /// record: when it fails, the item as it stood, empty if there is none.
    async fn apply_to_any(
        &self,
        provider: &str,
        reference: &str,
        change: Change,
    ) -> Result<Result<TransactionRecord, HashMap<String, AttributeValue>>, StoreError> {
        let update = Update::translate(change)?;
        let result = self
            .client
            .update_item()
            .table_name(&self.table)
            .key(KEY_ATTRIBUTE, AttributeValue::S(transaction_key(provider, reference)))
            .update_expression(update.expression)
            .condition_expression(update.condition)
            .set_expression_attribute_names(Some(update.names))
            .set_expression_attribute_values(Some(update.values))
            .return_values(ReturnValue::AllNew)
            .return_values_on_condition_check_failure(ReturnValuesOnConditionCheckFailure::AllOld)
            .send()
            .await;
        match result {
            Ok(output) => Ok(Ok(decode(output.attributes.unwrap_or_default())?)),
            Err(error) => match error.as_service_error() {
                Some(UpdateItemError::ConditionalCheckFailedException(failed)) => {
                    Ok(Err(failed.item().cloned().unwrap_or_default()))
                }
                _ => Err(StoreError::Request(Box::new(error))),
            },
        }
    }

    /// Keeps `observation`, a final status that contradicts the stored final `stored`, on
    /// the record ([`Change::conflict`]), in one conditional write.
    pub(crate) async fn record_conflict(
        &self,
        provider: &str,
        observation: &Observation,
        stored: Status,
        now: OffsetDateTime,
    ) -> Result<ConflictWrite, StoreError> {
        let (change, conflict) = Change::conflict(provider, observation, stored, now);
        match self.apply(provider, &observation.reference, change).await? {
            Ok(record) => Ok(ConflictWrite::Recorded { record, conflict }),
            Err(current) => Ok(ConflictWrite::Known(current)),
        }
    }

    /// `provider`'s transactions whose next sync is due at `now` (non-final, or with a refund
    /// pending), oldest first:
    /// at most `per_shard` from each of its sync shards (no scan), read in batches
    /// (consistently, so a transaction settled a moment ago is seen final), and up to as
    /// many again from the index kept before the sharding.
    pub async fn due_for_sync(
        &self,
        provider: &str,
        now: OffsetDateTime,
        per_shard: usize,
    ) -> Result<Vec<TransactionRecord>, StoreError> {
        let shards = crate::model::shard::all(provider, crate::model::shard::SYNC_SHARDS);
        let keys = self.due_in_shards(provider, &shards, true, now, per_shard).await?;
        self.due_records(&keys, now).await
    }

    /// The table keys of the transactions due at `now` in some of `provider`'s sync shards
    /// (`legacy`: and in the index kept before the sharding), at most `per_shard` from
    /// each, oldest first. Keys only, so that a run holds a large batch's keys and reads
    /// the records a few hundred at a time ([`Self::due_records`]).
    pub async fn due_in_shards(
        &self,
        provider: &str,
        shards: &[String],
        legacy: bool,
        now: OffsetDateTime,
        per_shard: usize,
    ) -> Result<Vec<String>, StoreError> {
        let cutoff = timestamp(crate::model::sync::index_time(now))?;
        let per_shard = per_shard.max(1);
        let reads =
            shards.iter().map(|shard| self.due_keys(SYNC_INDEX, crate::model::SYNC_SHARD, shard, &cutoff, per_shard));
        let mut keys = Vec::new();
        for read in futures_util::future::join_all(reads).await {
            keys.extend(read?);
        }
        if legacy {
            let limit = per_shard * shards.len().max(1);
            keys.extend(self.due_keys(LEGACY_SYNC_INDEX, "provider", provider, &cutoff, limit).await?);
        }
        keys.sort();
        let mut seen = std::collections::HashSet::new();
        Ok(keys.into_iter().filter_map(|(_, key)| seen.insert(key.clone()).then_some(key)).collect())
    }

    /// The records of `keys` still due at `now` and not final, or final with a refund
    /// pending, oldest first, read consistently. Any other final record still listed (its
    /// last refund settled by a webhook, or a write of the previous release, during an
    /// upgrade, kept its schedule) would stay at the head of its shard: its schedule is
    /// ended.
    pub async fn due_records(
        &self,
        keys: &[String],
        now: OffsetDateTime,
    ) -> Result<Vec<TransactionRecord>, StoreError> {
        let now = crate::model::sync::index_time(now);
        let mut due = self.get_many(keys.to_vec()).await?;
        let settled = |record: &TransactionRecord| record.status.is_final() && !record.awaits_refund();
        for record in due.iter().filter(|record| settled(record)) {
            if let Err(error) = self.end_schedule(record).await {
                tracing::warn!(provider = %record.provider, reference = %record.reference, error = %error, "could not end the schedule of a final transaction");
            }
        }
        due.retain(|record| !settled(record) && record.next_sync_at.is_some_and(|at| at <= now));
        due.sort_by_key(|record| record.next_sync_at);
        Ok(due)
    }

    /// Removes the schedule of a final `record` (while it is final): its last refund settled.
    pub async fn end_schedule(&self, record: &TransactionRecord) -> Result<(), StoreError> {
        self.apply_if(&record.provider, &record.reference, Change::end_schedule(record.status)).await.map(|_| ())
    }

    /// (time, key) of up to `limit` entries due by `cutoff` under `partition` (the
    /// attribute `partition_attribute`) of a sync index, oldest first, page by page.
    async fn due_keys(
        &self,
        index: &str,
        partition_attribute: &str,
        partition: &str,
        cutoff: &str,
        limit: usize,
    ) -> Result<Vec<(String, String)>, StoreError> {
        let time_attribute = match index {
            SYNC_INDEX => crate::model::SYNC_AT,
            _ => crate::model::LEGACY_SYNC_AT,
        };
        let text = |item: &HashMap<String, AttributeValue>, name: &str| {
            item.get(name).and_then(|v| v.as_s().ok()).cloned().unwrap_or_default()
        };
        let mut keys = Vec::new();
        let mut start = None;
        while keys.len() < limit {
            let output = self
                .client
                .query()
                .table_name(&self.table)
                .index_name(index)
                .key_condition_expression("#partition = :partition AND #at <= :now")
                .projection_expression("#key, #at")
                .expression_attribute_names("#partition", partition_attribute)
                .expression_attribute_names("#at", time_attribute)
                .expression_attribute_names("#key", KEY_ATTRIBUTE)
                .expression_attribute_values(":partition", AttributeValue::S(partition.to_owned()))
                .expression_attribute_values(":now", AttributeValue::S(cutoff.to_owned()))
                .limit(i32::try_from(limit - keys.len()).unwrap_or(i32::MAX))
                .set_exclusive_start_key(start)
                .send()
                .await
                .map_err(|e| StoreError::Request(Box::new(e)))?;
            let items = output.items.unwrap_or_default();
            keys.extend(items.iter().map(|item| (text(item, time_attribute), text(item, KEY_ATTRIBUTE))));
            start = output.last_evaluated_key;
            if start.is_none() {
                break;
            }
        }
        Ok(keys)
    }

    /// The records of `keys` (table keys) that exist, read consistently, 100 to a
    /// `BatchGetItem`; keys DynamoDB leaves unprocessed are asked again a few times.
    async fn get_many(&self, keys: Vec<String>) -> Result<Vec<TransactionRecord>, StoreError> {
        let items = batch_get(&self.client, &self.table, &keys, true).await?;
        Ok(items.into_iter().filter_map(decode_or_skip).collect())
    }

    /// Takes the lease `name` for `holder` until `until`, if no one holds it at `now`
    /// (one conditional write; the lease item `lease#<name>` is no transaction). Returns
    /// whether it was taken.
    pub async fn take_lease(
        &self,
        name: &str,
        holder: &str,
        now: OffsetDateTime,
        until: OffsetDateTime,
    ) -> Result<bool, StoreError> {
        let result = self
            .client
            .update_item()
            .table_name(&self.table)
            .key(KEY_ATTRIBUTE, AttributeValue::S(lease_key(name)))
            .update_expression("SET #holder = :holder, #until = :until")
            .condition_expression("attribute_not_exists(#until) OR #until < :now")
            .expression_attribute_names("#holder", "holder")
            .expression_attribute_names("#until", "held_until")
            .expression_attribute_values(":holder", AttributeValue::S(holder.to_owned()))
            .expression_attribute_values(":until", AttributeValue::S(timestamp(until)?))
            .expression_attribute_values(":now", AttributeValue::S(timestamp(now)?))
            .send()
            .await;
        written(result)
    }

    /// Gives the lease `name` back, if `holder` still holds it (the item is deleted).
    pub async fn release_lease(&self, name: &str, holder: &str) -> Result<(), StoreError> {
        let result = self
            .client
            .delete_item()
            .table_name(&self.table)
            .key(KEY_ATTRIBUTE, AttributeValue::S(lease_key(name)))
            .condition_expression("#holder = :holder")
            .expression_attribute_names("#holder", "holder")
            .expression_attribute_values(":holder", AttributeValue::S(holder.to_owned()))
            .send()
            .await;
        // Not written: expired and taken by another run meanwhile, theirs now.
        written(result).map(|_| ())
    }

    /// Puts `record` in the `Attention` index for the reasons it has that the index does
    /// not hold it for yet ([`Change::attention`]), at `now`. Returns the reasons written:
    /// none when there were none, or when the record moved meanwhile (the write that moved
    /// it flags what it made).
    pub async fn flag_attention(
        &self,
        record: &TransactionRecord,
        now: OffsetDateTime,
    ) -> Result<Vec<crate::model::Attention>, StoreError> {
        let Some(change) = Change::attention(record, now) else { return Ok(Vec::new()) };
        let written = self.apply_if(&record.provider, &record.reference, change).await?;
        Ok(if written { record.attention_unflagged() } else { Vec::new() })
    }

    /// The transactions that need a human, most recently flagged first: up to `limit`
    /// after the cursor `after` (an earlier page's `next`). Every shard of the index is
    /// read (a query each, at most `limit` entries) and the shards merged, so a page and
    /// its cursor are exactly as with one partition.
    pub async fn needing_attention(&self, after: Option<&str>, limit: usize) -> Result<AttentionPage, StoreError> {
        use crate::model::{ATTENTION_AT, ATTENTION_SHARD};
        let limit = limit.clamp(1, 100);
        let queries =
            crate::model::shard::all("attention", crate::model::shard::ATTENTION_SHARDS).into_iter().map(|partition| {
                let mut query = self
                    .client
                    .query()
                    .table_name(&self.table)
                    .index_name(ATTENTION_INDEX)
                    .expression_attribute_names("#shard", ATTENTION_SHARD)
                    .expression_attribute_values(":shard", AttributeValue::S(partition))
                    .scan_index_forward(false)
                    .limit(i32::try_from(limit + 1).unwrap_or(i32::MAX));
                query = match after {
                    Some(after) => query
                        .key_condition_expression("#shard = :shard AND #at < :after")
                        .expression_attribute_names("#at", ATTENTION_AT)
                        .expression_attribute_values(":after", AttributeValue::S(after.to_owned())),
                    None => query.key_condition_expression("#shard = :shard"),
                };
                query.send()
            });
        let mut entries = Vec::new();
        for answer in futures_util::future::join_all(queries).await {
            let answer = answer.map_err(|e| StoreError::Request(Box::new(e)))?;
            for item in answer.items.unwrap_or_default() {
                let text = |name: &str| item.get(name).and_then(|v| v.as_s().ok()).cloned();
                let (Some(provider), Some(reference), Some(status), Some(at)) =
                    (text("provider"), text("reference"), text("status"), text(ATTENTION_AT))
                else {
                    continue;
                };
                let reasons = item.get(crate::model::attention::ATTENTION_REASONS).and_then(|v| v.as_ss().ok());
                let mut attention: Vec<String> = reasons.cloned().unwrap_or_default();
                attention.sort();
                entries.push(AttentionEntry { provider, reference, status, attention, cursor: at });
            }
        }
        // Newest first; each shard gave its newest `limit + 1`, so the first `limit` of
        // the merge are the index's, and one more means a next page.
        entries.sort_by(|a, b| b.cursor.cmp(&a.cursor));
        let more = entries.len() > limit;
        entries.truncate(limit);
        let next = more.then(|| entries.last().map(|e| e.cursor.clone())).flatten();
        Ok(AttentionPage { entries, next })
    }

    /// The transactions whose status sync is overdue: due before `before` and not asked
    /// yet (the sync lagging, or stuck), most overdue first, at most `limit`, as (table
    /// key, when it was due). Every sync shard of each of `providers` is read (a query
    /// each, keys only, at most `limit` entries): an operator's view, not a loop.
    pub async fn overdue_syncs(
        &self,
        providers: &[&str],
        before: OffsetDateTime,
        limit: usize,
    ) -> Result<Vec<(String, String)>, StoreError> {
        let cutoff = timestamp(crate::model::sync::index_time(before))?;
        let limit = limit.clamp(1, 100);
        let mut due = Vec::new();
        // A provider's shards at once, one provider after another.
        for provider in providers {
            let shards = crate::model::shard::all(provider, crate::model::shard::SYNC_SHARDS);
            let reads =
                shards.iter().map(|shard| self.due_keys(SYNC_INDEX, crate::model::SYNC_SHARD, shard, &cutoff, limit));
            for read in futures_util::future::join_all(reads).await {
                due.extend(read?.into_iter().map(|(at, key)| (key, at)));
            }
        }
        due.sort_by(|a, b| a.1.cmp(&b.1).then_with(|| a.0.cmp(&b.0)));
        due.truncate(limit);
        Ok(due)
    }

    /// Records what a sync that changed nothing decided for `record` ([`Change::reschedule`]).
    /// Returns whether it was written: not when a webhook moved the record meanwhile
    /// (which scheduled it afresh).
    pub async fn reschedule(
        &self,
        record: &TransactionRecord,
        step: SyncStep,
        now: OffsetDateTime,
    ) -> Result<bool, StoreError> {
        self.apply_if(&record.provider, &record.reference, Change::reschedule(record, step, now)).await
    }

    /// Records what became of the terminal event for `status` ([`Change::notified`]).
    /// Returns `false` (and changes nothing) when the marker was already cleared, so a
    /// redelivered message is harmless.
    pub async fn mark_notification(
        &self,
        provider: &str,
        reference: &str,
        status: Status,
        outcome: NotificationOutcome,
        now: OffsetDateTime,
    ) -> Result<bool, StoreError> {
        self.apply_if(provider, reference, Change::notified(provider, reference, status, outcome, now)).await
    }

    /// Marks a final record whose events' send failed where no provider retries
    /// ([`Change::unsent`]): the reconciler's next run sends them again.
    pub async fn mark_unsent(&self, provider: &str, reference: &str, status: Status) -> Result<bool, StoreError> {
        self.apply_if(provider, reference, Change::unsent(provider, reference, status)).await
    }

    /// Hands `status`'s pending notification to the queue ([`Change::queued`]): its event
    /// reached the notifier and a delivery failed, so SQS retries it (then its dead-letter
    /// queue), and the reconciler stops reading it.
    pub async fn mark_queued(&self, provider: &str, reference: &str, status: Status) -> Result<bool, StoreError> {
        self.apply_if(provider, reference, Change::queued(provider, reference, status)).await
    }

    /// Records whether the reconciler's last send of `record`'s event failed
    /// ([`Change::requeue_failed`]), while the record is still pending notification.
    pub async fn set_requeue_failed(&self, record: &TransactionRecord, failed: bool) -> Result<(), StoreError> {
        self.apply_if(&record.provider, &record.reference, Change::requeue_failed(failed)).await.map(|_| ())
    }

    /// One conditional `UpdateItem` for `change`, nothing returned: whether it applied.
    async fn apply_if(&self, provider: &str, reference: &str, change: Change) -> Result<bool, StoreError> {
        let update = Update::translate(change)?;
        let result = self
            .client
            .update_item()
            .table_name(&self.table)
            .key(KEY_ATTRIBUTE, AttributeValue::S(transaction_key(provider, reference)))
            .update_expression(update.expression)
            .condition_expression(update.condition)
            .set_expression_attribute_names(Some(update.names))
            .set_expression_attribute_values(Some(update.values).filter(|values| !values.is_empty()))
            .send()
            .await;
        written(result)
    }

    /// Final transactions whose notification is still pending and whose final status was
    /// reached before `final_before`, from the sparse index on the pending marker (no
    /// scan), a page at a time: memory stays bounded whatever the backlog. Those whose
    /// event never reached the notifier are all read; of those in the queue's hands, at
    /// most `queued_per_shard` per shard, oldest first, so that a merchant's long outage
    /// does not make a run read its whole backlog.
    pub fn pending_pages(
        &self,
        final_before: OffsetDateTime,
        queued_per_shard: usize,
    ) -> Result<PendingPages<'_>, StoreError> {
        let mut values: Vec<(String, Option<usize>)> =
            NotificationPending::index_values().into_iter().map(|value| (value, None)).collect();
        if queued_per_shard > 0 {
            values.extend(NotificationPending::queued_index_values().into_iter().map(|v| (v, Some(queued_per_shard))));
        }
        Ok(PendingPages { store: self, cutoff: timestamp(final_before)?, values, value: 0, read: 0, start: None })
    }

    /// Every page of [`Self::pending_pages`] at once (tools and tests; a backlog's size).
    pub async fn pending_notifications(
        &self,
        final_before: OffsetDateTime,
    ) -> Result<Vec<TransactionRecord>, StoreError> {
        let mut pages = self.pending_pages(final_before, usize::MAX)?;
        let mut all = Vec::new();
        while let Some(page) = pages.next().await? {
            all.extend(page);
        }
        Ok(all)
    }

    /// Reads one transaction (for tests, tools and the status API; the webhook path never reads).
    pub async fn get(&self, provider: &str, reference: &str) -> Result<Option<TransactionRecord>, StoreError> {
        let output = self
            .client
            .get_item()
            .table_name(&self.table)
            .key(KEY_ATTRIBUTE, AttributeValue::S(transaction_key(provider, reference)))
            .consistent_read(true)
            .send()
            .await
            .map_err(|e| StoreError::Request(Box::new(e)))?;
        output.item.map(decode).transpose()
    }
}

/// The pending-notification index, a page at a time, one shard after another.
#[derive(Debug)]
pub struct PendingPages<'a> {
    store: &'a TransactionStore,
    cutoff: String,
    /// Each partition-key value, and the most items to read from it.
    values: Vec<(String, Option<usize>)>,
    value: usize,
    /// Items read from the current value.
    read: usize,
    start: Option<HashMap<String, AttributeValue>>,
}

impl PendingPages<'_> {
    /// The next page (up to 1 MB of items), or `None` when every shard has been read.
    pub async fn next(&mut self) -> Result<Option<Vec<TransactionRecord>>, StoreError> {
        let Some((value, cap)) = self.values.get(self.value) else {
            return Ok(None);
        };
        let remaining = cap.map(|cap| cap.saturating_sub(self.read));
        let output = self
            .store
            .client
            .query()
            .table_name(&self.store.table)
            .index_name(PENDING_INDEX)
            .key_condition_expression("#pending = :pending AND #final_at < :cutoff")
            .expression_attribute_names("#pending", PENDING_ATTRIBUTE)
            .expression_attribute_names("#final_at", "final_at")
            .expression_attribute_values(":pending", AttributeValue::S(value.clone()))
            .expression_attribute_values(":cutoff", AttributeValue::S(self.cutoff.clone()))
            .set_limit(remaining.map(|n| i32::try_from(n.max(1)).unwrap_or(i32::MAX)))
            .set_exclusive_start_key(self.start.take())
            .send()
            .await
            .map_err(|e| StoreError::Request(Box::new(e)))?;
        self.read += output.items.as_ref().map_or(0, Vec::len);
        self.start = output.last_evaluated_key.filter(|key| !key.is_empty());
        let cap = *cap;
        if self.start.is_none() || cap.is_some_and(|cap| self.read >= cap) {
            self.value += 1;
            self.read = 0;
            self.start = None;
        }
        output.items.unwrap_or_default().into_iter().map(decode).collect::<Result<Vec<_>, _>>().map(Some)
    }
}

/// What the store's one conditional write would make of `item` (a record as DynamoDB holds
/// it, empty when there is none): `None` when the change's condition fails, otherwise the
/// item after it. Each value is translated exactly as the write translates it, so
/// `scripts/capacity` measures the attributes and sizes the store writes.
pub fn apply_change(
    item: &HashMap<String, AttributeValue>,
    change: Change,
) -> Result<Option<HashMap<String, AttributeValue>>, StoreError> {
    let exists = !item.is_empty();
    let rank = item.get("rank").and_then(|v| v.as_n().ok()).and_then(|n| n.parse::<u8>().ok());
    let at = |status: Status| item.get("status").and_then(|v| v.as_s().ok()).is_some_and(|s| s == status.as_str());
    let pending = item.get(PENDING_ATTRIBUTE).and_then(|v| v.as_s().ok());
    let applies = match change.condition {
        Condition::RankBelow(new) => !exists || rank.is_some_and(|rank| rank < new),
        Condition::RankAtLeast(new) => rank.is_some_and(|rank| rank >= new),
        Condition::Absent => !exists,
        Condition::Unregistered => exists && !item.contains_key("registered_at"),
        Condition::Scheduled(status) => {
            at(status) && (item.contains_key(crate::model::SYNC_AT) || item.contains_key(crate::model::LEGACY_SYNC_AT))
        }
        Condition::AtStatus(status) => at(status),
        Condition::NotificationPending(status) => pending.is_some() && at(status),
        Condition::NotYetQueued(status) => pending.is_some_and(|p| p.starts_with(UNQUEUED_PREFIX)) && at(status),
        Condition::AnyNotificationPending => pending.is_some(),
        Condition::NewConflict { stored, status } => {
            let seen = item.get("conflict_statuses").and_then(|v| v.as_ss().ok());
            let kept = item.get("conflicts").and_then(|v| v.as_l().ok()).map_or(0, Vec::len);
            at(stored) && !seen.is_some_and(|seen| seen.iter().any(|s| s == status.as_str())) && kept < MAX_CONFLICTS
        }
    };
    if !applies {
        return Ok(None);
    }
    let mut after = item.clone();
    for (field, edit, value) in change.fields {
        let name = attribute_name(field, &value);
        let value = attribute_value(value)?;
        match edit {
            Edit::Set => {
                after.insert(name, value);
            }
            Edit::SetIfAbsent => {
                after.entry(name).or_insert(value);
            }
            Edit::AddToSet => {
                let mut set = match after.remove(field) {
                    Some(AttributeValue::Ss(set)) => set,
                    Some(_) | None => Vec::new(),
                };
                let added = if let AttributeValue::Ss(texts) = value {
                    texts
                } else if let AttributeValue::S(text) = value {
                    vec![text]
                } else {
                    Vec::new()
                };
                for text in added {
                    if !set.contains(&text) {
                        set.push(text);
                    }
                }
                after.insert(field.to_owned(), AttributeValue::Ss(set));
            }
            Edit::Append => {
                let mut list = match after.remove(field) {
                    Some(AttributeValue::L(list)) => list,
                    Some(_) | None => Vec::new(),
                };
                if let AttributeValue::L(items) = value {
                    list.extend(items);
                }
                after.insert(field.to_owned(), AttributeValue::L(list));
            }
        }
    }
    for field in change.removed {
        after.remove(*field);
    }
    Ok(Some(after))
}

/// The attribute a field is written to: its name, or for the money after the outcome, one
/// attribute per refund and status or per word, named by the value.
fn attribute_name(field: &str, value: &Value) -> String {
    match value {
        Value::Refund(entry) => entry.attribute(),
        Value::RefundSettled(entry) => entry.settled_attribute(),
        Value::Word(word) => word.attribute(),
        Value::Text(_)
        | Value::Texts(_)
        | Value::Number(_)
        | Value::Flag(_)
        | Value::Time(_)
        | Value::History(_)
        | Value::Conflict(_)
        | Value::Details(_) => field.to_owned(),
    }
}

/// One of the model's values as the attribute the store writes.
fn attribute_value(value: Value) -> Result<AttributeValue, StoreError> {
    Ok(match value {
        Value::Text(text) => AttributeValue::S(text),
        Value::Texts(texts) => AttributeValue::Ss(texts),
        Value::Number(number) => AttributeValue::N(number.to_string()),
        Value::Flag(flag) => AttributeValue::Bool(flag),
        Value::Time(at) => AttributeValue::S(timestamp(at)?),
        Value::History(entry) => {
            AttributeValue::L(vec![serde_dynamo::to_attribute_value(entry).map_err(StoreError::Decode)?])
        }
        Value::Conflict(conflict) => {
            AttributeValue::L(vec![serde_dynamo::to_attribute_value(conflict).map_err(StoreError::Decode)?])
        }
        Value::Details(details) => serde_dynamo::to_attribute_value(details).map_err(StoreError::Decode)?,
        Value::Refund(entry) => serde_dynamo::to_attribute_value(entry).map_err(StoreError::Decode)?,
        Value::RefundSettled(entry) => AttributeValue::S(entry.status.as_str().to_owned()),
        Value::Word(word) => serde_dynamo::to_attribute_value(word).map_err(StoreError::Decode)?,
    })
}

/// A stored item as the record it is (what the store's reads decode).
pub fn record_of(item: HashMap<String, AttributeValue>) -> Result<TransactionRecord, StoreError> {
    decode(item)
}

/// The record a registration makes where there is none, translated as the store writes
/// it (every value, its sync schedule included) and decoded back, without sending it: for
/// the fuzz targets, which check that every registration the API accepts is writable.
pub fn registered_record(
    provider: &str,
    reference: &str,
    registration: &Registration,
    now: OffsetDateTime,
    plan: WritePlan,
) -> Result<TransactionRecord, StoreError> {
    let change = Change::register(provider, reference, registration, now, plan);
    Update::translate(change.clone())?;
    match apply_change(&HashMap::new(), change)? {
        Some(item) => decode(item),
        None => Err(StoreError::Decode(serde::de::Error::custom("a registration applies where there is no record"))),
    }
}

/// Builds the conditional update for `observation` without sending it; returns the
/// update expression and how many values it binds. For benchmarks of the request path.
pub fn build_update(
    provider: &str,
    observation: &Observation,
    now: OffsetDateTime,
) -> Result<(String, usize), StoreError> {
    let update = Update::translate(Change::observed(provider, observation, now, WritePlan::default()))?;
    Ok((update.expression, update.values.len()))
}

/// A write to one item that is not a transaction record (the event log's items, the
/// merchant's health), as data: the store sends it, and `scripts/capacity` applies the
/// same description to measure it, so the two cannot drift.
#[derive(Debug, Clone, PartialEq)]
pub struct ItemWrite {
    /// The item's key (`pk`).
    pub key: String,
    pub edits: Vec<(String, ItemEdit, AttributeValue)>,
    /// Attributes removed.
    pub removed: Vec<String>,
    /// The item is replaced whole (`PutItem`) rather than updated.
    pub replace: bool,
}

/// How an [`ItemWrite`] changes one attribute.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ItemEdit {
    Set,
    /// Only when the item does not have the attribute yet.
    SetIfAbsent,
    /// A number added to the attribute (0 when absent).
    Add,
}

impl ItemWrite {
    /// The item after this write (`item` empty when there is none).
    pub fn apply(&self, item: &HashMap<String, AttributeValue>) -> HashMap<String, AttributeValue> {
        let mut after = if self.replace { HashMap::new() } else { item.clone() };
        after.insert(KEY_ATTRIBUTE.to_owned(), AttributeValue::S(self.key.clone()));
        for (name, edit, value) in &self.edits {
            match edit {
                ItemEdit::Set => {
                    after.insert(name.clone(), value.clone());
                }
                ItemEdit::SetIfAbsent => {
                    after.entry(name.clone()).or_insert_with(|| value.clone());
                }
                ItemEdit::Add => {
                    let number = |v: Option<&AttributeValue>| {
                        v.and_then(|v| v.as_n().ok()).and_then(|n| n.parse::<i64>().ok()).unwrap_or(0)
                    };
                    let sum = number(after.get(name)) + number(Some(value));
                    after.insert(name.clone(), AttributeValue::N(sum.to_string()));
                }
            }
        }
        for name in &self.removed {
            after.remove(name);
        }
        after
    }

    /// Sends the write.
    pub async fn send(&self, client: &aws_sdk_dynamodb::Client, table: &str) -> Result<(), StoreError> {
        self.send_with(client, table, ReturnValue::None).await.map(|_| ())
    }

    /// Sends the write; the attributes it updated, as they now are (none for a
    /// replacement): a counter's new count, a time kept if it was set.
    pub async fn send_returning(
        &self,
        client: &aws_sdk_dynamodb::Client,
        table: &str,
    ) -> Result<HashMap<String, AttributeValue>, StoreError> {
        self.send_with(client, table, ReturnValue::UpdatedNew).await
    }

    /// A replacement as a `PutItem`; an update as an `UpdateItem` whose expression the
    /// record's translation ([`Update`]) builds.
    async fn send_with(
        &self,
        client: &aws_sdk_dynamodb::Client,
        table: &str,
        returning: ReturnValue,
    ) -> Result<HashMap<String, AttributeValue>, StoreError> {
        if self.replace {
            let item = self.apply(&HashMap::new());
            client
                .put_item()
                .table_name(table)
                .set_item(Some(item))
                .send()
                .await
                .map_err(|e| StoreError::Request(Box::new(e)))?;
            return Ok(HashMap::new());
        }
        let mut update = Update::new("");
        for (name, edit, value) in &self.edits {
            match edit {
                ItemEdit::Set => update.set(name, value.clone()),
                ItemEdit::SetIfAbsent => update.set_if_absent(name, value.clone()),
                ItemEdit::Add => update.add(name, value.clone()),
            }
        }
        update.finish(self.removed.iter().map(String::as_str));
        let output = client
            .update_item()
            .table_name(table)
            .key(KEY_ATTRIBUTE, AttributeValue::S(self.key.clone()))
            .update_expression(update.expression)
            .set_expression_attribute_names(Some(update.names))
            .set_expression_attribute_values(Some(update.values).filter(|values| !values.is_empty()))
            .return_values(returning)
            .send()
            .await
            .map_err(|e| StoreError::Request(Box::new(e)))?;
        Ok(output.attributes.unwrap_or_default())
    }
}

/// The key of a lease item: `lease#` cannot begin a transaction key (`{provider}#...`,
/// providers are lowercase letters and digits) or an event's (`evt#`).
fn lease_key(name: &str) -> String {
    format!("lease#{name}")
}

/// A time as stored: RFC 3339 text, the format the record's serde uses too.
fn timestamp(at: OffsetDateTime) -> Result<String, StoreError> {
    at.format(&Rfc3339).map_err(StoreError::Timestamp)
}

/// The items of `keys` (table keys) that exist, in any order, 100 to a `BatchGetItem`
/// (`consistent`: strongly consistent reads); keys DynamoDB leaves unprocessed (under
/// throttling) are asked again, at most four more times. The store's and the event
/// log's batch reads all go through here.
pub(crate) async fn batch_get(
    client: &aws_sdk_dynamodb::Client,
    table: &str,
    keys: &[String],
    consistent: bool,
) -> Result<Vec<HashMap<String, AttributeValue>>, StoreError> {
    let mut items = Vec::with_capacity(keys.len());
    for chunk in keys.chunks(100) {
        let keys = chunk.iter().map(|key| HashMap::from([(KEY_ATTRIBUTE.to_owned(), AttributeValue::S(key.clone()))]));
        let request = aws_sdk_dynamodb::types::KeysAndAttributes::builder()
            .set_keys(Some(keys.collect()))
            .consistent_read(consistent)
            .build()
            .map_err(|e| StoreError::Request(Box::new(e)))?;
        let mut request = Some(request);
        for _ in 0..5 {
            let Some(keys) = request.take() else { break };
            let output = client
                .batch_get_item()
                .request_items(table, keys)
                .send()
                .await
                .map_err(|e| StoreError::Request(Box::new(e)))?;
            items.extend(output.responses.unwrap_or_default().remove(table).unwrap_or_default());
            request = output.unprocessed_keys.and_then(|mut unprocessed| unprocessed.remove(table));
        }
    }
    Ok(items)
}

/// A scheduled record, or `None` (logged) when it cannot be read: one bad item never
/// stops the sync of the others.
fn decode_or_skip(item: HashMap<String, AttributeValue>) -> Option<TransactionRecord> {
    let key = item.get(KEY_ATTRIBUTE).and_then(|k| k.as_s().ok()).cloned().unwrap_or_default();
    match decode(item) {
        Ok(record) => Some(record),
        Err(error) => {
            tracing::error!(key, error = %error, "a scheduled transaction could not be read: skipped");
            None
        }
    }
}

fn decode(mut item: HashMap<String, AttributeValue>) -> Result<TransactionRecord, StoreError> {
    // The money after the outcome: one attribute per refund and status, and per word.
    let (mut refunds, mut settled, mut words) = (Vec::new(), Vec::new(), Vec::new());
    let names: Vec<String> =
        item.keys().filter(|k| k.starts_with(REFUND_PREFIX) || k.starts_with(WORD_PREFIX)).cloned().collect();
    for name in names {
        let Some(value) = item.remove(&name) else { continue };
        if !name.starts_with(REFUND_PREFIX) {
            words.push(serde_dynamo::from_attribute_value(value).map_err(StoreError::Decode)?);
        } else if let Some(id) = name.strip_prefix(REFUND_PREFIX).and_then(|n| n.strip_suffix(SETTLED_SUFFIX)) {
            let status: RefundStatus = serde_dynamo::from_attribute_value(value).map_err(StoreError::Decode)?;
            settled.push((id.to_owned(), status));
        } else {
            refunds.push(serde_dynamo::from_attribute_value(value).map_err(StoreError::Decode)?);
        }
    }
    let record = serde_dynamo::from_item::<_, TransactionRecord>(item).map_err(StoreError::Decode)?;
    Ok(record.with_money_after(refunds, &settled, words).derive())
}

/// The update expression and its placeholders for one observation.
struct Update {
    expression: String,
    /// The `ADD` clauses, placed after the `SET` ones.
    adds: String,
    /// Attributes named by their values so far ([`Update::set_if_absent_as`]).
    named: usize,
    condition: &'static str,
    names: HashMap<String, String>,
    values: HashMap<String, AttributeValue>,
}

impl Update {
    /// The model's change as an update expression, each value as its attribute type.
    fn translate(change: Change) -> Result<Self, StoreError> {
        let condition = match change.condition {
            Condition::RankBelow(_) => "attribute_not_exists(#pk) OR #rank < :rank",
            Condition::RankAtLeast(_) => "attribute_exists(#pk) AND #rank >= :rank",
            Condition::Absent => "attribute_not_exists(#pk)",
            Condition::Unregistered => "attribute_exists(#pk) AND attribute_not_exists(#registered_at)",
            Condition::Scheduled(_) => {
                "#status = :expected_status AND (attribute_exists(#sync_at) OR attribute_exists(#next_sync_at))"
            }
            Condition::AtStatus(_) => "#status = :expected_status",
            Condition::NotificationPending(_) => {
                "attribute_exists(#notification_pending) AND #status = :expected_status"
            }
            Condition::NotYetQueued(_) => {
                "begins_with(#notification_pending, :unqueued) AND #status = :expected_status"
            }
            Condition::AnyNotificationPending => "attribute_exists(#notification_pending)",
            Condition::NewConflict { .. } => {
                "#status = :expected_status \
                 AND (attribute_not_exists(#conflict_statuses) OR NOT contains(#conflict_statuses, :conflict_status)) \
                 AND (attribute_not_exists(#conflicts) OR size(#conflicts) < :max_conflicts)"
            }
        };
        let mut update = Update::new(condition);
        // Every time in one change is the same instant: formatted once.
        let mut formatted: Option<(OffsetDateTime, String)> = None;
        for (field, edit, value) in change.fields {
            let value = match value {
                Value::Time(at) => match &formatted {
                    Some((cached, text)) if *cached == at => AttributeValue::S(text.clone()),
                    Some(_) | None => {
                        let text = timestamp(at)?;
                        formatted = Some((at, text.clone()));
                        AttributeValue::S(text)
                    }
                },
                Value::Text(text) if edit == Edit::AddToSet => AttributeValue::Ss(vec![text]),
                // An attribute named by its value: a placeholder of its own.
                named @ (Value::Refund(_) | Value::RefundSettled(_) | Value::Word(_)) => {
                    let attribute = attribute_name(field, &named);
                    update.set_if_absent_as(&attribute, attribute_value(named)?);
                    continue;
                }
                other @ (Value::Text(_)
                | Value::Texts(_)
                | Value::Number(_)
                | Value::Flag(_)
                | Value::History(_)
                | Value::Conflict(_)
                | Value::Details(_)) => attribute_value(other)?,
            };
            match edit {
                Edit::Set => update.set(field, value),
                Edit::SetIfAbsent => update.set_if_absent(field, value),
                Edit::Append => update.append(field, value),
                Edit::AddToSet => update.add(field, value),
            }
        }
        update.finish(change.removed.iter().copied());
        let mut name = |name: &str| update.names.insert(prefixed('#', name), name.to_owned());
        let expected = match change.condition {
            // The condition's bound (`#rank < :rank`): the rank the change sets.
            Condition::RankBelow(rank) => {
                name(KEY_ATTRIBUTE);
                update.values.insert(":rank".to_owned(), AttributeValue::N(rank.to_string()));
                None
            }
            Condition::RankAtLeast(rank) => {
                name(KEY_ATTRIBUTE);
                name("rank");
                update.values.insert(":rank".to_owned(), AttributeValue::N(rank.to_string()));
                None
            }
            Condition::Absent => {
                name(KEY_ATTRIBUTE);
                None
            }
            Condition::Unregistered => {
                name(KEY_ATTRIBUTE);
                name("registered_at");
                None
            }
            Condition::Scheduled(status) => {
                name(crate::model::SYNC_AT);
                name(crate::model::LEGACY_SYNC_AT);
                Some(status)
            }
            Condition::AtStatus(status) => Some(status),
            Condition::NotificationPending(status) => {
                name(PENDING_ATTRIBUTE);
                Some(status)
            }
            Condition::NotYetQueued(status) => {
                name(PENDING_ATTRIBUTE);
                update.values.insert(":unqueued".to_owned(), AttributeValue::S(UNQUEUED_PREFIX.to_owned()));
                Some(status)
            }
            Condition::AnyNotificationPending => {
                name(PENDING_ATTRIBUTE);
                None
            }
            Condition::NewConflict { stored, status } => {
                name("conflict_statuses");
                name("conflicts");
                update.values.insert(":conflict_status".to_owned(), AttributeValue::S(status.as_str().to_owned()));
                update.values.insert(":max_conflicts".to_owned(), AttributeValue::N(MAX_CONFLICTS.to_string()));
                Some(stored)
            }
        };
        if let Some(status) = expected {
            update.names.insert("#status".to_owned(), "status".to_owned());
            update.values.insert(":expected_status".to_owned(), AttributeValue::S(status.as_str().to_owned()));
        }
        Ok(update)
    }

    /// Registers `#attribute` and `:attribute` and opens the next clause. The expression is
    /// built with `push_str` rather than `format!`: this runs on every webhook, and
    /// formatting was most of its cost (see BENCHMARKS.md).
    fn clause(&mut self, attribute: &str, value: AttributeValue) {
        self.names.insert(prefixed('#', attribute), attribute.to_owned());
        self.values.insert(prefixed(':', attribute), value);
        self.expression.push_str(if self.expression.is_empty() { "SET " } else { ", " });
    }

    fn set(&mut self, attribute: &str, value: AttributeValue) {
        self.clause(attribute, value);
        self.push(&["#", attribute, " = :", attribute]);
    }

    fn set_if_absent(&mut self, attribute: &str, value: AttributeValue) {
        self.clause(attribute, value);
        self.push(&["#", attribute, " = if_not_exists(#", attribute, ", :", attribute, ")"]);
    }

    /// `SET` where absent, for an attribute whose name is not a placeholder's (it holds
    /// any character): placeholders `#n<i>` and `:n<i>`, numbered in order.
    fn set_if_absent_as(&mut self, attribute: &str, value: AttributeValue) {
        self.named += 1;
        let (name, placeholder) = (format!("#n{}", self.named), format!(":n{}", self.named));
        self.names.insert(name.clone(), attribute.to_owned());
        self.values.insert(placeholder.clone(), value);
        self.expression.push_str(if self.expression.is_empty() { "SET " } else { ", " });
        self.push(&[&name, " = if_not_exists(", &name, ", ", &placeholder, ")"]);
    }

    fn append(&mut self, attribute: &str, items: AttributeValue) {
        self.clause(attribute, items);
        self.values.insert(":empty_list".to_owned(), AttributeValue::L(Vec::new()));
        self.push(&["#", attribute, " = list_append(if_not_exists(#", attribute, ", :empty_list), :", attribute, ")"]);
    }

    /// An empty update under `condition` ("" for none).
    fn new(condition: &'static str) -> Self {
        // Sized for the largest update (a final status with every optional field), so
        // that no map or string grows while it is built.
        Update {
            expression: String::with_capacity(512),
            adds: String::new(),
            named: 0,
            condition,
            names: HashMap::with_capacity(16),
            values: HashMap::with_capacity(16),
        }
    }

    /// Closes the expression: the `ADD` clauses after the `SET` ones, then the `REMOVE` of
    /// `removed`.
    fn finish<'a>(&mut self, removed: impl IntoIterator<Item = &'a str>) {
        if !self.adds.is_empty() {
            let adds = std::mem::take(&mut self.adds);
            self.expression.push_str(if self.expression.is_empty() { "ADD " } else { " ADD " });
            self.expression.push_str(&adds);
        }
        for (i, field) in removed.into_iter().enumerate() {
            self.expression.push_str(match (i, self.expression.is_empty()) {
                (0, true) => "REMOVE #",
                (0, false) => " REMOVE #",
                _ => ", #",
            });
            self.expression.push_str(field);
            self.names.insert(prefixed('#', field), field.to_owned());
        }
    }

    /// `ADD #attribute :attribute` (a set's new members, or a number added), kept apart
    /// from the `SET` clauses.
    fn add(&mut self, attribute: &str, members: AttributeValue) {
        self.names.insert(prefixed('#', attribute), attribute.to_owned());
        self.values.insert(prefixed(':', attribute), members);
        if !self.adds.is_empty() {
            self.adds.push_str(", ");
        }
        for part in ["#", attribute, " :", attribute] {
            self.adds.push_str(part);
        }
    }

    fn push(&mut self, parts: &[&str]) {
        for part in parts {
            self.expression.push_str(part);
        }
    }
}

/// `#name` or `:name`.
fn prefixed(prefix: char, attribute: &str) -> String {
    let mut text = String::with_capacity(attribute.len() + 1);
    text.push(prefix);
    text.push_str(attribute);
    text
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::Amount;

    fn at(seconds: i64) -> OffsetDateTime {
        OffsetDateTime::from_unix_timestamp(1_700_000_000 + seconds).expect("valid timestamp")
    }

    #[test]
    fn non_final_update_sets_no_final_fields() {
        let observation = Observation::new("123456789012", Status::Pending, "read");
        let update =
            Update::translate(Change::observed("azqr", &observation, at(0), WritePlan::default())).expect("update");
        assert!(update.expression.starts_with("SET "));
        assert!(!update.values.contains_key(":final_at"));
        assert!(!update.values.contains_key(":notification_pending"));
        assert_eq!(update.values[":rank"], AttributeValue::N("1".into()));
        // Every placeholder used in the expression is defined, and every defined one is used.
        for key in update.values.keys().chain(update.names.keys()) {
            assert!(update.expression.contains(key.as_str()) || key == "#pk", "{key} unused");
        }
    }

    #[test]
    fn full_final_update_expression_is_exact() {
        let mut observation = Observation::new("123456789012", Status::Completed, "completed");
        observation.amount = Some(Amount::parse("10.50").expect("amount"));
        observation.currency = Some("AZN".into());
        observation.reason = Some("none".into());
        observation.details.insert("merchant_code".into(), "M1".into());
        let update =
            Update::translate(Change::observed("azqr", &observation, at(5), WritePlan::default())).expect("update");
        assert_eq!(
            update.expression,
            "SET #provider = :provider, #reference = :reference, #status = :status, \
             #provider_status = :provider_status, #rank = :rank, #updated_at = :updated_at, \
             #first_seen_at = if_not_exists(#first_seen_at, :first_seen_at), \
             #history = list_append(if_not_exists(#history, :empty_list), :history), \
             #amount = :amount, #currency = :currency, #reason = :reason, #details = :details, \
             #final_at = :final_at, #notification_pending = :notification_pending \
             REMOVE #sync, #sync_at, #sync_attempts, #sync_shard, #next_sync_at"
        );
        assert_eq!(update.condition, "attribute_not_exists(#pk) OR #rank < :rank");
        assert_eq!(update.names.len(), 20);
        assert_eq!(update.names["#notification_pending"], "notification_pending");
        assert_eq!(update.values.len(), 15);
        assert_eq!(update.values[":empty_list"], AttributeValue::L(Vec::new()));
    }

    /// The writes after the webhook's are descriptions too: each translates to the
    /// expression the store sends, and the model's `apply_change` agrees with its condition.
    #[test]
    fn money_after_the_outcome_is_kept_in_attributes_of_its_own_set_once() {
        use crate::model::{RefundObservation, RefundStatus};
        let refund = |id: &str, status| RefundObservation {
            id: id.into(),
            status,
            provider_status: "DEVOLVIDO".into(),
            amount: Some(Amount::parse("30.00").expect("amount")),
            currency: Some("BRL".into()),
        };
        let mut word = Observation::after_final("txid", "UNDER_PAID");
        word.underpaid = true;
        word.add_refund(refund("D1", RefundStatus::Succeeded));
        word.add_refund(refund("a.b#c:d", RefundStatus::Pending));
        let unsynced = WritePlan::default();
        let keep = |at, plan| Change::money_after("pagstar", &word, at, plan);
        let update = Update::translate(keep(at(5), unsynced)).expect("update");
        assert_eq!(
            update.expression,
            "SET #n1 = if_not_exists(#n1, :n1), #n2 = if_not_exists(#n2, :n2), #n3 = if_not_exists(#n3, :n3), \
             #n4 = if_not_exists(#n4, :n4), \
             #underpaid_reported_at = if_not_exists(#underpaid_reported_at, :underpaid_reported_at)"
        );
        assert_eq!(update.condition, "attribute_exists(#pk) AND #rank >= :rank");
        let named: Vec<&str> = ["#n1", "#n2", "#n3", "#n4"].iter().map(|n| update.names[*n].as_str()).collect();
        let attributes = ["refund#D1#final", "refund#D1#succeeded", "refund#a.b#c:d#pending", "word#UNDER_PAID"];
        assert_eq!(named, attributes, "any character");
        // A refund pending, at a provider the sync can ask: scheduled, unless it is already.
        let synced = WritePlan { supported: true, ..WritePlan::default() };
        let scheduling = Update::translate(keep(at(5), synced)).expect("update");
        assert!(
            scheduling.expression.contains("#sync_at = if_not_exists(#sync_at, :sync_at)"),
            "{}",
            scheduling.expression
        );
        assert!(scheduling.expression.contains("#sync_shard = if_not_exists(#sync_shard, :sync_shard)"));
        assert_eq!(update.values[":rank"], AttributeValue::N("0".into()));
        let expression = format!("{} {}", update.expression, update.condition);
        for key in update.values.keys().chain(update.names.keys()) {
            assert!(expression.contains(key.as_str()), "{key} unused in {expression}");
        }

        // Only on a record, whatever its status; set once, so a repeat changes nothing.
        assert_eq!(apply_change(&HashMap::new(), keep(at(5), unsynced)).expect("apply"), None);
        let item = HashMap::from([
            ("pk".to_owned(), AttributeValue::S("pagstar#txid".into())),
            ("rank".to_owned(), AttributeValue::N("4".into())),
        ]);
        let once = apply_change(&item, keep(at(5), unsynced)).expect("apply").expect("applies");
        let twice = apply_change(&once, keep(at(9), unsynced)).expect("apply").expect("applies");
        assert_eq!(once, twice, "the first hearing's time kept");
        let mut item = twice;
        for (name, value) in [
            ("provider", "pagstar"),
            ("reference", "txid"),
            ("status", "completed"),
            ("first_seen_at", "2023-11-14T22:13:20Z"),
            ("updated_at", "2023-11-14T22:13:20Z"),
        ] {
            item.insert(name.to_owned(), AttributeValue::S(value.into()));
        }
        let record = record_of(item).expect("decodes");
        let refunds: Vec<(&str, RefundStatus)> = record.refunds.iter().map(|r| (r.id.as_str(), r.status)).collect();
        assert_eq!(refunds, [("D1", RefundStatus::Succeeded), ("a.b#c:d", RefundStatus::Pending)]);
        assert_eq!(record.refunds[0].updated_at, at(5));
        assert_eq!(record.after_final.iter().map(|w| w.provider_status.as_str()).collect::<Vec<_>>(), ["UNDER_PAID"]);
        assert_eq!(record.amount_mismatch.map(|m| m.kind), Some(crate::model::MismatchKind::Underpaid));
    }

    #[test]
    fn the_other_writes_translate_from_their_descriptions() {
        let mut record = crate::model::tests::record("azqr", "123456789012", Status::Pending, at(0));
        record.next_sync_at = Some(at(300));
        let retry = SyncStep::Retry { state: crate::model::SyncState::Scheduled, at: at(900), attempts: 2 };
        let update = Update::translate(Change::reschedule(&record, retry, at(5))).expect("update");
        assert_eq!(
            update.expression,
            "SET #sync = :sync, #sync_at = :sync_at, #sync_attempts = :sync_attempts, #sync_shard = :sync_shard \
             REMOVE #next_sync_at"
        );
        assert_eq!(
            update.condition,
            "#status = :expected_status AND (attribute_exists(#sync_at) OR attribute_exists(#next_sync_at))"
        );
        assert_eq!(update.values[":sync_attempts"], AttributeValue::N("2".into()));
        let given_up = Update::translate(Change::reschedule(&record, SyncStep::GiveUp, at(5))).expect("update");
        assert_eq!(
            given_up.expression,
            "SET #sync = :sync, #attention_shard = :attention_shard, #attention_at = :attention_at \
             ADD #attention_reasons :attention_reasons REMOVE #sync_at, #next_sync_at, #sync_attempts, #sync_shard"
        );
        assert_eq!(
            given_up.values[":attention_reasons"],
            AttributeValue::Ss(vec!["sync_gave_up".into()]),
            "giving up lists the transaction for a human, in the same write"
        );
        let notified =
            Update::translate(Change::notified("azqr", "r", Status::Completed, NotificationOutcome::Delivered, at(5)));
        let notified = notified.expect("update");
        assert_eq!(notified.expression, "SET #notified_at = :notified_at REMOVE #notification_pending");
        let cleared = Update::translate(Change::requeue_failed(false)).expect("update");
        assert_eq!((cleared.expression.as_str(), cleared.values.len()), ("REMOVE #requeue_failed", 0));
        for update in [update, given_up, notified, cleared] {
            let expression = format!("{} {}", update.expression, update.condition);
            for key in update.values.keys().chain(update.names.keys()) {
                assert!(expression.contains(key.as_str()), "{key} unused in {expression}");
            }
        }

        // The model's reading of the conditions.
        let item = |status: &str, pending: Option<&str>| {
            let mut item = HashMap::from([("status".to_owned(), AttributeValue::S(status.into()))]);
            if let Some(marker) = pending {
                item.insert(PENDING_ATTRIBUTE.to_owned(), AttributeValue::S(marker.into()));
            }
            item
        };
        let pending = NotificationPending::marker("azqr", "123456789012");
        let queued = NotificationPending::queued_marker("azqr", "123456789012");
        let queue = || Change::queued("azqr", "123456789012", Status::Completed);
        let after = apply_change(&item("completed", Some(&pending)), queue()).expect("apply").expect("applies");
        assert_eq!(after[PENDING_ATTRIBUTE], AttributeValue::S(queued.clone()));
        assert_eq!(apply_change(&item("completed", Some(&queued)), queue()).expect("apply"), None, "queued once");
        assert_eq!(apply_change(&item("failed", Some(&pending)), queue()).expect("apply"), None, "another status");
        let notify = || Change::notified("azqr", "r", Status::Completed, NotificationOutcome::Delivered, at(5));
        let after = apply_change(&item("completed", Some(&queued)), notify()).expect("apply").expect("applies");
        assert!(!after.contains_key(PENDING_ATTRIBUTE) && after.contains_key("notified_at"));
        assert_eq!(apply_change(&after, notify()).expect("apply"), None, "a redelivery changes nothing");
    }

    /// A conflict is a description too: appended and its status added to the set, once
    /// per status, at most MAX_CONFLICTS, only on the stored final.
    #[test]
    fn a_conflict_translates_and_is_kept_once() {
        let observation = Observation::new("123456789012", Status::Failed, "incompleted");
        let (change, conflict) = Change::conflict("azqr", &observation, Status::Completed, at(9));
        assert_eq!(conflict.status, Status::Failed);
        let update = Update::translate(change.clone()).expect("update");
        assert_eq!(
            update.expression,
            "SET #conflicts = list_append(if_not_exists(#conflicts, :empty_list), :conflicts), \
             #attention_shard = :attention_shard, #attention_at = :attention_at \
             ADD #conflict_statuses :conflict_statuses, #attention_reasons :attention_reasons"
        );
        assert_eq!(update.values[":conflict_statuses"], AttributeValue::Ss(vec!["failed".into()]));
        assert_eq!(
            update.values[":attention_reasons"],
            AttributeValue::Ss(vec!["conflict".into()]),
            "listed in the same write"
        );
        let expression = format!("{} {}", update.expression, update.condition);
        for key in update.values.keys().chain(update.names.keys()) {
            assert!(expression.contains(key.as_str()), "{key} unused in {expression}");
        }
        let stored = HashMap::from([("status".to_owned(), AttributeValue::S("completed".into()))]);
        let kept = apply_change(&stored, change.clone()).expect("apply").expect("kept");
        assert_eq!(kept["conflict_statuses"], AttributeValue::Ss(vec!["failed".into()]));
        assert_eq!(kept["conflicts"].as_l().map(Vec::len), Ok(1));
        assert_eq!(apply_change(&kept, change.clone()).expect("apply"), None, "once per status");
        let other = HashMap::from([("status".to_owned(), AttributeValue::S("failed".into()))]);
        assert_eq!(apply_change(&other, change).expect("apply"), None, "only on the stored final");
    }

    #[test]
    fn final_update_marks_notification_pending_in_the_same_write() {
        let mut observation = Observation::new("123456789012", Status::Failed, "incompleted");
        observation.reason = Some("AM04 InsufficientFunds".into());
        observation.amount = Some(Amount::parse("10.50").expect("amount"));
        let update =
            Update::translate(Change::observed("azqr", &observation, at(5), WritePlan::default())).expect("update");
        // The marker, sharded by the transaction's key (shown as PENDING).
        let marker = NotificationPending::marker("azqr", "123456789012");
        assert_eq!(update.values[":notification_pending"], AttributeValue::S(marker.clone()));
        assert!(marker.starts_with("PENDING#"));
        let shown: NotificationPending = serde_json::from_value(serde_json::json!(marker)).expect("marker");
        assert_eq!(serde_json::to_value(shown).expect("JSON"), "PENDING");
        assert_eq!(update.values[":rank"], AttributeValue::N("4".into()));
        assert_eq!(update.values[":amount"], AttributeValue::S("10.50".into()));
        assert!(update.expression.contains("#final_at = :final_at"));
        assert!(update.expression.contains("#reason = :reason"));
    }
}
