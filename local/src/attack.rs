//! `scripts/attack`: an attacker's inputs (issue 26) against the local pipeline over HTTP,
//! each stage with the figure it must give.
//!
//! - **Forged Key2Pay captures**: each with the static token of old, or another payment's
//!   callback token. Forged outcomes applied must be 0; the payments' own tokens complete them.
//! - **A Pagstar hint flood** at the route's throttle (`ApiThrottlingRateLimit`'s default,
//!   100 a second): hints naming txids Pagstar does not know, fresh or repeated, with
//!   genuine hints mixed in and retried as Pagstar retries. Genuine outcomes lost must be
//!   0; the calls to Pagstar's API (`GET /cob`, counted by a proxy in front of its
//!   stand-in) must stay within the design's bound in every second.
//! - **Poison strings through every provider**: every string of a final webhook, one at a
//!   time, carrying what SQS refuses (U+FFFE, U+FFFF), control characters and a long
//!   tail, signed as the provider signs. No answer may be a 5xx, and every outcome applied
//!   must reach the merchant.
//! - **Resend and recover storms**: a recover of the whole run's window and a resend of
//!   each event, each request sent several times at once under one `Idempotency-Key` (a
//!   client retrying). The recover must deliver each event the merchant refused (410)
//!   exactly once and no other; the resends each event exactly once more; a resend under
//!   a new key within the cooldown must be 429.
//!
//! No faults are injected on the wire; the merchant refuses its first deliveries (410) and
//! answers some 500 or 429 until the storms.

use std::collections::{BTreeMap, HashMap};
use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use futures_util::StreamExt;
use serde_json::Value;
use shared::runtime::config::Env;
use shared::storage::TransactionStore;
use time::OffsetDateTime;

use crate::chaos::faults::{self, FaultLog};
use crate::chaos::merchant::{Burst, ChaosMerchant};
use crate::chaos::traffic::{self, retry_delay, ChaosProvider, Rng};
use crate::chaos::{free_port, Pipeline, COMPRESSED};
use crate::template::TABLE;
use crate::{dynamodb_client, DevEnv};

pub type Error = Box<dyn std::error::Error + Send + Sync>;

/// The calls to Pagstar's API a second per client (`PAGSTAR_CALLS_PER_SECOND`) in the run.
const PAGSTAR_CALLS_PER_SECOND: u32 = 20;
/// The local pipeline's Pagstar clients, each with its own bucket: the hint consumer's
/// and the status sync's.
const PAGSTAR_CLIENTS: u32 = 2;
/// What an attacker puts in a string: the two characters SQS refuses, a NUL, an escape,
/// a lone combining mark, an emoji and a long tail.
fn poison(original: &str) -> String {
    format!("{original}\u{FFFE}\u{FFFF}\u{0}\u{1B}[31m\u{301}\u{1F9E8}{}", "x".repeat(4000))
}

/// How big a run is.
#[derive(Debug, Clone)]
pub struct Options {
    /// Key2Pay payments, each with one forgery.
    pub forgeries: usize,
    /// The flood's rate (hints a second) and length.
    pub flood_rate: u32,
    pub flood_seconds: u64,
    /// Genuine Pagstar payments whose hints arrive during the flood.
    pub genuine: usize,
    /// Requests sent at once under one key in the storms.
    pub retries: usize,
    pub seed: u64,
    pub pipeline: PathBuf,
    pub root: PathBuf,
    pub dynamodb_endpoint: String,
    pub sqs_endpoint: String,
    pub log: PathBuf,
}

