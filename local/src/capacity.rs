//! The capacity model (`scripts/capacity`): what a load of webhooks a second asks of
//! DynamoDB's partitions, SQS's quotas, the providers' APIs and Lambda's concurrency, from
//! template.yaml as deployed and the project's own code.
//!
//! Each provider's lifecycle comes from its simulator (its status words, in order). Every
//! webhook's write is the model's own [`Change`], applied to an item by the store's own
//! translation ([`shared::storage::apply_change`]); every event is the one the record makes
//! ([`MerchantEvent::for_record`]); the index keys are the code's (`PENDING#<shard>`,
//! `events#<shard>`, `<provider>#<shard>`). Every other write is a description the store
//! sends and the model applies (a [`Change`], or `ItemWrite` for the event log and the
//! merchant's health), and [`verify`] checks the model against DynamoDB Local's consumed
//! capacity for the same writes. DynamoDB's accounting: a write costs 1 unit per
//! KB of the larger of the item before and after; an index entry (its projected
//! attributes and its keys) costs its size again in that index when it is put,
//! deleted or, projected attributes changing, updated, and twice when its key moves.

use std::collections::{BTreeMap, HashMap};
use std::time::Duration;

use aws_sdk_dynamodb::types::AttributeValue;
use provider_testkit::Load;
use provider_testkit::Simulator;
use shared::model::shard::{ATTENTION_SHARDS, FEED_SHARDS, PENDING_SHARDS, SYNC_SHARDS};
use shared::model::NotificationOutcome;
use shared::model::{
    transaction_key, Amount, Change, MerchantEvent, Observation, RefundObservation, RefundStatus, Status, SyncPolicy,
    SyncStep, WritePlan,
};
use shared::pipeline::Provider;
use shared::storage::{Attempt, AttemptKind, AttemptWrites};
use time::OffsetDateTime;

use crate::template::{IndexSpec, Template};

type Item = HashMap<String, AttributeValue>;
type Error = Box<dyn std::error::Error + Send + Sync>;

/// AWS's documented limits, and the share of each the model allows.
pub mod limits {
    /// A partition's write and read units a second (DynamoDB, table or index).
    pub const PARTITION_WRITE_UNITS: f64 = 1_000.0;
    pub const PARTITION_READ_UNITS: f64 = 3_000.0;
    /// The share of a limit the design may use.
    pub const HEADROOM: f64 = 0.5;
    /// Connections one Lambda instance may hold at once: its 1,024 file descriptors, less
    /// a margin for the runtime, the SDK's clients and the TLS roots.
    pub const FILE_DESCRIPTORS: f64 = 900.0;
    /// A high-throughput FIFO queue's calls a second per action in the smallest regional
    /// quota the issue names (9,000; 70,000 in us-east-1, us-west-2, eu-west-1).
    pub const SQS_CALLS_SMALLEST_REGION: f64 = 9_000.0;
    /// Messages a second per message group (one transaction).
    pub const SQS_PER_GROUP: f64 = 300.0;
    /// The account's default Lambda concurrency, API Gateway's default account rate and a
    /// table's default on-demand throughput quota (units a second, each of read and write).
    pub const LAMBDA_CONCURRENCY: f64 = 1_000.0;
    pub const API_GATEWAY_RATE: f64 = 10_000.0;
    pub const TABLE_UNITS: f64 = 40_000.0;
    /// An SQS trigger's `MaximumConcurrency` at most; in provisioned mode, its event
    /// pollers at most and the instances each invokes at once (Lambda's developer guide).
    pub const MAXIMUM_CONCURRENCY: f64 = 1_000.0;
    pub const MAXIMUM_POLLERS: f64 = 2_000.0;
    pub const INSTANCES_PER_POLLER: f64 = 10.0;
    /// The largest item the design allows itself (DynamoDB's limit is 400 KB).
    pub const ITEM_BOUND: usize = 64 * 1024;
}

/// What the model assumes about latencies (Little's law) and the merchant.
pub mod assumed {
    use std::time::Duration;
    /// A webhook that needs no call out (verify, one write, one send).
    pub const WEBHOOK: Duration = Duration::from_millis(25);
    /// A webhook that is a hint (Pagstar's): checked and queued, one SQS send.
    pub const HINT_WEBHOOK: Duration = Duration::from_millis(20);
    /// A batch of the hint queue's consumer: its hints asked of the provider at once (the
    /// slowest of up to a full batch of calls), then written and their events sent.
    pub const HINT_BATCH: Duration = Duration::from_millis(400);
    /// One status query of `provider` (its simulator's [`provider_testkit::Load`]).
    pub fn status_query(provider: &str) -> Duration {
        // Only the catalog's names come here; a zero would make the sync's capacity infinite.
        let load = super::loads().into_iter().find(|(name, _)| *name == provider);
        load.map(|(_, load)| load.status_query).unwrap_or_else(|| panic!("{provider} is not in the catalog"))
    }
    /// A notifier batch against a healthy merchant (10 POSTs at once, the slowest) and a
    /// failing one (answers 5xx quickly; a hanging one is bounded by the 10 s timeout).
    pub const NOTIFIER_BATCH_HEALTHY: Duration = Duration::from_millis(300);
    pub const NOTIFIER_BATCH_FAILING: Duration = Duration::from_millis(200);
    /// Share of outcomes whose send from the webhook is lost (our 5xx never retried).
    pub const LOST_SENDS: f64 = 0.0001;
    /// A Pix charge's `calendario.expiracao` in the Pix mix.
    pub const PIX_EXPIRY: Duration = Duration::from_secs(3_600);
    /// The status sync's run budget and interval.
    pub const SYNC_RUN: Duration = Duration::from_secs(60);
    /// How long the event log keeps an event (`EVENT_RETENTION_DAYS`, 30 by default).
    pub const EVENT_RETENTION: Duration = Duration::from_secs(30 * 24 * 60 * 60);
}

/// How the merchant's endpoint behaves.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Merchant {
    Healthy,
    /// Failing for an hour: each outcome of that hour is tried about 6 times.
    FailingHour,
    /// Down for 3 days: each outcome is received 8 times, then dead-lettered.
    DownThreeDays,
}

impl Merchant {
    pub const ALL: [Merchant; 3] = [Merchant::Healthy, Merchant::FailingHour, Merchant::DownThreeDays];

    fn name(self) -> &'static str {
        match self {
            Merchant::Healthy => "merchant healthy",
            Merchant::FailingHour => "merchant failing for an hour",
            Merchant::DownThreeDays => "merchant down for 3 days",
        }
    }

    /// Failed attempts per outcome, and whether it is then delivered.
    fn attempts(self) -> (u32, bool) {
        match self {
            Merchant::Healthy => (0, true),
            // 0 s, 5 s, 35 s, 2.6 min, 12.6 min, 42.6 min within the hour, then delivered.
            Merchant::FailingHour => (6, true),
            Merchant::DownThreeDays => (8, false),
        }
    }
}

/// A load: webhooks a second, shared among the providers, and what happens to them.
#[derive(Debug, Clone)]
pub struct Mix {
    pub name: &'static str,
    pub webhooks_per_second: f64,
    /// Each provider's share of the webhooks.
    pub shares: Vec<(&'static str, f64)>,
    /// Share of webhooks the provider sends twice.
    pub duplicates: f64,
    /// Share of transactions whose final webhook comes 10 minutes late (after a sync).
    pub late: f64,
    /// Share of transactions no webhook ever settles.
    pub never_final: f64,
    /// Share of transactions paid another amount than the one expected (an amount-mismatch event).
    pub mismatched: f64,
    /// Share of transactions refunded after the outcome, at providers that say so.
    pub refunded: f64,
    /// Share of the charges that expire (Pix) never paid (they expire by BACEN's rule, found by sync).
    pub pix_never_paid: f64,
    /// Event resends and recovered events a second (the events API).
    pub resends_per_second: f64,
    pub merchant: Merchant,
}

impl Mix {
    /// The reference mix at `rate` webhooks a second.
    pub fn reference(rate: f64, merchant: Merchant) -> Mix {
        Mix {
            name: "reference",
            webhooks_per_second: rate,
            shares: shares(|load| load.reference_weight),
            duplicates: 0.1,
            late: 0.05,
            never_final: 0.02,
            mismatched: 0.01,
            refunded: 0.01,
            pix_never_paid: 0.0,
            resends_per_second: rate / 1_000.0,
            merchant,
        }
    }

