//! The bodies of the coverage-guided fuzz targets, shared by `fuzz/` (cargo fuzz,
//! libFuzzer, nightly: `scripts/fuzz`) and the test command, which replays every input
//! saved under `fuzz/regressions/<target>/` and the seed corpus through them on stable.
//!
//! Each target takes arbitrary bytes and checks what must hold for any input: no panic,
//! and no 5xx (a refusal is a 4xx). Where a signature stands in the way, the provider's
//! simulator signs the input with the development keys (`local.env.example`), so the
//! fuzzer reaches the parser behind verification.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use provider_testkit::Simulator;
use shared::pipeline::{Inbound, Provider};
use time::OffsetDateTime;

use provider_catalog::EachSimulator;

type Body = Box<dyn Fn(&[u8]) + Send + Sync>;

/// Every target, by name (the file names of `fuzz/fuzz_targets/`). One target,
/// [`WEBHOOK`], covers every provider of the catalog: its input names the provider.
pub struct Targets {
    runtime: tokio::runtime::Runtime,
    targets: BTreeMap<String, Body>,
}

impl std::fmt::Debug for Targets {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Targets").field("targets", &self.targets.keys().collect::<Vec<_>>()).finish()
    }
}

/// The target over every provider's webhook. Its input is `<name>\n<body>`: `<name>` is a
/// provider's (its body sent with the credentials that verify it) or `<name>-content`
/// (content the provider signs inside its body, signed: Pay3's JWT claims); an input
/// naming nothing is skipped.
pub const WEBHOOK: &str = "webhook";

/// The clock of every case; the simulators sign their requests (QI Tech's) for it.
fn now() -> OffsetDateTime {
    OffsetDateTime::from_unix_timestamp(1_795_341_600).unwrap_or(OffsetDateTime::UNIX_EPOCH)
}

/// The workspace root (where `events/` and `local.env.example` are).
pub fn root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("..")
}

impl Default for Targets {
    fn default() -> Self {
        Targets::new()
    }
}

impl Targets {
    /// Starts every provider's simulation (Pagstar's API stand-in on loopback) and builds
    /// each provider from the development environment.
    pub fn new() -> Targets {
        // Multi-threaded: a simulated API (Pagstar's) keeps serving on the workers while a
        // case blocks on the provider.
        let runtime = tokio::runtime::Runtime::new().unwrap_or_else(|e| panic!("runtime: {e}"));
        let mut providers: BTreeMap<String, Body> = BTreeMap::new();
        struct Each<'a> {
            runtime: &'a tokio::runtime::Runtime,
            targets: &'a mut BTreeMap<String, Body>,
        }
        impl EachSimulator for Each<'_> {
            fn simulator<S: Simulator>(&mut self) {
                let name = S::Provider::NAME;
                let mut env = crate::DevEnv::load(&root().join("local.env.example"))
                    .unwrap_or_else(|e| panic!("local.env.example: {e}"));
                let (simulator, variables) =
                    self.runtime.block_on(S::start(&env, &root())).unwrap_or_else(|e| panic!("{name}: {e}"));
                for (variable, value) in variables {
                    env.set_default(variable, value);
                }
                let provider =
                    std::sync::Arc::new(S::Provider::from_env(&env).unwrap_or_else(|e| panic!("{name}: {e}")));
                let simulator = std::sync::Arc::new(simulator);
                let handle = self.runtime.handle().clone();
                let (p, s, h) = (provider.clone(), simulator.clone(), handle.clone());
                self.targets
                    .insert(name.to_owned(), Box::new(move |bytes| receive(&h, name, &*p, &s.with_body(bytes, now()))));
                let reference = S::new_reference(1);
                if S::SEQUENCE.iter().any(|word| simulator.signed_content(&reference, word).is_some()) {
                    self.targets.insert(
                        format!("{name}-content"),
                        Box::new(move |bytes| {
                            receive(&handle, name, &*provider, &simulator.sign_content(bytes, now()))
                        }),
                    );
                }
            }
        }
        provider_catalog::for_each_simulator(&mut Each { runtime: &runtime, targets: &mut providers });
        let mut targets: BTreeMap<String, Body> = BTreeMap::new();
        targets.insert(
            WEBHOOK.into(),
            Box::new(move |data| {
                let (name, body) = data.split_at(data.iter().position(|b| *b == b'\n').unwrap_or(data.len()));
                let name = String::from_utf8_lossy(name);
                if let Some(target) = providers.get(name.as_ref()) {
                    target(body.get(1..).unwrap_or_default());
                }
            }),
        );
        targets.insert("notifier-decode".into(), Box::new(notifier_decode));
        targets.insert("registration".into(), Box::new(registration));
        targets.insert("events-query".into(), Box::new(events_query));
        targets.insert("status-api".into(), Box::new(status_api));
        Targets { runtime, targets }
    }

    pub fn names(&self) -> Vec<&str> {
        self.targets.keys().map(String::as_str).collect()
    }

    /// Runs one input through `target`; panics on a violation (what libFuzzer reports).
    pub fn run(&self, target: &str, data: &[u8]) {
        let _guard = self.runtime.enter();
        let body = self.targets.get(target).unwrap_or_else(|| panic!("no fuzz target {target}"));
        body(data)
    }

    /// The seed corpus of `target`: the bodies of the fixtures in `events/` it reads (for
    /// [`WEBHOOK`], each provider's, and each again for its signed content, prefixed with
    /// the name).
    pub fn seeds(target: &str) -> Vec<Vec<u8>> {
        let mut seeds = match target {
            "registration" => bodies("transactions"),
            WEBHOOK => crate::registry::routes()
                .iter()
                .flat_map(|route| {
                    let bodies = bodies(route.name);
                    [route.name.to_owned(), format!("{}-content", route.name)].into_iter().flat_map(move |name| {
                        bodies.iter().map(move |body| [name.as_bytes(), b"\n", body].concat()).collect::<Vec<_>>()
                    })
                })
                .collect(),
            _ => Vec::new(),
        };
        seeds.sort();
        seeds
    }
}

