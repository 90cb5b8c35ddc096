//! `scripts/chaos`: thousands of transactions through the local pipeline over HTTP, with
//! faults injected everywhere at once, and invariants checked once everything healed.
//!
//! - **Traffic** ([`traffic`]): every provider's webhooks, shuffled, duplicated, delayed,
//!   and retried the way that provider retries.
//! - **Faults** ([`faults`]), all in the same run: on the wire between the pipeline and
//!   DynamoDB Local, the SQS server and the providers' API stand-ins (a proxy), from the
//!   merchant ([`merchant`]), and SIGKILLs of the pipeline process, each followed by a
//!   restart.
//! - **Healing:** the faults stop; retries, the notifier, the reconciler and the status
//!   sync run until nothing is left to do.
//! - **Invariants** ([`check`]).
//!
//! The pipeline is the `local-pipeline` binary, with its timings compressed
//! ([`crate::LocalTiming`], `STATUS_SYNC_*`).

pub mod check;
pub mod faults;
pub mod merchant;
pub mod traffic;

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use futures_util::StreamExt;
use shared::runtime::config::Env;
use shared::storage::TransactionStore;

use crate::template::{DEAD_LETTER_QUEUE, HINT_QUEUE, QUEUE, TABLE};
use crate::{dynamodb_client, sqs_client, DevEnv};
use faults::{Fault, FaultLog};
use traffic::{Delivery, Sent, Transaction};

pub type Error = Box<dyn std::error::Error + Send + Sync>;

/// What to run.
#[derive(Debug, Clone)]
pub struct Options {
    pub transactions: usize,
    pub seed: u64,
    pub kills: usize,
    /// Sends in flight at once.
    pub concurrency: usize,
    /// The `local-pipeline` executable.
    pub pipeline: PathBuf,
    /// The workspace root (template.yaml, local.env.example, dev-keys/).
    pub root: PathBuf,
    pub dynamodb_endpoint: String,
    pub sqs_endpoint: String,
    /// How long the healing may take before the run counts what is left as violations.
    pub heal_timeout: Duration,
    /// Where the pipeline's log goes.
    pub log: PathBuf,
}

/// The run's figures and violations.
#[derive(Debug, Clone, Default)]
pub struct Report {
    pub seed: u64,
    pub transactions: usize,
    pub finals: usize,
    pub sends: usize,
    pub attempts: usize,
    pub unanswered: usize,
    pub answered_5xx: usize,
    /// Answered 5xx without having met a fault (each a violation).
    pub unexplained_5xx: usize,
    pub gave_up: BTreeMap<&'static str, usize>,
    pub unheard: traffic::Unheard,
    pub deliveries: usize,
    pub duplicates: usize,
    /// Outcomes the merchant only ever answered with 410 (provider, reference, event id).
    pub refused_410: Vec<String>,
    pub refused_in_dead_letters: usize,
    pub dead_letters: usize,
    pub conflicts: usize,
    /// Transactions whose words after the final one reached the pipeline, the refunds
    /// their records show, and the amount mismatches.
    pub money_after: usize,
    pub refunds: usize,
    pub mismatches: usize,
    pub faults: BTreeMap<Fault, usize>,
    pub kills: usize,
    pub lost: usize,
    pub listed_events: usize,
    pub traffic_time: Duration,
    pub heal_time: Duration,
    pub violations: Vec<String>,
}