    /// The Pix mix: each provider's Pix weight (Pagstar half the load), 40% of the charges
    /// that expire never paid.
    pub fn pix(rate: f64, merchant: Merchant) -> Mix {
        Mix {
            name: "Pix",
            shares: shares(|load| load.pix_weight),
            pix_never_paid: 0.4,
            ..Mix::reference(rate, merchant)
        }
    }
}

/// Every provider's traffic, as its simulator describes it, in the catalog's order.
pub fn loads() -> Vec<(&'static str, Load)> {
    struct Collect(Vec<(&'static str, Load)>);
    impl provider_catalog::EachSimulator for Collect {
        fn simulator<S: Simulator>(&mut self) {
            self.0.push((S::Provider::NAME, S::LOAD));
        }
    }
    let mut collect = Collect(Vec::new());
    provider_catalog::for_each_simulator(&mut collect);
    collect.0
}

/// Each provider's share of the webhooks: its weight over the sum of all.
fn shares(weight: fn(&Load) -> f64) -> Vec<(&'static str, f64)> {
    let loads = loads();
    let total: f64 = loads.iter().map(|(_, load)| weight(load)).sum();
    loads.into_iter().map(|(name, load)| (name, weight(&load) / total)).collect()
}

/// The load on everything, a second (or per transaction, before scaling).
#[derive(Debug, Clone, Default)]
pub struct Ledger {
    /// Write and read units by (table or index, partition-key value).
    pub writes: BTreeMap<(String, String), f64>,
    pub reads: BTreeMap<(String, String), f64>,
    /// Write units of conditional writes that failed (charged, not in DynamoDB Local's figures).
    pub failed_writes: f64,
    /// SQS calls by action.
    pub sqs: BTreeMap<&'static str, f64>,
    /// Calls to each provider's API.
    pub provider_calls: BTreeMap<String, f64>,
    /// Status queries, by provider.
    pub status_queries: BTreeMap<String, f64>,
    pub webhooks: BTreeMap<String, f64>,
    /// Webhooks that are hints, queued for the hint queue's consumer, by provider.
    pub hints: BTreeMap<String, f64>,
    pub outcomes: f64,
    /// Events that are not outcomes (amount mismatches, refunds), delivered likewise.
    pub other_events: f64,
    pub attempts: f64,
    pub largest_item: usize,
    pub largest_message: usize,
}

impl Ledger {
    fn add(&mut self, other: &Ledger, weight: f64) {
        for (key, units) in &other.writes {
            *self.writes.entry(key.clone()).or_default() += units * weight;
        }
        for (key, units) in &other.reads {
            *self.reads.entry(key.clone()).or_default() += units * weight;
        }
        self.failed_writes += other.failed_writes * weight;
        for (action, calls) in &other.sqs {
            *self.sqs.entry(action).or_default() += calls * weight;
        }
        for (map, theirs) in [
            (&mut self.provider_calls, &other.provider_calls),
            (&mut self.status_queries, &other.status_queries),
            (&mut self.webhooks, &other.webhooks),
            (&mut self.hints, &other.hints),
        ] {
            for (key, calls) in theirs {
                *map.entry(key.clone()).or_default() += calls * weight;
            }
        }
        self.outcomes += other.outcomes * weight;
        self.other_events += other.other_events * weight;
        self.attempts += other.attempts * weight;
        self.largest_item = self.largest_item.max(other.largest_item);
        self.largest_message = self.largest_message.max(other.largest_message);
    }

    fn sqs(&mut self, action: &'static str, calls: f64) {
        *self.sqs.entry(action).or_default() += calls;
    }
}

/// The table as template.yaml defines it.
#[derive(Debug, Clone)]
pub struct Table {
    pub indexes: Vec<IndexSpec>,
}

/// The table's name in the ledger.
pub const TABLE: &str = "table";

/// DynamoDB's size of a value.
#[allow(clippy::wildcard_enum_match_arm)] // the SDK's enum is non-exhaustive, its `Unknown` private
fn value_size(value: &AttributeValue) -> usize {
    match value {
        AttributeValue::S(text) => text.len(),
        AttributeValue::N(number) => number.trim_start_matches('-').len().div_ceil(2) + 1,
        AttributeValue::Bool(_) | AttributeValue::Null(_) => 1,
        AttributeValue::L(list) => 3 + list.iter().map(|v| value_size(v) + 1).sum::<usize>(),
        AttributeValue::M(map) => 3 + map.iter().map(|(k, v)| k.len() + value_size(v) + 1).sum::<usize>(),
        AttributeValue::Ss(set) => set.iter().map(String::len).sum(),
        AttributeValue::B(bytes) => bytes.as_ref().len(),
        AttributeValue::Bs(set) => set.iter().map(|b| b.as_ref().len()).sum(),
        AttributeValue::Ns(set) => set.iter().map(|n| n.len().div_ceil(2) + 1).sum(),
        // `Unknown`, private to the SDK, and any variant a later SDK adds: no size known.
        _ => 0,
    }
}

/// DynamoDB's size of an item: every attribute's name and value.
pub fn item_size(item: &Item) -> usize {
    item.iter().map(|(name, value)| name.len() + value_size(value)).sum()
}

fn write_units(bytes: usize) -> f64 {
    bytes.div_ceil(1024).max(1) as f64
}

fn read_units(bytes: usize, consistent: bool) -> f64 {
    let units = bytes.div_ceil(4096).max(1) as f64;
    if consistent {
        units
    } else {
        units / 2.0
    }
}

impl Table {
    pub fn from_template(template: &Template) -> Result<Table, Error> {
        Ok(Table { indexes: template.indexes()? })
    }

    /// `item`'s entry in `index`: its partition-key value and its size, or `None` when
    /// the item lacks a key attribute (sparse).
    fn entry(index: &IndexSpec, item: &Item) -> Option<(String, usize, Item)> {
        let text = |name: &str| item.get(name).and_then(|v| v.as_s().ok()).cloned();
        let partition = text(&index.partition_key)?;
        if let Some(sort) = &index.sort_key {
            item.get(sort)?;
        }
        let projected: Item = match index.projection.as_str() {
            "ALL" => item.clone(),
            projection => item
                .iter()
                .filter(|(name, _)| {
                    name.as_str() == "pk"
                        || **name == index.partition_key
                        || Some(name.as_str()) == index.sort_key.as_deref()
                        || (projection == "INCLUDE" && index.non_key_attributes.contains(name))
                })
                .map(|(k, v)| (k.clone(), v.clone()))
                .collect(),
        };
        // The 100 bytes DynamoDB adds per index entry count toward storage, not writes.
        Some((partition, item_size(&projected), projected))
    }

    /// One write of the item keyed `key` from `before` to `after` (`None`: its condition
    /// failed, charged by the item's size and changing nothing).
    pub fn write(&self, ledger: &mut Ledger, key: &str, before: &Item, after: Option<&Item>) {
        let Some(after) = after else {
            ledger.failed_writes += write_units(item_size(before));
            return;
        };
        let units = write_units(item_size(before).max(item_size(after)));
        *ledger.writes.entry((TABLE.to_owned(), key.to_owned())).or_default() += units;
        ledger.largest_item = ledger.largest_item.max(item_size(after));
        for index in &self.indexes {
            let mut charge = |partition: &str, bytes: usize| {
                *ledger.writes.entry((index.name.clone(), partition.to_owned())).or_default() += write_units(bytes);
            };
            match (Table::entry(index, before), Table::entry(index, after)) {
                (None, None) => {}
                (None, Some((partition, size, _))) | (Some((partition, size, _)), None) => charge(&partition, size),
                (Some((old, old_size, old_entry)), Some((new, new_size, new_entry))) => {
                    let key_moved =
                        old != new || index.sort_key.as_ref().is_some_and(|sort| before.get(sort) != after.get(sort));
                    if key_moved {
                        charge(&old, old_size);
                        charge(&new, new_size);
                    } else if old_entry != new_entry {
                        charge(&new, old_size.max(new_size));
                    }
                }
            }
        }
    }

    /// A read of `bytes` from the table or an index's `partition`.
    fn read(ledger: &mut Ledger, table: &str, partition: &str, bytes: usize, consistent: bool) {
        *ledger.reads.entry((table.to_owned(), partition.to_owned())).or_default() += read_units(bytes, consistent);
    }
}

/// What becomes of one simulated transaction.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Variant {
    /// Every word in order, the final one within seconds.
    Settled,
    /// The final word 10 minutes late: the sync asks once before it.
    Late,
    /// No final word ever: asked along the ladder, then given up (a Pix charge: expired).
    NeverFinal,
    /// A Pix charge never paid: found expired by the sync after its expiry.
    PixNeverPaid,
    /// Every provider text at its bound: the largest record and event.
    Largest,
    /// Settled, paid less than asked: the outcome and an amount-mismatch event.
    Mismatched,
    /// Settled, then refunded: a refund pending an hour on (the sync asks about it), then
    /// settled an hour later, each a word of the provider's and an event.
    Refunded,
}

/// One transaction of provider `S`, number `n`, from its first webhook to its outcome's
/// delivery: its ledger.
fn transaction<S: Simulator>(table: &Table, n: u64, variant: Variant, mix: &Mix) -> Result<Ledger, Error> {
    let name = S::Provider::NAME;
    let supported = S::Provider::HAS_STATUS_API;
    let mut ledger = Ledger::default();
    let reference = S::stored_reference(&S::new_reference(n));
    let key = transaction_key(name, &reference);
    let policy = SyncPolicy::default();
    let plan = WritePlan { policy, supported, events: Default::default() };
    let start = OffsetDateTime::from_unix_timestamp(1_795_000_000 + i64::try_from(n).unwrap_or(0))?;
    let at = |seconds: u64| start + Duration::from_secs(seconds);
    let words = S::SEQUENCE;
    let (progress, last) = words.split_at(words.len() - 1);
    let mut item = Item::new();
    // A Pix charge says when it expires (`calendario`); by BACEN's rule it is expired
    // once that time has passed unpaid.
    let expiry = S::LOAD.charges_expire.then(|| start + assumed::PIX_EXPIRY);
    let observe = |word: &str| {
        let mut observation = Observation::new(reference.clone(), S::status_of(word), word);
        observation.expires_at = expiry.filter(|_| !S::status_of(word).is_final());
        observation.amount = Some(Amount::parse("100.00").unwrap_or_else(|_| unreachable!()));
        observation.currency = Some("BRL".into());
        if variant == Variant::Mismatched {
            observation.asked_amount = observation.amount.take();
            observation.amount = Some(Amount::parse("90.00").unwrap_or_else(|_| unreachable!()));
        }
        if variant == Variant::Largest {
            let huge = "\u{1F4B8}".repeat(1_000);
            observation.reason = Some(huge.clone());
            observation.customer_message = Some(huge.clone());
            observation.provider_status = huge.clone();
            for i in 0..32 {
                observation.details.insert(format!("{i:02}{huge}"), huge.clone());
            }
            // Amounts at their bounds, and what could not be read kept as received.
            let widest = Amount::parse(&format!("{0}.{0}", "9".repeat(20))).unwrap_or_else(|_| unreachable!());
            observation.amount = Some(widest.clone());
            observation.asked_amount = Some(widest);
            observation.unreadable_amount = Some(huge.clone());
            observation.unreadable_currency = Some(huge.clone());
            observation.direction = Some(shared::model::Direction::Out);
        }
        observation
    };
    let webhook = |ledger: &mut Ledger, item: &mut Item, word: &str, t: u64| -> Result<(), Error> {
        *ledger.webhooks.entry(name.to_owned()).or_default() += 1.0 + mix.duplicates;
        // A hint is queued, and its consumer asks the provider.
        if S::Provider::HINT.is_some() {
            *ledger.hints.entry(name.to_owned()).or_default() += 1.0 + mix.duplicates;
            *ledger.provider_calls.entry(name.to_owned()).or_default() += 1.0 + mix.duplicates;
        }
        let change = Change::observed(name, &observe(word), at(t), plan);
        let after = shared::storage::apply_change(item, change)?;
        table.write(ledger, &key, item, after.as_ref());
        if let Some(after) = after {
            *item = after;
            // What needs a human (an amount mismatch) goes into the Attention index, as
            // the write path puts it.
            if let Some(flag) = Change::attention(&shared::storage::record_of(item.clone())?, at(t)) {
                let flagged = shared::storage::apply_change(item, flag)?;
                table.write(ledger, &key, item, flagged.as_ref());
                if let Some(flagged) = flagged {
                    *item = flagged;
                }
            }
            if S::status_of(word).is_final() {
                outcome(table, ledger, &key, item, mix, Sent::ByWebhook)?;
            }
        }
        // A duplicate: its write's condition fails (and a final still pending is sent again).
        ledger.failed_writes += mix.duplicates * write_units(item_size(item));
        Ok(())
    };
    for (t, word) in progress.iter().enumerate() {
        webhook(&mut ledger, &mut item, word, t as u64)?;
    }
    let final_at = match variant {
        Variant::Settled | Variant::Largest | Variant::Mismatched | Variant::Refunded => Some(progress.len() as u64),
        Variant::Late => Some(600),
        Variant::NeverFinal | Variant::PixNeverPaid => None,
    };
    // The status sync, along the real schedule, until the final word or the give-up.
    loop {
        let record = shared::storage::record_of(item.clone())?;
        let Some(due) = record.next_sync_at.filter(|_| !record.status.is_final()) else {
            break;
        };
        let due_seconds = u64::try_from((due - start).whole_seconds()).unwrap_or(0);
        if let Some(final_at) = final_at.filter(|f| *f <= due_seconds) {
            webhook(&mut ledger, &mut item, last[0], final_at)?;
            break;
        }
        // The due record, read by key (consistently) after its key came from the index.
        Table::read(&mut ledger, TABLE, &key, item_size(&item), true);
        if supported {
            *ledger.provider_calls.entry(name.to_owned()).or_default() += 1.0;
            *ledger.status_queries.entry(name.to_owned()).or_default() += 1.0;
        }
        let expired = expiry.is_some_and(|expiry| due >= expiry);
        if expired {
            let mut observation = observe(progress[progress.len() - 1]);
            observation.status = Status::Expired;
            observation.expires_at = None;
            let after = shared::storage::apply_change(&item, Change::observed(name, &observation, due, plan))?;
            table.write(&mut ledger, &key, &item, after.as_ref());
            if let Some(after) = after {
                item = after;
                outcome(table, &mut ledger, &key, &item, mix, Sent::BySync)?;
            }
            break;
        }
        // Nothing new: the store's reschedule, or the give-up.
        let step = policy.next(&record, supported, due);
        let after = shared::storage::apply_change(&item, Change::reschedule(&record, step, due))?;
        table.write(&mut ledger, &key, &item, after.as_ref());
        match (step, after) {
            (SyncStep::Retry { .. }, Some(after)) => item = after,
            (SyncStep::GiveUp, _) | (_, None) => break,
        }
    }
    match variant {
        Variant::Refunded => refund::<S>(table, &mut ledger, &key, &mut item, start, mix)?,
        Variant::Largest => largest_money_after::<S>(table, &mut ledger, &key, &mut item, start)?,
        Variant::Settled | Variant::Late | Variant::NeverFinal | Variant::PixNeverPaid | Variant::Mismatched => {}
    }
    Ok(ledger)
}

/// A refund of a final transaction: a word an hour after it says the refund is pending
/// (which schedules the sync, where the provider has a status API), another an hour later
/// that it succeeded; each is one write and one event. The sync asks along its ladder
/// meanwhile, and its next run after the refund settled ends the schedule.
fn refund<S: Simulator>(
    table: &Table,
    ledger: &mut Ledger,
    key: &str,
    item: &mut Item,
    start: OffsetDateTime,
    mix: &Mix,
) -> Result<(), Error> {
    let name = S::Provider::NAME;
    let supported = S::Provider::HAS_STATUS_API;
    let plan = WritePlan { policy: SyncPolicy::default(), supported, events: Default::default() };
    let at = |seconds: u64| start + Duration::from_secs(seconds);
    let reference = shared::storage::record_of(item.clone())?.reference;
    let (heard, settled) = (3_600, 7_200);
    let word = |ledger: &mut Ledger, item: &mut Item, status: RefundStatus, t: u64| -> Result<(), Error> {
        *ledger.webhooks.entry(name.to_owned()).or_default() += 1.0 + mix.duplicates;
        if S::Provider::HINT.is_some() {
            *ledger.hints.entry(name.to_owned()).or_default() += 1.0 + mix.duplicates;
            *ledger.provider_calls.entry(name.to_owned()).or_default() += 1.0 + mix.duplicates;
        }
        let mut observation = Observation::after_final(reference.clone(), status.as_str());
        observation.add_refund(RefundObservation {
            id: "R1".into(),
            status,
            provider_status: status.as_str().to_uppercase(),
            amount: Some(Amount::parse("100.00").unwrap_or_else(|_| unreachable!())),
            currency: Some("BRL".into()),
        });
        let after = shared::storage::apply_change(item, Change::money_after(name, &observation, at(t), plan))?;
        table.write(ledger, key, item, after.as_ref());
        *item = after.unwrap_or_else(|| item.clone());
        // A duplicate: the same write again, which changes nothing but is charged.
        ledger.failed_writes += mix.duplicates * write_units(item_size(item));
        let record = shared::storage::record_of(item.clone())?;
        if let Some(refund) = record.refunds.iter().find(|r| r.status == status) {
            ledger.other_events += 1.0;
            deliver(table, ledger, &MerchantEvent::for_refund(&record, refund), mix, Sent::ByWebhook)?;
        }
        Ok(())
    };
    word(ledger, item, RefundStatus::Pending, heard)?;
    let policy = SyncPolicy::default();
    let mut told = false;
    loop {
        let record = shared::storage::record_of(item.clone())?;
        let Some(due) = record.next_sync_at else { break };
        let due_seconds = u64::try_from((due - start).whole_seconds()).unwrap_or(0);
        Table::read(ledger, TABLE, key, item_size(item), true);
        if due_seconds >= settled {
            // The run after the refund settled: asked no more.
            let after = shared::storage::apply_change(item, Change::end_schedule(record.status))?;
            table.write(ledger, key, item, after.as_ref());
            break;
        }
        *ledger.provider_calls.entry(name.to_owned()).or_default() += 1.0;
        *ledger.status_queries.entry(name.to_owned()).or_default() += 1.0;
        let after =
            shared::storage::apply_change(item, Change::reschedule(&record, policy.next(&record, true, due), due))?;
        table.write(ledger, key, item, after.as_ref());
        match after {
            Some(after) => *item = after,
            None => break,
        }
        if shared::storage::record_of(item.clone())?.next_sync_at.is_some_and(|next| next >= at(settled)) {
            word(ledger, item, RefundStatus::Succeeded, settled)?;
            told = true;
        }
    }
    // No sync to wait for (no status API): the word comes all the same.
    if !told {
        word(ledger, item, RefundStatus::Succeeded, settled)?;
    }
    Ok(())
}

/// The largest record money after the outcome can make: the most refunds one word
/// carries, each heard pending, succeeded and failed (with the longest ids and words), and
/// three after-final words of the longest.
fn largest_money_after<S: Simulator>(
    table: &Table,
    ledger: &mut Ledger,
    key: &str,
    item: &mut Item,
    start: OffsetDateTime,
) -> Result<(), Error> {
    let name = S::Provider::NAME;
    let reference = shared::storage::record_of(item.clone())?.reference;
    let huge = "\u{1F4B8}".repeat(1_000);
    for (t, status) in [RefundStatus::Pending, RefundStatus::Succeeded, RefundStatus::Failed].into_iter().enumerate() {
        let mut observation = Observation::after_final(reference.clone(), format!("{t}{huge}"));
        for i in 0..20 {
            observation.add_refund(RefundObservation {
                id: format!("{i:02}{}", "x".repeat(70)),
                status,
                provider_status: huge.clone(),
                amount: Some(Amount::parse(&format!("{0}.{0}", "9".repeat(20))).unwrap_or_else(|_| unreachable!())),
                currency: Some(huge.clone()),
            });
        }
        observation.underpaid = true;
        let at = start + Duration::from_secs(86_400 + t as u64);
        let after =
            shared::storage::apply_change(item, Change::money_after(name, &observation, at, WritePlan::default()))?;
        table.write(ledger, key, item, after.as_ref());
        *item = after.unwrap_or_else(|| item.clone());
    }
    let record = shared::storage::record_of(item.clone())?;
    for event in record.refunds.iter().map(|refund| MerchantEvent::for_refund(&record, refund)) {
        ledger.largest_message = ledger.largest_message.max(serde_json::to_string(&event)?.len());
    }
    Ok(())
}

/// A final record's outcome: sent to the queue, delivered by the notifier as the merchant
/// allows, and recorded in the event log and on the record.
/// Who sends an outcome to the queue.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Sent {
    /// The webhook, one `SendMessage` (again for each duplicate while it is pending).
    ByWebhook,
    /// The status sync, ten to a `SendMessageBatch`.
    BySync,
}

fn outcome(
    table: &Table,
    ledger: &mut Ledger,
    key: &str,
    record_item: &Item,
    mix: &Mix,
    sent: Sent,
) -> Result<(), Error> {
    let transaction = shared::storage::record_of(record_item.clone())?;
    let Some(event) = MerchantEvent::for_record(&transaction) else {
        return Ok(());
    };
    let status = transaction.status;
    ledger.outcomes += 1.0;
    let (failures, delivered) = deliver(table, ledger, &event, mix, sent)?;
    // The notifier's marks on the record: queued at the first failure, notified once delivered.
    let mut record = record_item.clone();
    if failures > 0 {
        let queued = Change::queued(&transaction.provider, &transaction.reference, status);
        let after = shared::storage::apply_change(&record, queued)?;
        table.write(ledger, key, &record, after.as_ref());
        record = after.unwrap_or(record);
    }
    if delivered {
        let notified = Change::notified(
            &transaction.provider,
            &transaction.reference,
            status,
            NotificationOutcome::Delivered,
            event.created_at,
        );
        let after = shared::storage::apply_change(&record, notified)?;
        table.write(ledger, key, &record, after.as_ref());
    }
    // An amount mismatch is told too, sent with the outcome.
    if let Some(mismatch) = MerchantEvent::for_mismatch(&transaction) {
        ledger.other_events += 1.0;
        deliver(table, ledger, &mismatch, mix, sent)?;
    }
    Ok(())
}

/// One event sent to the queue, delivered by the notifier as the merchant allows, and
/// recorded in the event log: how many attempts failed, and whether it was delivered.
fn deliver(
    table: &Table,
    ledger: &mut Ledger,
    event: &MerchantEvent,
    mix: &Mix,
    sent: Sent,
) -> Result<(u32, bool), Error> {
    let body = serde_json::to_string(event)?;
    ledger.largest_message = ledger.largest_message.max(body.len());
    match sent {
        Sent::ByWebhook => ledger.sqs("SendMessage", 1.0 + mix.duplicates + assumed::LOST_SENDS),
        Sent::BySync => ledger.sqs("SendMessageBatch", 0.1),
    }
    let (failures, delivered) = mix.merchant.attempts();
    // The event log's writes, as it sends them: the event item, its counter, the attempt.
    let mut event_item = Item::new();
    let mut counter_item = Item::new();
    let attempts = failures + u32::from(delivered);
    for number in 1..=attempts {
        let success = delivered && number == attempts;
        let attempt = Attempt {
            at: event.created_at,
            status: Some(if success { 204 } else { 503 }),
            error: None,
            duration_ms: 200,
            response: (!success).then(|| "x".repeat(256)),
            kind: AttemptKind::Automatic,
        };
        let writes = AttemptWrites::new(event, &body, &attempt, success, assumed::EVENT_RETENTION)?;
        for (write, before) in [(&writes.event, &mut event_item), (&writes.counter, &mut counter_item)] {
            let after = write.apply(before);
            table.write(ledger, &write.key, before, Some(&after));
            *before = after;
        }
        let attempt_write = writes.attempt(number);
        table.write(ledger, &attempt_write.key, &Item::new(), Some(&attempt_write.apply(&Item::new())));
        ledger.attempts += 1.0;
        // The trigger receives in batches of 10 and deletes the delivered ones in batches.
        ledger.sqs("ReceiveMessage", 0.1);
        if success {
            ledger.sqs("DeleteMessageBatch", 0.1);
        } else {
            ledger.sqs("ChangeMessageVisibilityBatch", 0.1);
        }
    }
    Ok((failures, delivered))
}

/// The model's figures for one load.
#[derive(Debug, Clone)]
pub struct Figures {
    pub mix: Mix,
    /// Everything a second.
    pub load: Ledger,
    /// Per (table or index, family of partition-key values): units a second on its busiest
    /// partition, write and read.
    pub partitions: Vec<(String, String, f64, f64)>,
    /// Lambda concurrency by function.
    pub concurrency: Vec<(String, f64)>,
    /// The status sync by provider: queries a second demanded, and its capacity with the
    /// parameters set.
    pub sync: Vec<(String, f64, f64)>,
    /// Stack parameters the load needs, and AWS quotas to raise (with the demand).
    pub parameters: Vec<(String, String)>,
    pub quotas: Vec<String>,
    /// What else the load means (retries waiting while the merchant fails).
    pub notes: Vec<String>,
    /// Checked limits passed.
    pub violations: Vec<String>,
}

/// How many values a sharded partition-key family has, from its prefix.
fn family(index: &str, partition: &str) -> (String, f64) {
    let sharded = partition.rsplit_once('#').filter(|(_, n)| n.len() >= 2 && n.bytes().all(|b| b.is_ascii_digit()));
    match (index, sharded) {
        // Items written by every request, or by every run: each is one partition.
        (TABLE, _) if partition.starts_with("health#") || partition.starts_with("lease#") => {
            (partition.to_owned(), 1.0)
        }
        // A transaction's, an event's or an attempt's own item: written a few times in its
        // life, so its partition's load is nothing; counted in the totals only.
        (TABLE, _) => {
            ("transaction, event and attempt items (each a few writes in its life)".to_owned(), f64::INFINITY)
        }
        (_, Some((prefix, _))) => {
            let shards = match prefix {
                "PENDING" | "QUEUED" => PENDING_SHARDS,
                "events" => FEED_SHARDS,
                "attention" => ATTENTION_SHARDS,
                _ => SYNC_SHARDS,
            };
            (format!("{prefix}#<{shards} shards>"), f64::from(shards))
        }
        (_, None) => (partition.to_owned(), 1.0),
    }
}

/// The model at `mix`: each provider's transactions simulated (a sample of each variant),
/// scaled to the mix's rates, with the per-run costs of the sync and the reconciler.
pub fn model(table: &Table, template: &Template, mix: &Mix) -> Result<Figures, Error> {
    struct Each<'a> {
        table: &'a Table,
        mix: &'a Mix,
        load: Ledger,
        error: Option<Error>,
    }
    impl provider_catalog::EachSimulator for Each<'_> {
        fn simulator<S: Simulator>(&mut self) {
            if let Err(error) = self.simulate::<S>() {
                self.error.get_or_insert(error);
            }
        }
    }
    impl Each<'_> {
        fn simulate<S: Simulator>(&mut self) -> Result<(), Error> {
            let name = S::Provider::NAME;
            let share = self.mix.shares.iter().find(|(p, _)| *p == name).map_or(0.0, |(_, s)| *s);
            let pix = if S::LOAD.charges_expire { self.mix.pix_never_paid } else { 0.0 };
            let refunded = if S::LOAD.refunds { self.mix.refunded } else { 0.0 };
            let settled = 1.0 - self.mix.late - self.mix.never_final - pix - self.mix.mismatched - refunded;
            let variants = [
                (Variant::Settled, settled),
                (Variant::Mismatched, self.mix.mismatched),
                (Variant::Refunded, refunded),
                (Variant::Late, self.mix.late),
                (Variant::NeverFinal, self.mix.never_final),
                (Variant::PixNeverPaid, pix),
            ];
            // The sample: per variant, transactions whose keys fall on different shards.
            const SAMPLE: u64 = 16;
            let mut per_transaction = Ledger::default();
            for (variant, weight) in variants.into_iter().filter(|(_, w)| *w > 0.0) {
                for n in 0..SAMPLE {
                    let ledger = transaction::<S>(self.table, 7_000 + n * 7 + variant as u64, variant, self.mix)?;
                    per_transaction.add(&ledger, weight / SAMPLE as f64);
                }
            }
            let largest = transaction::<S>(self.table, 1, Variant::Largest, self.mix)?;
            per_transaction.largest_item = per_transaction.largest_item.max(largest.largest_item);
            per_transaction.largest_message = per_transaction.largest_message.max(largest.largest_message);
            let webhooks_per_transaction = per_transaction.webhooks.get(name).copied().unwrap_or(1.0);
            let transactions = self.mix.webhooks_per_second * share / webhooks_per_transaction;
            self.load.add(&per_transaction, transactions);
            Ok(())
        }
    }
    let mut each = Each { table, mix, load: Ledger::default(), error: None };
    provider_catalog::for_each_simulator(&mut each);
    if let Some(error) = each.error {
        return Err(error);
    }
    let mut load = each.load;
    let providers: Vec<String> = mix.shares.iter().map(|(p, _)| (*p).to_owned()).collect();
    let parameter = |name: &str, default: f64| {
        template.parameter_default(name).and_then(|v| v.parse::<f64>().ok()).unwrap_or(default)
    };

    let mut violations = Vec::new();
    let mut quotas = Vec::new();
    let mut parameters = Vec::new();
    // The status sync: per provider per run (a minute), the lease taken and given back,
    // a query per shard (keys only) and of the old index, and the due records by key.
    let run = assumed::SYNC_RUN.as_secs_f64();
    let groups = status_sync::GROUPS;
    for provider in &providers {
        for group in 0..groups {
            let lease = format!("lease#sync#{provider}#{group}");
            *load.writes.entry((TABLE.to_owned(), lease)).or_default() += 2.0 / run;
        }
        for shard in 0..SYNC_SHARDS {
            let partition = format!("{provider}#{shard:02}");
            *load.reads.entry(("SyncShards".to_owned(), partition)).or_default() += 0.5 / run;
        }
        *load.reads.entry(("SyncSchedule".to_owned(), provider.clone())).or_default() += 0.5 / run;
    }
    // The reconciler, every 5 minutes: every pending shard, and up to QUEUED_READ_PER_SHARD items of each
    // queued shard (in a merchant's outage they are full).
    let reconciler = 300.0;
    let queued_items = match mix.merchant {
        Merchant::Healthy => 0.0,
        Merchant::FailingHour | Merchant::DownThreeDays => reconciler::QUEUED_READ_PER_SHARD as f64,
    };
    for shard in 0..PENDING_SHARDS {
        for (prefix, items) in [("PENDING", 0.0), ("QUEUED", queued_items)] {
            let units = (read_units(1, false) + items * 2_048.0 / 4_096.0 / 2.0) / reconciler;
            *load.reads.entry(("PendingNotifications".to_owned(), format!("{prefix}#{shard:02}"))).or_default() +=
                units;
        }
    }
    load.sqs("SendMessageBatch", load.outcomes * assumed::LOST_SENDS / 10.0);
    // Resends and recovers: the event read, and one send each.
    load.sqs("SendMessage", mix.resends_per_second);
    *load.reads.entry((TABLE.to_owned(), "evt#<resent>".to_owned())).or_default() += mix.resends_per_second;

    // The notifier: sized to deliver every outcome at twice its rate when the merchant is
    // healthy (10 at once per batch); while the merchant fails, the instances stay bounded
    // (what `NotifierMaxConcurrency` is for) and retries wait in the queue. Its instances
    // write the merchant's health item at most once every 10 s (failing) or 60 s each.
    let notifier_needed = (load.outcomes + load.other_events) / 10.0 * assumed::NOTIFIER_BATCH_HEALTHY.as_secs_f64();
    let notifier_default = parameter("NotifierMaxConcurrency", 20.0);
    let notifier_set = (notifier_needed * 2.0).ceil().max(notifier_default);
    let retry_capacity = notifier_set * 10.0 / assumed::NOTIFIER_BATCH_FAILING.as_secs_f64();
    let epoch = OffsetDateTime::UNIX_EPOCH;
    let (health_write, health_writes) = match mix.merchant {
        Merchant::Healthy => (notifier::health::success_write(epoch)?, notifier_set / 60.0),
        Merchant::FailingHour | Merchant::DownThreeDays => {
            (notifier::health::failure_write(epoch)?, notifier_set / 10.0)
        }
    };
    let health_item = health_write.apply(&Item::new());
    *load.writes.entry((TABLE.to_owned(), health_write.key)).or_default() +=
        health_writes * write_units(item_size(&health_item));
    let mut notes = Vec::new();
    if load.attempts > retry_capacity {
        notes.push(format!(
            "retries wait in the queue: {:.0} attempts/s due, {retry_capacity:.0}/s made at most ({notifier_set:.0} notifier instances)",
            load.attempts
        ));
    }

    // Partitions: each index's busiest, by family of sharded values.
    let mut families: BTreeMap<(String, String), (f64, f64, f64)> = BTreeMap::new();
    for ((index, partition), units) in &load.writes {
        let (name, count) = family(index, partition);
        let entry = families.entry((index.clone(), name)).or_insert((0.0, 0.0, count));
        entry.0 += units / count;
    }
    for ((index, partition), units) in &load.reads {
        let (name, count) = family(index, partition);
        let entry = families.entry((index.clone(), name)).or_insert((0.0, 0.0, count));
        entry.1 += units / count;
    }
    let partitions: Vec<(String, String, f64, f64)> =
        families.into_iter().map(|((index, family), (w, r, _))| (index, family, w, r)).collect();

    // Up to 10,000 webhooks a second every partition keeps half its limit free; beyond,
    // none may pass its limit.
    let share = if mix.webhooks_per_second <= 10_000.0 { limits::HEADROOM } else { 1.0 };
    for (index, family, writes, reads) in &partitions {
        if *writes > limits::PARTITION_WRITE_UNITS * share {
            violations.push(format!("{index} {family}: {writes:.0} write units/s on one partition"));
        }
        if *reads > limits::PARTITION_READ_UNITS * share {
            violations.push(format!("{index} {family}: {reads:.0} read units/s on one partition"));
        }
    }
    if load.largest_item >= limits::ITEM_BOUND {
        violations.push(format!("largest item {} bytes", load.largest_item));
    }
    let (high_throughput, max_message) = template.queue_limits(crate::template::QUEUE)?;
    if !high_throughput {
        violations.push("the queue is not high-throughput FIFO".into());
    }
    if max_message.is_none_or(|max| load.largest_message > max as usize) {
        violations
            .push(format!("largest message {} bytes over MaximumMessageSize {max_message:?}", load.largest_message));
    }
    for (action, calls) in &load.sqs {
        if *calls > limits::SQS_CALLS_SMALLEST_REGION * limits::HEADROOM {
            match mix.webhooks_per_second <= 10_000.0 {
                true => violations.push(format!("SQS {action}: {calls:.0} calls/s")),
                false => quotas.push(format!(
                    "SQS high-throughput FIFO: {action} {calls:.0} calls/s (a region with 70,000, or a raise)"
                )),
            }
        }
    }

    // Lambda concurrency (Little's law).
    let mut concurrency = Vec::new();
    let mut webhook_total = 0.0;
    for (provider, webhooks) in &load.webhooks {
        let hinted = load.hints.contains_key(provider);
        let latency = if hinted { assumed::HINT_WEBHOOK } else { assumed::WEBHOOK };
        let instances = webhooks * latency.as_secs_f64();
        webhook_total += instances;
        concurrency.push((format!("{provider}-webhook"), instances));
    }
    // The hint queue's consumer: full batches under load, each as long as its slowest
    // call; counted with the webhook functions, whose work it finishes. Its trigger's
    // MaximumConcurrency is sized to twice that.
    let (consumer, batch) = template.sqs_trigger(crate::template::HINT_QUEUE)?;
    let hints: f64 = load.hints.values().sum();
    let confirm_needed = hints / batch as f64 * assumed::HINT_BATCH.as_secs_f64();
    let confirm_default = parameter("PagstarConfirmMaxConcurrency", 10.0);
    let confirm_set = (confirm_needed * 2.0).ceil().max(confirm_default);
    webhook_total += confirm_needed;
    concurrency.push((format!("{consumer} (hint queue)"), confirm_needed));
    if confirm_set > confirm_default {
        parameters.push(("PagstarConfirmMaxConcurrency".into(), format!("{confirm_set:.0}")));
    }
    if confirm_set > limits::MAXIMUM_CONCURRENCY {
        violations
            .push(format!("the hint queue's consumer needs {confirm_set:.0} instances (the trigger allows 1,000)"));
    }
    if hints > 0.0 {
        notes.push(format!(
            "hint queue (standard SQS, no throughput quota): {hints:.0} SendMessage/s, {:.0} ReceiveMessage/s and DeleteMessageBatch/s",
            hints / batch as f64
        ));
    }
    concurrency.push(("notifier".into(), notifier_needed.min(notifier_set)));
    // Up to 1,000 instances the trigger's MaximumConcurrency bounds them; beyond, its
    // provisioned mode does, each event poller invoking up to 10 at once.
    if notifier_set > limits::MAXIMUM_CONCURRENCY {
        let pollers = (notifier_set / limits::INSTANCES_PER_POLLER).ceil();
        parameters.push(("NotifierMaxPollers".into(), format!("{pollers:.0}")));
        if pollers > limits::MAXIMUM_POLLERS {
            violations.push(format!(
                "the notifier needs {notifier_set:.0} instances ({pollers:.0} event pollers; the trigger allows 2,000)"
            ));
        }
    } else if notifier_set > notifier_default {
        parameters.push(("NotifierMaxConcurrency".into(), format!("{notifier_set:.0}")));
    }

    // The status sync: demand against capacity. Each minute, one invocation per shard
    // group the template schedules takes up to the batch from each of its shards, and
    // gets through as many as its calls at once allow; both are set to give twice the
    // demand, within their stack parameters' bounds.
    let scheduled: std::collections::BTreeSet<usize> = template
        .schedule_inputs("StatusSyncFunction")?
        .iter()
        .filter_map(|input| status_sync::shard_group(input).ok().flatten())
        .collect();
    if scheduled.len() != groups {
        violations.push(format!("the status sync schedules {} of its {groups} shard groups", scheduled.len()));
    }
    let invocations = scheduled.len().max(1) as f64;
    // Each invocation takes new transactions for its run budget of the minute.
    let busy = status_sync::RUN_BUDGET.as_secs_f64() / run;
    let shards = f64::from(SYNC_SHARDS);
    let batch_max = status_sync::MAX_BATCH as f64;
    let calls_max = status_sync::MAX_CONCURRENCY as f64;
    let batch_default = parameter("StatusSyncBatch", status_sync::BATCH as f64);
    let calls_default = parameter("StatusSyncConcurrency", status_sync::CONCURRENCY as f64);
    let mut batch_set = batch_default;
    let mut calls_set = calls_default;
    for provider in &providers {
        let demand = load.status_queries.get(provider).copied().unwrap_or(0.0);
        let latency = assumed::status_query(provider).as_secs_f64();
        batch_set = batch_set.max((2.0 * demand * run / shards).ceil());
        calls_set = calls_set.max((2.0 * demand * latency / invocations / busy).ceil());
    }
    let (batch_set, calls_set) = (batch_set.min(batch_max), calls_set.min(calls_max));
    // One invocation asks every provider with a status API at once, each with up to
    // `StatusSyncConcurrency` connections, all of them within `MAX_CONNECTIONS`; Lambda
    // allows an instance 1,024 file descriptors, some of which the runtime and the SDK's
    // clients hold. The calls the demand keeps under way in one invocation, all providers
    // together, must fit in that, twice over.
    let asked = provider_catalog::all().iter().filter(|p| p.has_status_api).count() as f64;
    let connections = (calls_set * asked).min(status_sync::MAX_CONNECTIONS as f64);
    if connections > limits::FILE_DESCRIPTORS {
        violations.push(format!(
            "status sync: {connections:.0} connections at once in one invocation, over {:.0} of Lambda's 1,024 file descriptors",
            limits::FILE_DESCRIPTORS
        ));
    }
    let under_way: f64 = providers
        .iter()
        .map(|p| 2.0 * load.status_queries.get(p).copied().unwrap_or(0.0) * assumed::status_query(p).as_secs_f64())
        .sum::<f64>()
        / invocations
        / busy;
    if under_way > status_sync::MAX_CONNECTIONS as f64 {
        violations.push(format!(
            "status sync: {under_way:.0} calls at once needed in each invocation, all providers together (at most {})",
            status_sync::MAX_CONNECTIONS
        ));
    }
    if batch_set > batch_default {
        parameters.push(("StatusSyncBatch".into(), format!("{batch_set:.0}")));
    }
    if calls_set > calls_default {
        parameters.push(("StatusSyncConcurrency".into(), format!("{calls_set:.0}")));
    }
    let sync: Vec<(String, f64, f64)> = providers
        .iter()
        .map(|provider| {
            let demand = load.status_queries.get(provider).copied().unwrap_or(0.0);
            let latency = assumed::status_query(provider).as_secs_f64();
            (provider.clone(), demand, (shards * batch_set / run).min(invocations * busy * calls_set / latency))
        })
        .collect();
    for (provider, demand, capacity) in &sync {
        if *capacity < 2.0 * demand {
            violations.push(format!(
                "status sync {provider}: {demand:.0} queries/s, capacity {capacity:.0} at most (StatusSyncBatch {batch_max}, StatusSyncConcurrency {calls_max})"
            ));
        }
    }
    // One invocation per shard group each minute, each done within the minute (its run
    // budget, then the calls under way); its calls at once are async, within the one
    // instance.
    concurrency.push(("status-sync".into(), invocations));
    if mix.webhooks_per_second <= 10_000.0 && webhook_total >= limits::LAMBDA_CONCURRENCY * limits::HEADROOM {
        violations.push(format!("webhook functions at {webhook_total:.0} concurrent instances"));
    }
    let total_concurrency: f64 = webhook_total - confirm_needed + confirm_set + notifier_set + invocations + 5.0;
    if total_concurrency > limits::LAMBDA_CONCURRENCY * 0.8 {
        quotas.push(format!("Lambda concurrent executions: {total_concurrency:.0} needed (default 1,000)"));
    }
    if mix.webhooks_per_second > limits::API_GATEWAY_RATE * 0.8 {
        quotas.push(format!(
            "API Gateway account throttle: {:.0} requests/s (default 10,000); and ApiThrottlingRateLimit per route",
            mix.webhooks_per_second
        ));
    }
    let table_writes: f64 = load.writes.iter().filter(|((t, _), _)| t == TABLE).map(|(_, u)| u).sum::<f64>()
        + load.failed_writes
        + load.writes.iter().filter(|((t, _), _)| t != TABLE).map(|(_, u)| u).sum::<f64>();
    if table_writes > limits::TABLE_UNITS * 0.8 {
        quotas.push(format!(
            "DynamoDB table write throughput: {table_writes:.0} units/s with its indexes (default 40,000 per table)"
        ));
    }
    Ok(Figures { mix: mix.clone(), load, partitions, concurrency, sync, parameters, quotas, notes, violations })
}