/// The bodies of the fixtures in `events/<folder>/`.
fn bodies(folder: &str) -> Vec<Vec<u8>> {
    let Ok(entries) = std::fs::read_dir(root().join("events").join(folder)) else { return Vec::new() };
    entries
        .filter_map(Result::ok)
        .filter_map(|entry| std::fs::read_to_string(entry.path()).ok())
        .filter_map(|text| serde_json::from_str::<serde_json::Value>(&text).ok())
        .filter_map(|event| event["body"].as_str().map(|body| body.as_bytes().to_vec()))
        .collect()
}

/// A provider's verify-and-parse entry point, then the write of each observation: any
/// failure is a 4xx, and each observation with a valid reference translates to the
/// store's conditional write.
fn receive<P: Provider>(handle: &tokio::runtime::Handle, name: &str, provider: &P, request: &Inbound) {
    let (request, at) = as_received::<P>(request, now());
    match handle.block_on(provider.receive(&request, at)) {
        Err(error) => assert!(error.status().is_client_error(), "{name}: {} {error}", error.status()),
        Ok(observations) => {
            for observation in observations.iter().filter(|o| P::check_reference(&o.reference).is_ok()) {
                shared::storage::build_update(name, observation, now())
                    .unwrap_or_else(|e| panic!("{name}: an observation that cannot be written: {e}"));
            }
        }
    }
}

/// `request` at `at` as a case of a fuzz target takes it. A hint as on a late receive, a
/// second after the case before: what a provider does not know yet is then dropped, and a
/// txid is not within its lookup interval, rather than asked about again (a 503, which
/// the queue's redelivery answers).
pub fn as_received<P: Provider>(request: &Inbound, at: OffsetDateTime) -> (Inbound, OffsetDateTime) {
    static CASES: std::sync::atomic::AtomicI64 = std::sync::atomic::AtomicI64::new(0);
    if P::HINT.is_none() {
        return (request.clone(), at);
    }
    let case = CASES.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    let late = request.clone().with_header(shared::pipeline::HINT_RECEIVE_COUNT_HEADER, "1000");
    (late, at + time::Duration::seconds(case.saturating_mul(10)))
}