impl std::fmt::Display for Report {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        writeln!(f, "chaos: seed {}", self.seed)?;
        writeln!(f, "  transactions               {} ({} final)", self.transactions, self.finals)?;
        writeln!(
            f,
            "  webhook sends              {} ({} attempts; {} unanswered, {} answered 5xx, {} of them with no fault)",
            self.sends, self.attempts, self.unanswered, self.answered_5xx, self.unexplained_5xx
        )?;
        let gave_up: Vec<String> = self.gave_up.iter().map(|(p, n)| format!("{p} {n}")).collect();
        writeln!(
            f,
            "  sends given up by provider {}",
            if gave_up.is_empty() { "none".into() } else { gave_up.join(", ") }
        )?;
        writeln!(
            f,
            "  unheard                    {} transactions (no webhook got through), {} final words (no status API to ask)",
            self.unheard.transactions, self.unheard.final_words
        )?;
        writeln!(f, "  deliveries to the merchant {} ({} duplicates)", self.deliveries, self.duplicates)?;
        writeln!(
            f,
            "  refused with 410 only      {} ({} of them in the dead-letter queue, which holds {})",
            self.refused_410.len(),
            self.refused_in_dead_letters,
            self.dead_letters
        )?;
        for refused in &self.refused_410 {
            writeln!(f, "    410: {refused}")?;
        }
        writeln!(f, "  conflicts recorded         {}", self.conflicts)?;
        writeln!(
            f,
            "  money after the outcome    {} transactions heard ({} refunds, {} amount mismatches)",
            self.money_after, self.refunds, self.mismatches
        )?;
        writeln!(f, "  events listed by /events   {}", self.listed_events)?;
        writeln!(f, "  kills (SIGKILL + restart)  {}", self.kills)?;
        for (fault, count) in &self.faults {
            writeln!(f, "  fault: {:<45} {count}", fault.name())?;
        }
        writeln!(f, "  lost                       {}", self.lost)?;
        writeln!(
            f,
            "  time                       traffic {:.0} s, healing {:.0} s",
            self.traffic_time.as_secs_f64(),
            self.heal_time.as_secs_f64()
        )?;
        for violation in self.violations.iter().take(50) {
            writeln!(f, "  VIOLATION: {violation}")?;
        }
        if self.violations.len() > 50 {
            writeln!(f, "  … and {} more violations", self.violations.len() - 50)?;
        }
        write!(f, "  violations                 {}", self.violations.len())
    }
}

/// The `local-pipeline` process, which the run kills and restarts (and kills when it ends).
pub(crate) struct Pipeline {
    pub(crate) executable: PathBuf,
    pub(crate) root: PathBuf,
    pub(crate) env: Vec<(String, String)>,
    pub(crate) port: u16,
    pub(crate) log: PathBuf,
    pub(crate) child: Option<std::process::Child>,
}