impl std::fmt::Display for Figures {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let mix = &self.mix;
        writeln!(f, "## {:.0} webhooks/s, {} mix, {}", mix.webhooks_per_second, mix.name, mix.merchant.name())?;
        writeln!(f)?;
        writeln!(f, "| DynamoDB partition (busiest) | write units/s | % of 1,000 | read units/s | % of 3,000 |")?;
        writeln!(f, "|---|---:|---:|---:|---:|")?;
        for (index, family, writes, reads) in &self.partitions {
            if *writes < 0.05 && *reads < 0.05 {
                continue;
            }
            writeln!(
                f,
                "| {index} {family} | {writes:.1} | {:.1}% | {reads:.1} | {:.1}% |",
                writes / 10.0,
                reads / 30.0
            )?;
        }
        let total: f64 = self.load.writes.values().sum::<f64>() + self.load.failed_writes;
        let reads: f64 = self.load.reads.values().sum();
        writeln!(f, "| **all partitions** | {total:.0} | | {reads:.0} | |")?;
        writeln!(f)?;
        writeln!(f, "| SQS action | calls/s | % of 9,000 |")?;
        writeln!(f, "|---|---:|---:|")?;
        for (action, calls) in &self.load.sqs {
            writeln!(f, "| {action} | {calls:.1} | {:.1}% |", calls / 90.0)?;
        }
        writeln!(f)?;
        writeln!(f, "| status sync | queries/s | capacity/s | provider API calls/s |")?;
        writeln!(f, "|---|---:|---:|---:|")?;
        for (provider, demand, capacity) in &self.sync {
            let calls = self.load.provider_calls.get(provider).copied().unwrap_or(0.0);
            writeln!(f, "| {provider} | {demand:.1} | {capacity:.0} | {calls:.1} |")?;
        }
        writeln!(f)?;
        let functions: Vec<String> = self.concurrency.iter().map(|(n, c)| format!("{n} {c:.1}")).collect();
        writeln!(f, "Lambda concurrency: {}", functions.join(", "))?;
        writeln!(
            f,
            "Largest item {} bytes; largest message {} bytes; outcomes {:.0}/s, other events {:.0}/s, delivery attempts {:.0}/s",
            self.load.largest_item,
            self.load.largest_message,
            self.load.outcomes,
            self.load.other_events,
            self.load.attempts
        )?;
        let parameters: Vec<String> = self.parameters.iter().map(|(n, v)| format!("{n}={v}")).collect();
        writeln!(
            f,
            "Stack parameters to set: {}",
            if parameters.is_empty() { "none".into() } else { parameters.join(", ") }
        )?;
        writeln!(
            f,
            "AWS quotas to raise: {}",
            if self.quotas.is_empty() { "none".into() } else { self.quotas.join("; ") }
        )?;
        for note in &self.notes {
            writeln!(f, "Note: {note}")?;
        }
        match self.violations.is_empty() {
            true => writeln!(f, "Checked limits: all within bounds"),
            false => writeln!(f, "**LIMITS PASSED**: {}", self.violations.join("; ")),
        }
    }
}