/// The figures; a run passes when `violations` is empty.
#[derive(Debug, Clone, Default)]
pub struct Report {
    pub forged_sent: usize,
    pub forged_answers: BTreeMap<u16, usize>,
    pub forged_applied: usize,
    pub key2pay_genuine_applied: usize,
    pub flood_hints: usize,
    pub flood_answers: BTreeMap<u16, usize>,
    pub flood_seconds: f64,
    pub genuine_sent: usize,
    pub genuine_lost: usize,
    pub genuine_settled_seconds: f64,
    pub pagstar_calls: usize,
    pub pagstar_peak_per_second: usize,
    pub pagstar_bound_per_second: usize,
    pub poison_sent: usize,
    pub poison_answers: BTreeMap<u16, usize>,
    pub poison_applied: usize,
    pub poison_undelivered: usize,
    pub storm_events: usize,
    /// Events the merchant refused with 410 only, before the storms.
    pub undelivered: usize,
    pub recover_requests: usize,
    /// The fewest and most deliveries the recover caused of an undelivered event.
    pub recover_deliveries: (usize, usize),
    /// The most it caused of an event delivered before (must be 0).
    pub recover_delivered_again: usize,
    pub resend_requests: usize,
    pub resend_deliveries: (usize, usize),
    pub resend_cooldown_refused: usize,
    /// Storm requests answered 5xx, then retried under their key.
    pub failed_requests: usize,
    pub violations: Vec<String>,
}

fn answers(map: &BTreeMap<u16, usize>) -> String {
    map.iter().map(|(status, n)| format!("{status}: {n}")).collect::<Vec<_>>().join(", ")
}

impl std::fmt::Display for Report {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        writeln!(f, "attack:")?;
        writeln!(
            f,
            "  forged Key2Pay captures        {} sent ({}); forged outcomes applied {}; genuine captures applied {}",
            self.forged_sent,
            answers(&self.forged_answers),
            self.forged_applied,
            self.key2pay_genuine_applied
        )?;
        writeln!(
            f,
            "  Pagstar hint flood             {} hints in {:.0} s ({}); {} genuine, lost {} (all settled after {:.0} s)",
            self.flood_hints,
            self.flood_seconds,
            answers(&self.flood_answers),
            self.genuine_sent,
            self.genuine_lost,
            self.genuine_settled_seconds
        )?;
        writeln!(
            f,
            "  calls to Pagstar's API         {} in all; at most {} in any second (bound {})",
            self.pagstar_calls, self.pagstar_peak_per_second, self.pagstar_bound_per_second
        )?;
        writeln!(
            f,
            "  poison strings                 {} sent ({}); {} applied, {} of them never delivered",
            self.poison_sent,
            answers(&self.poison_answers),
            self.poison_applied,
            self.poison_undelivered
        )?;
        writeln!(
            f,
            "  recover storm                  {} requests over {} events, {} undelivered; deliveries per undelivered event {}..{} (must be 1, or one more per 5xx), per delivered one at most {} (must be 0)",
            self.recover_requests,
            self.storm_events,
            self.undelivered,
            self.recover_deliveries.0,
            self.recover_deliveries.1,
            self.recover_delivered_again
        )?;
        writeln!(
            f,
            "  resend storm                   {} requests; deliveries per event {}..{} (must be 1, or one more per 5xx); new keys within the cooldown refused {}",
            self.resend_requests, self.resend_deliveries.0, self.resend_deliveries.1, self.resend_cooldown_refused
        )?;
        writeln!(
            f,
            "  storm requests answered 5xx    {} (each retried under its key; each may add one delivery)",
            self.failed_requests
        )?;
        for violation in self.violations.iter().take(50) {
            writeln!(f, "  VIOLATION: {violation}")?;
        }
        write!(f, "  violations                     {}", self.violations.len())
    }
}

/// The pipeline, the providers' simulations and the merchant of a run.
struct Run {
    base: String,
    client: reqwest::Client,
    providers: Vec<ChaosProvider>,
    merchant: ChaosMerchant,
    merchant_faults: Arc<FaultLog>,
    store: TransactionStore,
    env: DevEnv,
    rng: Mutex<Rng>,
    /// When each call to Pagstar's `GET /cob` was made.
    pagstar_calls: Arc<Mutex<Vec<Instant>>>,
}

impl Run {
    fn provider(&self, name: &str) -> Result<&ChaosProvider, Error> {
        self.providers
            .iter()
            .find(|p| p.name == name)
            .ok_or_else(|| format!("no provider {name} in the catalog").into())
    }

    fn unique(&self) -> u64 {
        self.rng.lock().unwrap_or_else(|p| p.into_inner()).next_u64() % 1_000_000_000_000
    }