impl Pipeline {
    pub(crate) async fn start(&mut self) -> Result<(), Error> {
        let log = std::fs::OpenOptions::new().create(true).append(true).open(&self.log)?;
        let mut child = std::process::Command::new(&self.executable)
            .current_dir(&self.root)
            .envs(self.env.iter().map(|(k, v)| (k.as_str(), v.as_str())))
            .stdout(log.try_clone()?)
            .stderr(log)
            .spawn()
            .map_err(|e| format!("cannot start {}: {e}", self.executable.display()))?;
        let deadline = Instant::now() + Duration::from_secs(120);
        while tokio::net::TcpStream::connect(("127.0.0.1", self.port)).await.is_err() {
            if let Some(status) = child.try_wait()? {
                return Err(
                    format!("local-pipeline exited during start-up ({status}); see {}", self.log.display()).into()
                );
            }
            if Instant::now() > deadline {
                return Err(format!("local-pipeline did not listen within 120 s; see {}", self.log.display()).into());
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        self.child = Some(child);
        Ok(())
    }

    /// SIGKILL: no shutdown, whatever was in flight is cut.
    pub(crate) fn kill(&mut self) -> Result<(), Error> {
        if let Some(mut child) = self.child.take() {
            child.kill()?;
            child.wait()?;
        }
        Ok(())
    }
}

impl Drop for Pipeline {
    fn drop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

/// The pipeline's timings, compressed so that retries, the reconciler and the sync act
/// within seconds.
pub(crate) const COMPRESSED: [(&str, &str); 12] = [
    // Each run reads every sync shard of every provider (65 queries each): every 5 s keeps
    // DynamoDB Local from taking the CPU moto needs.
    ("STATUS_SYNC_INTERVAL_SECONDS", "5"),
    ("STATUS_SYNC_AFTER_SECONDS", "5"),
    ("STATUS_SYNC_BATCH", "100"),
    ("LOCAL_NOTIFIER_POLLERS", "4"),
    ("LOCAL_NOTIFY_TIMEOUT_SECONDS", "2"),
    ("LOCAL_NOTIFY_BACKOFF_SECONDS", "1,2,4,8"),
    ("LOCAL_RECONCILER_GRACE_SECONDS", "60"),
    ("LOCAL_RECONCILER_INTERVAL_SECONDS", "10"),
    ("LOCAL_RECONCILER_REPEAT_SECONDS", "300"),
    ("LOCAL_QUEUE_VISIBILITY_SECONDS", "15"),
    ("RUST_LOG", "warn"),
    ("NO_COLOR", "1"),
];

pub(crate) fn free_port() -> Result<u16, Error> {
    Ok(std::net::TcpListener::bind("127.0.0.1:0")?.local_addr()?.port())
}

/// Runs the whole thing; the report holds any violations.
pub async fn run(options: &Options) -> Result<Report, Error> {
    let seed = options.seed;
    let env = DevEnv::load(&options.root.join("local.env.example"))?;
    let log = Arc::new(FaultLog::default());

    let dynamodb_proxy = faults::start_proxy(&options.dynamodb_endpoint, faults::aws(seed), Arc::clone(&log)).await?;
    let sqs_proxy = faults::start_proxy(&options.sqs_endpoint, faults::aws(seed), Arc::clone(&log)).await?;
    let providers = traffic::start_providers(&env, &options.root).await?;
    let mut api_variables = Vec::new();
    for provider in &providers {
        for (name, url) in &provider.variables {
            api_variables
                .push((name.to_string(), faults::start_proxy(url, faults::api(seed), Arc::clone(&log)).await?));
        }
    }
    let (transactions, deliveries) = traffic::plan(&providers, options.transactions, seed);
    let planned_finals = transactions.iter().filter(|t| t.expected.is_final()).count();
    let burst = merchant::Burst { after: planned_finals / 3, length: 25 };
    let merchant = merchant::ChaosMerchant::start(
        &env.required("NOTIFY_SECRET")?,
        seed,
        Arc::clone(&log),
        Duration::from_secs(3),
        burst,
    )
    .await?;

    let prefix = format!("chaos-{seed}-{}-", std::process::id());
    let port = free_port()?;
    let own = [
        ("PORT", port.to_string()),
        ("LOCAL_RESOURCE_PREFIX", prefix.clone()),
        ("DYNAMODB_ENDPOINT", dynamodb_proxy),
        ("SQS_ENDPOINT", sqs_proxy),
        ("NOTIFY_URL", merchant.url.clone()),
    ];
    let compressed = COMPRESSED.map(|(name, value)| (name, value.to_owned()));
    let env = own.into_iter().chain(compressed).map(|(name, value)| (name.to_owned(), value)).chain(api_variables);
    let mut pipeline = Pipeline {
        executable: options.pipeline.clone(),
        root: options.root.clone(),
        env: env.collect(),
        port,
        log: options.log.clone(),
        child: None,
    };
    pipeline.start().await?;

    // The run's own view of storage, straight to the emulators (no faults).
    let store = TransactionStore::new(dynamodb_client(&options.dynamodb_endpoint), format!("{prefix}{TABLE}"));
    let sqs = sqs_client(&options.sqs_endpoint);
    let queue_url = queue_url_of(&sqs, &format!("{prefix}{QUEUE}.fifo")).await?;
    let dead_letter_url = queue_url_of(&sqs, &format!("{prefix}{DEAD_LETTER_QUEUE}.fifo")).await?;
    let hint_url = queue_url_of(&sqs, &format!("{prefix}{HINT_QUEUE}")).await?;

    // Traffic, with the kills at seeded points of its progress.
    let base = format!("http://127.0.0.1:{port}");
    let client = reqwest::Client::builder().timeout(Duration::from_secs(20)).build()?;
    let started = Instant::now();
    let (sent, kills) = drive(options, &client, &base, &providers, &transactions, &deliveries, &mut pipeline).await?;
    let traffic_time = started.elapsed();
    let mut transactions = transactions;
    let unheard = traffic::as_heard(&providers, &mut transactions, &sent);
    let finals = transactions.iter().filter(|t| t.reached && t.expected.is_final()).count();

    // Healing: no more faults; everything retries until nothing is left to do.
    log.stop();
    let healing = Instant::now();
    let healed = heal(options.heal_timeout, &store, &sqs, &[&queue_url, &hint_url], &transactions).await;
    let heal_time = healing.elapsed();

    let mut report = check::check(check::Run {
        transactions: &transactions,
        sent: &sent,
        faults: &log.injected(),
        received: &merchant.received(),
        store: &store,
        sqs: &sqs,
        dead_letter_url: &dead_letter_url,
        client: &client,
        base: &base,
    })
    .await?;
    pipeline.kill()?;
    report.seed = seed;
    report.finals = finals;
    report.unheard = unheard;
    report.kills = kills;
    report.faults = log.counts();
    report.traffic_time = traffic_time;
    report.heal_time = heal_time;
    if !healed {
        report.violations.push(format!("the run did not heal within {} s", options.heal_timeout.as_secs()));
    }
    if kills < options.kills {
        report.violations.push(format!("{kills} kills of the {} planned", options.kills));
    }
    Ok(report)
}

/// Sends every delivery, `options.concurrency` at a time, and kills (then restarts) the
/// pipeline at seeded points of the progress; prints the progress every 30 s. Returns
/// what became of each send and how many kills there were.
async fn drive(
    options: &Options,
    client: &reqwest::Client,
    base: &str,
    providers: &[traffic::ChaosProvider],
    transactions: &[Transaction],
    deliveries: &[Delivery],
    pipeline: &mut Pipeline,
) -> Result<(Vec<(Delivery, Sent)>, usize), Error> {
    let seed = options.seed;
    let done = AtomicUsize::new(0);
    let total = deliveries.len();
    let started = Instant::now();
    let sends = async {
        futures_util::stream::iter(deliveries.iter().cloned())
            .map(|delivery| {
                let done = &done;
                async move {
                    let transaction = &transactions[delivery.transaction];
                    let provider = &providers[transaction.provider];
                    let sent = traffic::send(client, base, provider, transaction, &delivery, seed).await;
                    done.fetch_add(1, Ordering::SeqCst);
                    (delivery, sent)
                }
            })
            .buffer_unordered(options.concurrency)
            .collect::<Vec<(Delivery, Sent)>>()
            .await
    };
    let kills = async {
        let mut rng = traffic::Rng::new(seed ^ 0x6b69_6c6c);
        let mut kills = 0;
        for k in 1..=options.kills {
            let spread = total / (options.kills + 1);
            let at = spread * k + rng.below(spread / 2 + 1) - spread / 4;
            while done.load(Ordering::SeqCst) < at {
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
            pipeline.kill()?;
            kills += 1;
            pipeline.start().await?;
        }
        Ok::<usize, Error>(kills)
    };
    let work = async { tokio::join!(sends, kills) };
    tokio::pin!(work);
    let first = tokio::time::Instant::now() + Duration::from_secs(30);
    let mut progress = tokio::time::interval_at(first, Duration::from_secs(30));
    let (sent, kills) = loop {
        tokio::select! {
            finished = &mut work => break finished,
            _ = progress.tick() => println!(
                "chaos: {} of {total} webhook sends done, {:.0} s",
                done.load(Ordering::SeqCst),
                started.elapsed().as_secs_f64()
            ),
        }
    };
    Ok((sent, kills?))
}

/// Waits until nothing is left to do, three checks in a row 2 s apart, or `timeout`;
/// returns whether it healed.
async fn heal(
    timeout: Duration,
    store: &TransactionStore,
    sqs: &aws_sdk_sqs::Client,
    queues: &[&str],
    transactions: &[Transaction],
) -> bool {
    let deadline = Instant::now() + timeout;
    let mut calm = 0;
    while Instant::now() < deadline && calm < 3 {
        tokio::time::sleep(Duration::from_secs(2)).await;
        let left = left_to_do(store, sqs, queues, transactions).await;
        calm = if left == Some(0) { calm + 1 } else { 0 };
    }
    calm == 3
}

async fn queue_url_of(sqs: &aws_sdk_sqs::Client, name: &str) -> Result<String, Error> {
    let output = sqs.get_queue_url().queue_name(name).send().await?;
    output.queue_url.ok_or_else(|| format!("no URL for queue {name}").into())
}

/// How much is left: messages in the queues (the terminal events', the hints'), final
/// transactions pending notification, and transactions not yet at their expected status
/// (`None` when it cannot be read).
async fn left_to_do(
    store: &TransactionStore,
    sqs: &aws_sdk_sqs::Client,
    queues: &[&str],
    transactions: &[Transaction],
) -> Option<usize> {
    use aws_sdk_sqs::types::QueueAttributeName as Name;
    let mut queued = 0;
    for queue_url in queues {
        let attributes = sqs
            .get_queue_attributes()
            .queue_url(*queue_url)
            .attribute_names(Name::ApproximateNumberOfMessages)
            .attribute_names(Name::ApproximateNumberOfMessagesNotVisible)
            .attribute_names(Name::ApproximateNumberOfMessagesDelayed)
            .send()
            .await
            .ok()?
            .attributes
            .unwrap_or_default();
        queued += attributes.values().filter_map(|v| v.parse::<usize>().ok()).sum::<usize>();
    }
    if queued > 0 {
        return Some(queued);
    }
    // Every pending shard is a query: read only once the queue is empty.
    let far = time::OffsetDateTime::now_utc() + time::Duration::days(1);
    let pending = store.pending_notifications(far).await.ok()?.len();
    if pending > 0 {
        return Some(pending);
    }
    let wrong = futures_util::stream::iter(transactions.iter().filter(|t| t.reached))
        .map(|t| async move {
            match store.get(t.name, &t.stored).await {
                Ok(Some(record)) if t.accepts(record.status) => 0,
                Ok(_) | Err(_) => 1,
            }
        })
        .buffer_unordered(16)
        .fold(0, |sum, n| async move { sum + n })
        .await;
    Some(wrong)
}

/// Reads the options from the command line (`--transactions N --seed S --kills K`) and
/// the environment (the emulators' endpoints), with the pipeline executable beside this
/// one and the workspace root as the current directory.
pub fn options_from_args(args: &[String], env: &impl Env) -> Result<Options, Error> {
    let mut options = Options {
        transactions: 5000,
        seed: 1,
        kills: 2,
        concurrency: 64,
        pipeline: std::env::current_exe()?.with_file_name("local-pipeline"),
        root: std::env::current_dir()?,
        dynamodb_endpoint: env.required("DYNAMODB_ENDPOINT")?,
        sqs_endpoint: env.required("SQS_ENDPOINT")?,
        heal_timeout: Duration::from_secs(600),
        log: PathBuf::new(),
    };
    let mut args = args.iter();
    while let Some(flag) = args.next() {
        let value = args.next().ok_or_else(|| format!("{flag} needs a value"))?;
        let number = || value.parse::<u64>().map_err(|_| format!("{flag}: {value} is not a whole number"));
        match flag.as_str() {
            "--transactions" => options.transactions = usize::try_from(number()?)?,
            "--seed" => options.seed = number()?,
            "--kills" => options.kills = usize::try_from(number()?)?,
            "--concurrency" => options.concurrency = usize::try_from(number()?.max(1))?,
            "--heal-timeout" => options.heal_timeout = Duration::from_secs(number()?),
            other => return Err(format!("unknown option {other}; usage: chaos [--transactions N] [--seed S] [--kills K] [--concurrency C] [--heal-timeout SECONDS]").into()),
        }
    }
    if options.transactions < 5 {
        return Err("--transactions must be at least 5 (one per provider)".into());
    }
    let logs = options.root.join("target/chaos");
    std::fs::create_dir_all(&logs)?;
    options.log = logs.join(format!("pipeline-seed-{}-{}.log", options.seed, std::process::id()));
    Ok(options)
}