/// Whether the design holds to `mix`: a limit passed there fails `scripts/capacity`. Both
/// mixes up to 10,000 webhooks a second are held; at 100,000 they are reported with the
/// limits they pass, which are open work (BENCHMARKS.md, "Capacity").
pub fn held(mix: &Mix) -> bool {
    mix.webhooks_per_second <= 10_000.0
}

/// The summary table's header (BENCHMARKS.md).
pub const SUMMARY_HEADER: &str = "| webhooks/s | mix | merchant | busiest partition (write units/s, % of 1,000) | busiest SQS action (calls/s) | sync demand / capacity (busiest provider, queries/s) | largest item | webhook / notifier concurrency | parameters | quotas to raise | limits |\n|---:|---|---|---|---|---|---:|---|---|---|---|";

/// One row of the summary.
pub fn summary_row(figures: &Figures) -> String {
    let busiest = figures
        .partitions
        .iter()
        .max_by(|a, b| a.2.total_cmp(&b.2))
        .map_or("-".into(), |(index, family, w, _)| format!("{index} {family}: {w:.0} ({:.0}%)", w / 10.0));
    let sqs = figures
        .load
        .sqs
        .iter()
        .max_by(|a, b| a.1.total_cmp(b.1))
        .map_or("-".into(), |(action, calls)| format!("{action} {calls:.0}"));
    let sync = figures
        .sync
        .iter()
        .max_by(|a, b| a.1.total_cmp(&b.1))
        .map_or("-".into(), |(p, d, c)| format!("{p} {d:.1} / {c:.0}"));
    let webhooks: f64 = figures
        .concurrency
        .iter()
        .filter(|(n, _)| n.ends_with("-webhook") || n.ends_with("(hint queue)"))
        .map(|(_, c)| c)
        .sum();
    let notifier = figures.concurrency.iter().find(|(n, _)| n.starts_with("notifier")).map_or(0.0, |(_, c)| *c);
    let parameters: Vec<String> = figures.parameters.iter().map(|(n, v)| format!("{n}={v}")).collect();
    format!(
        "| {:.0} | {} | {} | {busiest} | {sqs} | {sync} | {} B | {webhooks:.0} / {notifier:.0} | {} | {} | {} |",
        figures.mix.webhooks_per_second,
        figures.mix.name,
        figures.mix.merchant.name().trim_start_matches("merchant "),
        figures.load.largest_item,
        if parameters.is_empty() { "defaults".into() } else { parameters.join(", ") },
        if figures.quotas.is_empty() { "none".into() } else { figures.quotas.len().to_string() },
        match (figures.violations.is_empty(), held(&figures.mix)) {
            (true, _) => "ok".to_owned(),
            (false, true) => format!("**{} passed**", figures.violations.len()),
            (false, false) => format!("{} passed (not held yet)", figures.violations.len()),
        },
    )
}