    /// Sends `request` to `provider`'s route once; the answer's status (0 for none).
    async fn send(&self, provider: &ChaosProvider, request: &shared::pipeline::Inbound) -> u16 {
        let url = format!("{}{}", self.base, provider.route.path_of(request));
        let query: Vec<(&String, &String)> = request.query.iter().collect();
        let sent = self
            .client
            .request(request.method.clone(), &url)
            .query(&query)
            .headers(request.headers.clone())
            .body(request.body.clone())
            .send()
            .await;
        sent.map(|r| r.status().as_u16()).unwrap_or(0)
    }

    async fn final_status(&self, provider: &ChaosProvider, reference: &str) -> Option<shared::model::Status> {
        let stored = provider.simulation.stored_reference(reference);
        self.store.get(provider.name, &stored).await.ok().flatten().map(|r| r.status).filter(|s| s.is_final())
    }

    /// Every delivery the merchant took, by event id.
    fn deliveries(&self) -> HashMap<String, usize> {
        let mut count = HashMap::new();
        for received in self.merchant.received() {
            // A "hang" lasts no time in this run: the merchant took it (204).
            if received.verified && matches!(received.answer, Some(204) | None) {
                *count.entry(received.webhook_id).or_insert(0) += 1;
            }
        }
        count
    }

    /// Waits until the merchant has taken nothing new for 3 s (at most `limit`).
    async fn quiet(&self, limit: Duration) {
        let deadline = Instant::now() + limit;
        let (mut last, mut calm) = (usize::MAX, 0);
        while Instant::now() < deadline && calm < 6 {
            tokio::time::sleep(Duration::from_millis(500)).await;
            let now = self.merchant.received().len();
            calm = if now == last { calm + 1 } else { 0 };
            last = now;
        }
    }
}

/// Runs every stage; the report holds any violations.
pub async fn run(options: &Options) -> Result<Report, Error> {
    let env = DevEnv::load(&options.root.join("local.env.example"))?;
    let providers = traffic::start_providers(&env, &options.root).await?;
    let pagstar_calls = Arc::new(Mutex::new(Vec::new()));
    let mut api_variables = Vec::new();
    for provider in &providers {
        for (name, url) in &provider.variables {
            let url = if provider.name == "pagstar" {
                count_calls(url, Arc::clone(&pagstar_calls)).await?
            } else {
                url.clone()
            };
            api_variables.push((name.to_string(), url));
        }
    }
    // The merchant refuses the first deliveries with 410 (they are left undelivered, for
    // the recover storm) and answers some 500 or 429 until the storms.
    let merchant_faults = Arc::new(FaultLog::default());
    let refused = Burst { after: 0, length: options.forgeries.max(1) };
    let secret = env.required("NOTIFY_SECRET")?;
    let merchant =
        ChaosMerchant::start(&secret, options.seed, Arc::clone(&merchant_faults), Duration::ZERO, refused).await?;

    let prefix = format!("attack-{}-{}-", options.seed, std::process::id());
    let port = free_port()?;
    let own = [
        ("PORT", port.to_string()),
        ("LOCAL_RESOURCE_PREFIX", prefix.clone()),
        ("DYNAMODB_ENDPOINT", options.dynamodb_endpoint.clone()),
        ("SQS_ENDPOINT", options.sqs_endpoint.clone()),
        ("NOTIFY_URL", merchant.url.clone()),
        ("PAGSTAR_CALLS_PER_SECOND", PAGSTAR_CALLS_PER_SECOND.to_string()),
    ];
    let compressed = COMPRESSED.map(|(name, value)| (name, value.to_owned()));
    let pipeline_env = own.into_iter().chain(compressed).map(|(name, value)| (name.to_owned(), value));
    let mut pipeline = Pipeline {
        executable: options.pipeline.clone(),
        root: options.root.clone(),
        env: pipeline_env.chain(api_variables).collect(),
        port,
        log: options.log.clone(),
        child: None,
    };
    pipeline.start().await?;

    let run = Run {
        base: format!("http://127.0.0.1:{port}"),
        client: reqwest::Client::builder().timeout(Duration::from_secs(30)).build()?,
        providers,
        merchant,
        merchant_faults,
        store: TransactionStore::new(dynamodb_client(&options.dynamodb_endpoint), format!("{prefix}{TABLE}")),
        env,
        rng: Mutex::new(Rng::new(options.seed ^ u64::from(std::process::id()))),
        pagstar_calls,
    };
    let started = OffsetDateTime::now_utc() - time::Duration::seconds(5);
    let mut report = Report::default();
    println!("attack: forged Key2Pay captures");
    forgeries(&run, options, &mut report).await?;
    println!("attack: a Pagstar hint flood, {} hints a second for {} s", options.flood_rate, options.flood_seconds);
    flood(&run, options, &mut report).await?;
    println!("attack: poison strings through every provider");
    poison_strings(&run, &mut report).await?;
    println!("attack: recover and resend storms");
    storms(&run, options, started, &mut report).await?;
    pipeline.kill()?;
    Ok(report)
}