/// The notifier's first stage: a queue message that decodes is a terminal event whose
/// JSON reads back as the same event.
fn notifier_decode(data: &[u8]) {
    let mut message = aws_lambda_events::sqs::SqsMessage::default();
    message.body = Some(String::from_utf8_lossy(data).into_owned());
    message.message_id = Some("fuzz".into());
    if let Ok((event, _)) = notifier::decode(&message) {
        let text = serde_json::to_string(&event).unwrap_or_else(|e| panic!("re-encode: {e}"));
        let again: shared::model::MerchantEvent =
            serde_json::from_str(&text).unwrap_or_else(|e| panic!("read back: {e}"));
        assert_eq!(again.id, event.id);
    }
}

/// A registration body (`PUT /transactions/{provider}/{reference}`), its whole path: a
/// 4xx, or a registration whose record (its sync schedule included, for a provider with a
/// status API and one without) translates to the store's write and reads back as written.
fn registration(data: &[u8]) {
    let request = Inbound::new(http::Method::PUT, data.to_vec()).with_header("content-type", "application/json");
    let registration = match transactions_api::registration(&request, now()) {
        Ok(registration) => registration,
        Err(status) => return assert!(status.is_client_error(), "registration refused with {status}"),
    };
    for supported in [true, false] {
        let plan = shared::model::WritePlan { supported, ..Default::default() };
        let record = shared::storage::registered_record("fuzz", "fuzz-1", &registration, now(), plan)
            .unwrap_or_else(|e| panic!("an accepted registration cannot be written: {e}"));
        assert_eq!(
            (&record.expected_amount, &record.expected_currency),
            (&registration.amount, &registration.currency)
        );
        assert_eq!(record.expires_at, registration.expires_at.map(shared::model::index_time));
        // The sync indexes compare times as text: every one written is UTC.
        for at in [record.expires_at, record.next_sync_at, record.sync_at].into_iter().flatten() {
            assert!(at.offset().is_utc(), "a time written with an offset: {at}");
        }
        serde_json::to_string(&record).unwrap_or_else(|e| panic!("the record's JSON: {e}"));
    }
}

/// The events API's listing parameters (`GET /events?...`), through the query they make:
/// a 4xx, or a query whose key condition DynamoDB takes (a sort-key value is 1 to 1,024
/// bytes) on a page of 1 to 100.
fn events_query(data: &[u8]) {
    let request = Inbound::new(http::Method::GET, Vec::new()).with_query_string(&String::from_utf8_lossy(data));
    let query = match events_api::listing(&request) {
        Ok(query) => query,
        Err(status) => return assert!(status.is_client_error(), "listing refused with {status}"),
    };
    assert!((1..=100).contains(&query.limit), "limit {}", query.limit);
    let (from, until) = query.key_range();
    for value in std::iter::once(&from).chain(until.as_ref()) {
        assert!((1..=1_024).contains(&value.len()), "a key value of {} bytes", value.len());
    }
}

/// The status API's path parameters (`GET /transactions/{provider}/{reference}`): a
/// reference that passes the check is a usable DynamoDB key part and SQS group id.
fn status_api(data: &[u8]) {
    let text = String::from_utf8_lossy(data);
    if shared::pipeline::check_reference(&text).is_ok() {
        assert!(!text.is_empty() && text.len() <= 100 && !text.contains(char::is_whitespace), "{text:?}");
    }
}

/// Every file saved under `fuzz/regressions/<target>/`, by target.
pub fn regressions() -> BTreeMap<String, Vec<PathBuf>> {
    let mut found = BTreeMap::new();
    let Ok(targets) = std::fs::read_dir(root().join("fuzz/regressions")) else { return found };
    for target in targets.filter_map(Result::ok).filter(|e| e.path().is_dir()) {
        let mut files: Vec<PathBuf> = std::fs::read_dir(target.path())
            .map(|files| files.filter_map(Result::ok).map(|f| f.path()).filter(|p| p.is_file()).collect())
            .unwrap_or_default();
        files.sort();
        found.insert(target.file_name().to_string_lossy().into_owned(), files);
    }
    found
}