/// Adds `ReturnConsumedCapacity = INDEXES` to every write the store sends and keeps what
/// DynamoDB reports, by table and index: the model's check, at the SDK's layer, with no
/// change to the store.
/// Cloned, it shares its totals: the client keeps one clone, the check reads another.
#[derive(Debug, Default, Clone)]
struct ConsumedCapacity(std::sync::Arc<std::sync::Mutex<BTreeMap<String, f64>>>);

impl aws_sdk_dynamodb::config::Intercept for ConsumedCapacity {
    fn name(&self) -> &'static str {
        "consumed capacity"
    }

    fn modify_before_serialization(
        &self,
        context: &mut aws_sdk_dynamodb::config::interceptors::BeforeSerializationInterceptorContextMut<'_>,
        _: &aws_sdk_dynamodb::config::RuntimeComponents,
        _: &mut aws_sdk_dynamodb::config::ConfigBag,
    ) -> Result<(), aws_sdk_dynamodb::error::BoxError> {
        use aws_sdk_dynamodb::operation::{delete_item, put_item, update_item};
        use aws_sdk_dynamodb::types::ReturnConsumedCapacity::Indexes;
        let input = context.input_mut();
        if let Some(update) = input.downcast_mut::<update_item::UpdateItemInput>() {
            update.return_consumed_capacity = Some(Indexes);
        } else if let Some(put) = input.downcast_mut::<put_item::PutItemInput>() {
            put.return_consumed_capacity = Some(Indexes);
        } else if let Some(delete) = input.downcast_mut::<delete_item::DeleteItemInput>() {
            delete.return_consumed_capacity = Some(Indexes);
        }
        Ok(())
    }

    fn read_after_execution(
        &self,
        context: &aws_sdk_dynamodb::config::interceptors::FinalizerInterceptorContextRef<'_>,
        _: &aws_sdk_dynamodb::config::RuntimeComponents,
        _: &mut aws_sdk_dynamodb::config::ConfigBag,
    ) -> Result<(), aws_sdk_dynamodb::error::BoxError> {
        use aws_sdk_dynamodb::operation::{delete_item, put_item, update_item};
        let Some(Ok(output)) = context.output_or_error() else {
            return Ok(());
        };
        let consumed = if let Some(update) = output.downcast_ref::<update_item::UpdateItemOutput>() {
            update.consumed_capacity.clone()
        } else if let Some(put) = output.downcast_ref::<put_item::PutItemOutput>() {
            put.consumed_capacity.clone()
        } else if let Some(delete) = output.downcast_ref::<delete_item::DeleteItemOutput>() {
            delete.consumed_capacity.clone()
        } else {
            None
        };
        let Some(consumed) = consumed else {
            return Ok(());
        };
        let mut totals = self.0.lock().map_err(|_| "poisoned")?;
        if let Some(units) = consumed.table.and_then(|t| t.capacity_units) {
            *totals.entry(TABLE.to_owned()).or_default() += units;
        }
        for (index, capacity) in consumed.global_secondary_indexes.unwrap_or_default() {
            *totals.entry(index).or_default() += capacity.capacity_units.unwrap_or_default();
        }
        Ok(())
    }
}