/// A proxy in front of `upstream` that notes when each `GET /cob/...` passes; its URL.
async fn count_calls(upstream: &str, calls: Arc<Mutex<Vec<Instant>>>) -> Result<String, Error> {
    let decide = Box::new(move |operation: &str, _key: &str, _n: u64| {
        if operation.contains("/cob/") {
            calls.lock().unwrap_or_else(|p| p.into_inner()).push(Instant::now());
        }
        None
    });
    Ok(faults::start_proxy(upstream, decide, Arc::new(FaultLog::default())).await?)
}

/// Key2Pay: each payment registered (its callback token answered), then a capture with
/// the static token or with the previous payment's token; then its own.
async fn forgeries(run: &Run, options: &Options, report: &mut Report) -> Result<(), Error> {
    let static_token = run.env.required("KEY2PAY_WEBHOOK_TOKEN")?;
    let mut payments: Vec<(String, String)> = Vec::new();
    for _ in 0..options.forgeries {
        let trackid = run.provider("key2pay")?.simulation.new_reference(run.unique());
        let response = run.client.put(format!("{}/transactions/key2pay/{trackid}", run.base)).send().await?;
        let status = response.status().as_u16();
        let answer: Value = response.json().await.unwrap_or_default();
        let Some(token) = answer["callback_token"].as_str() else {
            report.violations.push(format!("registering key2pay/{trackid}: {status}, no callback_token"));
            continue;
        };
        payments.push((trackid, token.to_owned()));
    }
    let provider = run.provider("key2pay")?;
    let capture = *provider.simulation.sequence().last().ok_or("Key2Pay has no sequence")?;
    for (i, (trackid, _)) in payments.iter().enumerate() {
        let forged_token = match i.checked_sub(1).and_then(|j| payments.get(j)) {
            Some((_, other)) if i % 2 == 1 => other.clone(),
            _ => static_token.clone(),
        };
        let mut request = provider.simulation.deliver(trackid, capture, OffsetDateTime::now_utc());
        request.query.insert("token".into(), forged_token);
        let status = run.send(provider, &request).await;
        report.forged_sent += 1;
        *report.forged_answers.entry(status).or_default() += 1;
    }
    for (trackid, _) in &payments {
        if run.final_status(provider, trackid).await.is_some() {
            report.forged_applied += 1;
            report.violations.push(format!("a forged capture completed key2pay/{trackid}"));
        }
    }
    for (trackid, _) in &payments {
        let request = provider.simulation.deliver(trackid, capture, OffsetDateTime::now_utc());
        let status = run.send(provider, &request).await;
        if (200..300).contains(&status) && run.final_status(provider, trackid).await.is_some() {
            report.key2pay_genuine_applied += 1;
        } else {
            report.violations.push(format!("key2pay/{trackid}: its own token answered {status}, not applied"));
        }
    }
    Ok(())
}

/// Pagstar: junk hints at `flood_rate` a second, a fifth of them naming the same few
/// txids; genuine payments (registered, as the merchant's checkout does) whose hints come
/// among them, each retried as Pagstar retries.
async fn flood(run: &Run, options: &Options, report: &mut Report) -> Result<(), Error> {
    let total = usize::try_from(u64::from(options.flood_rate) * options.flood_seconds)?;
    let repeated: Vec<String> = (0..5)
        .map(|_| run.unique())
        .map(|n| run.provider("pagstar").map(|p| p.simulation.new_reference(n)))
        .collect::<Result<_, _>>()?;
    let mut junk = Vec::with_capacity(total);
    for i in 0..total {
        let reference = match repeated.get(i % 25) {
            Some(txid) if i % 5 == 0 => txid.clone(),
            _ => run.provider("pagstar")?.simulation.new_reference(run.unique()),
        };
        junk.push(reference);
    }
    let provider = run.provider("pagstar")?;
    let last = *provider.simulation.sequence().last().ok_or("Pagstar has no sequence")?;
    let mut genuine = Vec::new();
    let mut rng = Rng::new(options.seed);
    for _ in 0..options.genuine {
        let txid = provider.simulation.new_reference(rng.next_u64() % 1_000_000_000_000);
        provider.simulation.settle(&txid, last);
        // The merchant's checkout registers each charge it creates: the status sync knows
        // it even if no hint of it gets through.
        let registered = run.client.put(format!("{}/transactions/pagstar/{txid}", run.base)).send().await?;
        if registered.status().as_u16() != 201 {
            report.violations.push(format!("registering pagstar/{txid}: {}", registered.status()));
        }
        let at = Duration::from_millis(rng.next_u64() % (options.flood_seconds * 1000).max(1));
        genuine.push((txid, at));
    }
    run.pagstar_calls.lock().unwrap_or_else(|p| p.into_inner()).clear();
    let started = Instant::now();
    let interval = Duration::from_secs_f64(1.0 / f64::from(options.flood_rate.max(1)));
    let junk_sends = futures_util::stream::iter(junk.iter().enumerate())
        .map(|(i, txid)| async move {
            let at = started + interval * u32::try_from(i).unwrap_or(u32::MAX);
            tokio::time::sleep_until(at.into()).await;
            run.send(provider, &provider.simulation.deliver(txid, last, OffsetDateTime::now_utc())).await
        })
        .buffer_unordered(256)
        .collect::<Vec<u16>>();
    let genuine_sends = futures_util::future::join_all(genuine.iter().map(|(txid, at)| async move {
        tokio::time::sleep(*at).await;
        for attempt in 0..=provider.retries {
            if attempt > 0 {
                tokio::time::sleep(retry_delay(options.seed, txid, attempt)).await;
            }
            let status = run.send(provider, &provider.simulation.deliver(txid, last, OffsetDateTime::now_utc())).await;
            if (200..300).contains(&status) {
                return true;
            }
        }
        false
    }));
    let (answers, _) = tokio::join!(junk_sends, genuine_sends);
    report.flood_seconds = started.elapsed().as_secs_f64();
    report.flood_hints = answers.len();
    for status in answers {
        *report.flood_answers.entry(status).or_default() += 1;
    }
    report.genuine_sent = genuine.len();

    // Each genuine payment settled by its lookup or by the sync, within two minutes.
    let deadline = Instant::now() + Duration::from_secs(120);
    let mut left: Vec<&String> = genuine.iter().map(|(txid, _)| txid).collect();
    while !left.is_empty() && Instant::now() < deadline {
        let mut still = Vec::new();
        for txid in left {
            if run.final_status(provider, txid).await.is_none() {
                still.push(txid);
            }
        }
        left = still;
        if !left.is_empty() {
            tokio::time::sleep(Duration::from_secs(1)).await;
        }
    }
    report.genuine_settled_seconds = started.elapsed().as_secs_f64();
    report.genuine_lost = left.len();
    for txid in left {
        report.violations.push(format!("genuine pagstar/{txid} not settled within 120 s of the flood's end"));
    }

    let calls = run.pagstar_calls.lock().unwrap_or_else(|p| p.into_inner()).clone();
    report.pagstar_calls = calls.len();
    report.pagstar_peak_per_second = peak_per_second(&calls);
    // Each client's bucket holds a second's calls and refills at the rate: at most twice
    // the rate in any second.
    report.pagstar_bound_per_second = usize::try_from(2 * PAGSTAR_CALLS_PER_SECOND * PAGSTAR_CLIENTS)?;
    if report.pagstar_peak_per_second > report.pagstar_bound_per_second {
        report.violations.push(format!(
            "{} calls to Pagstar in one second, over the bound of {}",
            report.pagstar_peak_per_second, report.pagstar_bound_per_second
        ));
    }
    Ok(())
}