/// One transaction through the store, and the model's ledger for it.
type Run<'a> = std::pin::Pin<Box<dyn std::future::Future<Output = Result<Ledger, Error>> + Send + 'a>>;

/// The model against DynamoDB Local: what it predicts and what DynamoDB reports, by table
/// and index, and each index's membership.
#[derive(Debug, Clone)]
pub struct Verification {
    pub transactions: usize,
    /// (table or index, predicted write units, consumed write units).
    pub units: Vec<(String, f64, f64)>,
    /// (index, items the model puts in it, items DynamoDB has in it).
    pub membership: Vec<(String, usize, usize)>,
}

impl Verification {
    /// Whether every figure agrees.
    pub fn matches(&self) -> bool {
        self.units.iter().all(|(_, predicted, consumed)| (predicted - consumed).abs() < 0.5)
            && self.membership.iter().all(|(_, predicted, found)| predicted == found)
    }
}

impl std::fmt::Display for Verification {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        writeln!(f, "## The model against DynamoDB Local ({} transactions, every provider)", self.transactions)?;
        writeln!(f)?;
        writeln!(f, "| table or index | write units, model | consumed (ReturnConsumedCapacity) | items, model | items in the index |")?;
        writeln!(f, "|---|---:|---:|---:|---:|")?;
        for (name, predicted, consumed) in &self.units {
            let members = self.membership.iter().find(|(index, _, _)| index == name);
            let (model_items, items) =
                members.map_or(("".into(), "".into()), |(_, m, i)| (m.to_string(), i.to_string()));
            writeln!(f, "| {name} | {predicted:.0} | {consumed:.0} | {model_items} | {items} |")?;
        }
        writeln!(f)?;
        writeln!(f, "{}", if self.matches() { "The model matches." } else { "**The model does not match.**" })
    }
}