/// The most instants inside any one-second window.
fn peak_per_second(instants: &[Instant]) -> usize {
    let mut sorted = instants.to_vec();
    sorted.sort_unstable();
    let mut start = 0;
    let mut peak = 0;
    for (end, at) in sorted.iter().enumerate() {
        while sorted.get(start).is_some_and(|s| at.duration_since(*s) >= Duration::from_secs(1)) {
            start += 1;
        }
        peak = peak.max(end + 1 - start);
    }
    peak
}

/// Every string of each provider's final webhook, one at a time, poisoned; each on a
/// fresh reference, signed as the provider signs.
async fn poison_strings(run: &Run, report: &mut Report) -> Result<(), Error> {
    let mut applied: Vec<(usize, String)> = Vec::new();
    for index in 0..run.providers.len() {
        let template_reference = run.providers.get(index).map(|p| p.simulation.new_reference(0)).unwrap_or_default();
        let provider = run.providers.get(index).ok_or("provider")?;
        let last = *provider.simulation.sequence().last().ok_or("no sequence")?;
        let content = |reference: &str| {
            let signed = provider.simulation.signed_content(reference, last);
            signed.unwrap_or_else(|| provider.simulation.deliver(reference, last, OffsetDateTime::now_utc()).body)
        };
        let Ok(shape) = serde_json::from_slice::<Value>(&content(&template_reference)) else {
            report.violations.push(format!("{}: its final webhook is not JSON; nothing poisoned", provider.name));
            continue;
        };
        let mut paths = Vec::new();
        string_paths(&shape, &mut Vec::new(), &mut paths);
        let references = [template_reference.clone(), provider.simulation.stored_reference(&template_reference)];
        paths.retain(|(_, value)| !references.iter().any(|r| value.contains(r.as_str())));
        for (path, _) in paths {
            let reference = provider.simulation.new_reference(run.unique());
            provider.simulation.settle(&reference, last);
            let Ok(mut body) = serde_json::from_slice::<Value>(&content(&reference)) else { continue };
            if let Some(Value::String(text)) = pointer_mut(&mut body, &path) {
                *text = poison(text);
            }
            let bytes = serde_json::to_vec(&body)?;
            let now = OffsetDateTime::now_utc();
            let request = if provider.simulation.signed_content(&reference, last).is_some() {
                provider.simulation.sign_content(&bytes, now)
            } else {
                provider.simulation.with_body(&bytes, now)
            };
            let status = run.send(provider, &request).await;
            report.poison_sent += 1;
            *report.poison_answers.entry(status).or_default() += 1;
            if !(200..500).contains(&status) {
                report.violations.push(format!("{}: {} poisoned answered {status}", provider.name, path.join("/")));
            } else if (200..300).contains(&status) && run.final_status(provider, &reference).await.is_some() {
                applied.push((index, reference));
            }
        }
    }
    report.poison_applied = applied.len();
    run.quiet(Duration::from_secs(60)).await;
    let received: Vec<(String, String)> = run
        .merchant
        .received()
        .into_iter()
        .filter_map(|r| r.event.map(|e| (e.data.provider.to_string(), e.data.reference.clone())))
        .collect();
    for (index, reference) in applied {
        let provider = run.providers.get(index).ok_or("provider")?;
        let stored = provider.simulation.stored_reference(&reference);
        if !received.iter().any(|(name, r)| name == provider.name && *r == stored) {
            report.poison_undelivered += 1;
            report.violations.push(format!("{}/{stored}: applied with poison, never delivered", provider.name));
        }
    }
    Ok(())
}

/// Every string leaf of `value`, with its path.
fn string_paths(value: &Value, path: &mut Vec<String>, found: &mut Vec<(Vec<String>, String)>) {
    match value {
        Value::String(text) => found.push((path.clone(), text.clone())),
        Value::Object(map) => {
            for (key, child) in map {
                path.push(key.clone());
                string_paths(child, path, found);
                path.pop();
            }
        }
        Value::Array(items) => {
            for (i, child) in items.iter().enumerate() {
                path.push(i.to_string());
                string_paths(child, path, found);
                path.pop();
            }
        }
        Value::Null | Value::Bool(_) | Value::Number(_) => {}
    }
}

fn pointer_mut<'a>(value: &'a mut Value, path: &[String]) -> Option<&'a mut Value> {
    let pointer: String = path.iter().map(|p| format!("/{}", p.replace('~', "~0").replace('/', "~1"))).collect();
    value.pointer_mut(&pointer)
}

/// POSTs `body` to `path` `times` times at once under one key, each retried as a client
/// does (a 409 while the first still runs; a 5xx, which keeps nothing); every last answer,
/// and how many 5xx were met (each may have sent before failing: at least once).
async fn retried(run: &Run, path: &str, body: Option<&Value>, key: &str, times: usize) -> (Vec<(u16, Value)>, usize) {
    let failures = std::sync::atomic::AtomicUsize::new(0);
    let one = || async {
        for _ in 0..50 {
            let mut request = run.client.post(format!("{}{path}", run.base)).header("idempotency-key", key);
            if let Some(body) = body {
                request = request.json(body);
            }
            let Ok(response) = request.send().await else { return (0, Value::Null) };
            let status = response.status().as_u16();
            let answer: Value = response.json().await.unwrap_or_default();
            if status >= 500 {
                failures.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
            } else if status != 409 {
                return (status, answer);
            }
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
        (409, Value::Null)
    };
    let answers = futures_util::future::join_all((0..times).map(|_| one())).await;
    (answers, failures.into_inner())
}

/// Recover the run's window, then resend each event, each request sent `retries` times
/// at once under its key. The recover must deliver each undelivered event (refused with
/// 410) exactly once and no other; the resends each event exactly once more.
async fn storms(run: &Run, options: &Options, since: OffsetDateTime, report: &mut Report) -> Result<(), Error> {
    run.merchant_faults.stop();
    run.quiet(Duration::from_secs(60)).await;
    let before = run.deliveries();
    let mut events: Vec<String> = run.merchant.received().into_iter().map(|r| r.webhook_id).collect();
    events.sort_unstable();
    events.dedup();
    report.storm_events = events.len();
    report.undelivered = events.iter().filter(|id| !before.contains_key(*id)).count();
    if report.undelivered == 0 {
        report.violations.push("no event was left undelivered: the recover storm tests nothing".into());
    }
    let until = OffsetDateTime::now_utc();
    let rfc3339 = |t: OffsetDateTime| t.format(&time::format_description::well_known::Rfc3339).unwrap_or_default();
    let mut after: Option<String> = None;
    let mut recover_failures = 0;
    for batch in 0..100 {
        let mut body = serde_json::json!({ "since": rfc3339(since), "until": rfc3339(until) });
        if let Some(next) = &after {
            body["after"] = next.clone().into();
        }
        let key = format!("attack-recover-{}-{batch}", options.seed ^ u64::from(std::process::id()));
        let (answers, failed) = retried(run, "/events/recover", Some(&body), &key, options.retries).await;
        report.recover_requests += answers.len() + failed;
        report.failed_requests += failed;
        recover_failures += failed;
        let first = answers.first().cloned().unwrap_or_default();
        if first.0 != 202 || answers.iter().any(|a| *a != first) {
            let shown: Vec<String> = answers.iter().map(|(s, a)| format!("{s} {a}")).collect();
            report.violations.push(format!("recover batch {batch}: answers differ or fail: {}", shown.join("; ")));
            break;
        }
        after = first.1["next"].as_str().map(str::to_owned);
        if after.is_none() {
            break;
        }
    }
    run.quiet(Duration::from_secs(60)).await;
    let recovered = run.deliveries();
    let undelivered: Vec<String> = events.iter().filter(|id| !before.contains_key(*id)).cloned().collect();
    let delivered: Vec<String> = events.iter().filter(|id| before.contains_key(*id)).cloned().collect();
    report.recover_deliveries = spread(&undelivered, &before, &recovered);
    report.recover_delivered_again = spread(&delivered, &before, &recovered).1;
    check_times("recover", &undelivered, &before, &recovered, 1, recover_failures, report);
    check_times("recover (delivered before)", &delivered, &before, &recovered, 0, recover_failures, report);

    let mut resend_failures: HashMap<String, usize> = HashMap::new();
    for id in &events {
        let key = format!("attack-resend-{id}");
        let (answers, failed) = retried(run, &format!("/events/{id}/resend"), None, &key, options.retries).await;
        report.resend_requests += answers.len() + failed;
        report.failed_requests += failed;
        resend_failures.insert(id.clone(), failed);
        if answers.iter().any(|(status, _)| *status != 202) {
            let shown: Vec<u16> = answers.iter().map(|(s, _)| *s).collect();
            report.violations.push(format!("resend {id} under one key: {shown:?}"));
        }
        let (again, _) = retried(run, &format!("/events/{id}/resend"), None, &format!("{key}-again"), 1).await;
        if again.first().map(|(s, _)| *s) == Some(429) {
            report.resend_cooldown_refused += 1;
        } else {
            report.violations.push(format!("resend {id} under a new key within the cooldown: {again:?}"));
        }
    }
    run.quiet(Duration::from_secs(60)).await;
    let resent = run.deliveries();
    report.resend_deliveries = spread(&events, &recovered, &resent);
    for id in &events {
        let failed = resend_failures.get(id).copied().unwrap_or(0);
        check_times("resend", std::slice::from_ref(id), &recovered, &resent, 1, failed, report);
    }
    Ok(())
}

/// The fewest and most deliveries of an event between `from` and `to`.
fn spread(events: &[String], from: &HashMap<String, usize>, to: &HashMap<String, usize>) -> (usize, usize) {
    let caused =
        events.iter().map(|id| to.get(id).copied().unwrap_or(0).saturating_sub(from.get(id).copied().unwrap_or(0)));
    caused.fold((usize::MAX, 0), |(low, high), n| (low.min(n), high.max(n)))
}

/// Each of `events` delivered `times` more between `from` and `to`; up to `failed` more
/// are allowed, one per request that failed with a 5xx (it may have sent before failing,
/// and its retry sends again: at least once).
fn check_times(
    storm: &str,
    events: &[String],
    from: &HashMap<String, usize>,
    to: &HashMap<String, usize>,
    times: usize,
    failed: usize,
    report: &mut Report,
) {
    for id in events {
        let caused = to.get(id).copied().unwrap_or(0).saturating_sub(from.get(id).copied().unwrap_or(0));
        if caused < times || caused > times + failed {
            report.violations.push(format!("{storm}: event {id} delivered {caused} times more"));
        }
    }
}

/// Reads the options from the command line and the environment (the emulators'
/// endpoints), with the pipeline executable beside this one and the workspace root as the
/// current directory.
pub fn options_from_args(args: &[String], env: &impl Env) -> Result<Options, Error> {
    let mut options = Options {
        forgeries: 20,
        flood_rate: 100,
        flood_seconds: 60,
        genuine: 50,
        retries: 3,
        seed: 1,
        pipeline: std::env::current_exe()?.with_file_name("local-pipeline"),
        root: std::env::current_dir()?,
        dynamodb_endpoint: env.required("DYNAMODB_ENDPOINT")?,
        sqs_endpoint: env.required("SQS_ENDPOINT")?,
        log: PathBuf::new(),
    };
    let mut args = args.iter();
    while let Some(flag) = args.next() {
        let value = args.next().ok_or_else(|| format!("{flag} needs a value"))?;
        let number = || value.parse::<u64>().map_err(|_| format!("{flag}: {value} is not a whole number"));
        match flag.as_str() {
            "--forgeries" => options.forgeries = usize::try_from(number()?)?,
            "--flood-rate" => options.flood_rate = u32::try_from(number()?.max(1))?,
            "--flood-seconds" => options.flood_seconds = number()?.max(1),
            "--genuine" => options.genuine = usize::try_from(number()?)?,
            "--retries" => options.retries = usize::try_from(number()?.max(1))?,
            "--seed" => options.seed = number()?,
            other => return Err(format!("unknown option {other}; usage: attack [--forgeries N] [--flood-rate PER_SECOND] [--flood-seconds S] [--genuine N] [--retries N] [--seed S]").into()),
        }
    }
    let logs = options.root.join("target/attack");
    std::fs::create_dir_all(&logs)?;
    options.log = logs.join(format!("pipeline-seed-{}-{}.log", options.seed, std::process::id()));
    Ok(options)
}