/// Runs a sample of each provider's settled transactions through the project's own write
/// path (the webhooks' write_path, the event log, the notifier's mark) against DynamoDB
/// Local, and the same through the model; compares units and index membership.
pub async fn verify(endpoint: &str, template: &Template, table: &Table) -> Result<Verification, Error> {
    let capture = ConsumedCapacity::default();
    let plain = crate::dynamodb_client(endpoint);
    let client = aws_sdk_dynamodb::Client::from_conf(plain.config().to_builder().interceptor(capture.clone()).build());
    let sqs_endpoint = std::env::var("SQS_ENDPOINT").map_err(|_| "--verify needs SQS_ENDPOINT")?;
    let sqs = crate::sqs_client(&sqs_endpoint);
    let nanos = OffsetDateTime::now_utc().unix_timestamp_nanos();
    let resources = template.provision(&plain, &sqs, &format!("capacity{nanos}-")).await?;
    let store = shared::storage::TransactionStore::new(client, &resources.table_name);
    let queue = shared::storage::EventQueue::new(sqs, &resources.queue_url);
    let write_path = shared::pipeline::WritePath::new(store.clone(), queue, SyncPolicy::default());
    let mix = Mix { duplicates: 0.0, ..Mix::reference(1.0, Merchant::Healthy) };

    struct Each<'a> {
        table: &'a Table,
        mix: &'a Mix,
        write_path: &'a shared::pipeline::WritePath,
        runs: Vec<Run<'a>>,
    }
    impl provider_catalog::EachSimulator for Each<'_> {
        fn simulator<S: Simulator>(&mut self) {
            for n in 0..8 {
                let (table, mix, write_path) = (self.table, self.mix, self.write_path);
                self.runs
                    .push(Box::pin(async move { through_the_store::<S>(table, mix, write_path, 90_000 + n).await }));
            }
        }
    }
    let mut each = Each { table, mix: &mix, write_path: &write_path, runs: Vec::new() };
    provider_catalog::for_each_simulator(&mut each);
    let transactions = each.runs.len();
    let mut predicted = Ledger::default();
    for run in each.runs {
        predicted.add(&run.await?, 1.0);
    }
    let consumed = capture.0.lock().map_err(|_| "poisoned")?.clone();
    let mut by_name: BTreeMap<String, f64> = BTreeMap::new();
    for ((name, _), units) in &predicted.writes {
        *by_name.entry(name.clone()).or_default() += units;
    }
    let mut names: Vec<String> = by_name.keys().chain(consumed.keys()).cloned().collect();
    names.sort();
    names.dedup();
    let units = names
        .into_iter()
        .map(|name| {
            let model = by_name.get(&name).copied().unwrap_or(0.0);
            let real = consumed.get(&name).copied().unwrap_or(0.0);
            (name, model, real)
        })
        .collect();
    // Membership: which stored items the model puts in each index, and which DynamoDB has.
    let items: Vec<Item> = plain
        .scan()
        .table_name(&resources.table_name)
        .into_paginator()
        .items()
        .send()
        .collect::<Vec<_>>()
        .await
        .into_iter()
        .collect::<Result<_, _>>()?;
    let mut membership = Vec::new();
    for index in &table.indexes {
        let model = items.iter().filter(|item| Table::entry(index, item).is_some()).count();
        let found: Vec<Item> = plain
            .scan()
            .table_name(&resources.table_name)
            .index_name(&index.name)
            .into_paginator()
            .items()
            .send()
            .collect::<Vec<_>>()
            .await
            .into_iter()
            .collect::<Result<_, _>>()?;
        membership.push((index.name.clone(), model, found.len()));
    }
    Ok(Verification { transactions, units, membership })
}

/// One settled transaction of `S` through the store (its webhooks through the write_path,
/// its outcome delivered: the event log's attempt and the notifier's mark), and the
/// model's ledger for the same transaction.
async fn through_the_store<S: Simulator>(
    table: &Table,
    mix: &Mix,
    write_path: &shared::pipeline::WritePath,
    n: u64,
) -> Result<Ledger, Error> {
    let name = S::Provider::NAME;
    let reference = S::stored_reference(&S::new_reference(n));
    let start = OffsetDateTime::from_unix_timestamp(1_795_000_000 + i64::try_from(n).unwrap_or(0))?;
    for (t, word) in S::SEQUENCE.iter().enumerate() {
        let mut observation = Observation::new(reference.clone(), S::status_of(word), *word);
        observation.amount = Some(Amount::parse("100.00")?);
        observation.currency = Some("BRL".into());
        let at = start + Duration::from_secs(t as u64);
        write_path.apply(name, S::Provider::HAS_STATUS_API, observation, at).await?;
    }
    let store = write_path.store();
    let record = store.get(name, &reference).await?.ok_or("no record")?;
    let event = MerchantEvent::for_record(&record).ok_or("not final")?;
    let body = serde_json::to_string(&event)?;
    let attempt = shared::storage::Attempt {
        at: event.created_at,
        status: Some(204),
        error: None,
        duration_ms: 200,
        response: None,
        kind: shared::storage::AttemptKind::Automatic,
    };
    store.event_log(Duration::from_secs(30 * 86_400)).record_attempt(&event, &body, &attempt, true).await?;
    let delivered = shared::model::NotificationOutcome::Delivered;
    store.mark_notification(name, &reference, record.status, delivered, event.created_at).await?;
    transaction::<S>(table, n, Variant::Settled, mix)
}
