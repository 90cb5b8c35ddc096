//! The providers' side of a chaos run: each provider's transactions, their webhooks
//! shuffled, duplicated and delayed, sent over HTTP to the local pipeline, and retried on a
//! non-2xx answer (or none) the way that provider retries.

use std::path::Path;
use std::time::Duration;

use provider_testkit::Simulator;
use provider_testkit::{SimulatorError, Variables};
use shared::model::Status;
use shared::pipeline::{Inbound, Provider};
use time::OffsetDateTime;

use super::faults::roll;
use crate::registry::{self, Route};
use crate::serve::REQUEST_ID_HEADER;
use crate::DevEnv;
use provider_catalog::EachSimulator;

/// A provider's simulation, as the chaos run drives it (any [`Simulator`]).
pub trait Simulated: Send + Sync {
    fn sequence(&self) -> &'static [&'static str];
    fn conflict(&self) -> (&'static str, &'static str);
    fn after_final(&self) -> &'static [&'static str];
    fn status_of(&self, word: &str) -> Status;
    fn new_reference(&self, unique: u64) -> String;
    fn stored_reference(&self, reference: &str) -> String;
    fn settle(&self, reference: &str, word: &str);
    fn deliver(&self, reference: &str, word: &str, now: OffsetDateTime) -> Inbound;
    fn with_body(&self, body: &[u8], now: OffsetDateTime) -> Inbound;
    fn signed_content(&self, reference: &str, word: &str) -> Option<Vec<u8>>;
    fn sign_content(&self, content: &[u8], now: OffsetDateTime) -> Inbound;
}

impl<S: Simulator> Simulated for S {
    fn sequence(&self) -> &'static [&'static str] {
        S::SEQUENCE
    }
    fn conflict(&self) -> (&'static str, &'static str) {
        S::CONFLICT
    }
    fn after_final(&self) -> &'static [&'static str] {
        S::AFTER_FINAL
    }
    fn status_of(&self, word: &str) -> Status {
        S::status_of(word)
    }
    fn new_reference(&self, unique: u64) -> String {
        S::new_reference(unique)
    }
    fn stored_reference(&self, reference: &str) -> String {
        S::stored_reference(reference)
    }
    fn settle(&self, reference: &str, word: &str) {
        Simulator::settle(self, reference, word);
    }
    fn deliver(&self, reference: &str, word: &str, now: OffsetDateTime) -> Inbound {
        Simulator::deliver(self, reference, word, now)
    }
    fn with_body(&self, body: &[u8], now: OffsetDateTime) -> Inbound {
        Simulator::with_body(self, body, now)
    }
    fn signed_content(&self, reference: &str, word: &str) -> Option<Vec<u8>> {
        Simulator::signed_content(self, reference, word)
    }
    fn sign_content(&self, content: &[u8], now: OffsetDateTime) -> Inbound {
        Simulator::sign_content(self, content, now)
    }
}

/// The delay before retry `attempt` (1, 2, …) of delivery `id`: 1 s doubling up to 8 s,
/// with up to a quarter of jitter from the seed.
pub fn retry_delay(seed: u64, id: &str, attempt: u32) -> Duration {
    let base = 1000_u64 << (attempt.saturating_sub(1)).min(3);
    let jitter = (roll(seed, id, u64::from(attempt)) * base as f64 / 4.0) as u64;
    Duration::from_millis(base + jitter)
}

/// One provider in a run.
pub struct ChaosProvider {
    pub name: &'static str,
    pub has_status_api: bool,
    /// Its webhook is only a hint: the pipeline asks its API for the truth.
    pub hint: bool,
    pub route: Route,
    /// How many times it retries a webhook not answered with a 2xx
    /// ([`Simulator::WEBHOOK_RETRIES`]); the delays are compressed (1 s, doubling, at most 8 s).
    pub retries: u32,
    pub simulation: Box<dyn Simulated>,
    /// The variables that point the pipeline at what the simulation started.
    pub variables: Variables,
}

impl std::fmt::Debug for ChaosProvider {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ChaosProvider").field("name", &self.name).finish_non_exhaustive()
    }
}

/// Starts every provider's simulation (its API stand-in, where it has one).
pub async fn start_providers(env: &DevEnv, root: &Path) -> Result<Vec<ChaosProvider>, SimulatorError> {
    type Start<'a> =
        std::pin::Pin<Box<dyn std::future::Future<Output = Result<ChaosProvider, SimulatorError>> + Send + 'a>>;
    struct Collect<'a> {
        env: &'a DevEnv,
        root: &'a Path,
        routes: Vec<Route>,
        starts: Vec<Start<'a>>,
    }
    impl EachSimulator for Collect<'_> {
        fn simulator<S: Simulator>(&mut self) {
            let (env, root) = (self.env, self.root);
            let name = S::Provider::NAME;
            let route = self.routes.iter().find(|r| r.name == name).copied();
            self.starts.push(Box::pin(async move {
                let route = route.ok_or_else(|| format!("{name} has no route in the registry"))?;
                let (simulator, variables) = S::start(env, root).await?;
                Ok(ChaosProvider {
                    name,
                    has_status_api: S::Provider::HAS_STATUS_API,
                    hint: S::Provider::HINT.is_some(),
                    route,
                    retries: S::WEBHOOK_RETRIES,
                    simulation: Box::new(simulator),
                    variables,
                })
            }));
        }
    }
    let mut collect = Collect { env, root, routes: registry::routes(), starts: Vec::new() };
    provider_catalog::for_each_simulator(&mut collect);
    let mut providers = Vec::new();
    for start in collect.starts {
        providers.push(start.await?);
    }
    Ok(providers)
}

/// A small deterministic generator (xorshift), so that a run can be replayed from its seed.
#[derive(Debug, Clone)]
pub struct Rng(u64);

impl Rng {
    pub fn new(seed: u64) -> Self {
        Rng(seed.wrapping_mul(0x9e37_79b9_7f4a_7c15) | 1)
    }
    pub fn next_u64(&mut self) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0
    }
    pub fn below(&mut self, n: usize) -> usize {
        (self.next_u64() % n.max(1) as u64) as usize
    }
    pub fn shuffle<T>(&mut self, items: &mut [T]) {
        for i in (1..items.len()).rev() {
            items.swap(i, self.below(i + 1));
        }
    }
}

/// One transaction of the run, and the status its provider's final word implies.
#[derive(Debug, Clone)]
pub struct Transaction {
    /// Its provider: the index in the run's providers, and the name.
    pub provider: usize,
    pub name: &'static str,
    /// As sent (for some providers, the merchant's own id).
    pub reference: String,
    /// As stored.
    pub stored: String,
    pub expected: Status,
    /// For a transaction whose provider sends two different final words: the other one's
    /// status (whichever lands first stands, and the other is recorded as a conflict).
    pub alternative: Option<Status>,
    /// Whether any of its webhooks reached the pipeline (a provider may give up on all).
    pub reached: bool,
    /// The words after the final one it was sent (refunds, an under-payment), shuffled in
    /// with the others, so that some arrive before the final word.
    pub after_final: Vec<&'static str>,
}

impl Transaction {
    /// Whether `status` is what the provider's final word implies.
    pub fn accepts(&self, status: Status) -> bool {
        status == self.expected || Some(status) == self.alternative
    }
}

/// One webhook to send: about which transaction, which word, and after what delay.
#[derive(Debug, Clone)]
pub struct Delivery {
    pub id: String,
    pub transaction: usize,
    pub word: &'static str,
    pub delay: Duration,
}

/// Plans `count` transactions over the providers, round robin: each one's words in a
/// shuffled order, a fifth of them never final and one in 47 with two different final
/// words (the provider's `CONFLICT`), one in 7 of the final ones also with the words its
/// provider sends after the final one (`AFTER_FINAL`: refunds, under-payments), each word
/// sent one to three times, each send delayed by up to 2 s; all sends shuffled together. Settles each provider's truth (its API's
/// answer, the first final word for a conflict) first.
pub fn plan(providers: &[ChaosProvider], count: usize, seed: u64) -> (Vec<Transaction>, Vec<Delivery>) {
    let mut rng = Rng::new(seed);
    let mut transactions = Vec::with_capacity(count);
    let mut deliveries = Vec::new();
    for i in 0..count {
        let index = i % providers.len();
        let simulation = &providers[index].simulation;
        let reference = simulation.new_reference(seed.wrapping_mul(10_000_000).wrapping_add(i as u64 + 1));
        let mut words: Vec<&'static str> = simulation.sequence().to_vec();
        let mut alternative = None;
        let never_final = (i / providers.len()) % 5 == 4;
        if never_final || i % 47 == 7 {
            words.retain(|w| !simulation.status_of(w).is_final());
        }
        if i % 47 == 7 {
            let (first, second) = simulation.conflict();
            words.extend([second, first]);
            alternative = Some(simulation.status_of(second));
        }
        let Some(truth) = words.iter().copied().max_by_key(|w| simulation.status_of(w).rank()) else { continue };
        let truth = if alternative.is_some() { simulation.conflict().0 } else { truth };
        simulation.settle(&reference, truth);
        let after_final: Vec<&'static str> = match i % 7 == 3 && !never_final && alternative.is_none() {
            true => simulation.after_final().to_vec(),
            false => Vec::new(),
        };
        words.extend(after_final.iter().copied());
        rng.shuffle(&mut words);
        for word in words {
            for _ in 0..=rng.below(3) {
                deliveries.push(Delivery {
                    id: format!("s{seed}-d{}", deliveries.len()),
                    transaction: transactions.len(),
                    word,
                    delay: Duration::from_millis(rng.below(2000) as u64),
                });
            }
        }
        let stored = simulation.stored_reference(&reference);
        transactions.push(Transaction {
            provider: index,
            name: providers[index].name,
            reference,
            stored,
            expected: simulation.status_of(truth),
            alternative,
            reached: true,
            after_final,
        });
    }
    rng.shuffle(&mut deliveries);
    (transactions, deliveries)
}

/// What became of one send (all its attempts).
#[derive(Debug, Clone, Default)]
pub struct Sent {
    /// Every attempt's id (`<delivery>-a<n>`) and answer (`None`: no answer, e.g. the
    /// process was killed or not listening).
    pub attempts: Vec<(String, Option<u16>)>,
    /// Whether some attempt was answered with a 2xx.
    pub accepted: bool,
}

/// Sends one delivery to `base` and retries it as its provider would.
pub async fn send(
    client: &reqwest::Client,
    base: &str,
    provider: &ChaosProvider,
    transaction: &Transaction,
    delivery: &Delivery,
    seed: u64,
) -> Sent {
    tokio::time::sleep(delivery.delay).await;
    let request = provider.simulation.deliver(&transaction.reference, delivery.word, OffsetDateTime::now_utc());
    let url = format!("{base}{}", provider.route.path_of(&request));
    let query: Vec<(&String, &String)> = request.query.iter().collect();
    let mut sent = Sent::default();
    for attempt in 0..=provider.retries {
        if attempt > 0 {
            tokio::time::sleep(retry_delay(seed, &delivery.id, attempt)).await;
        }
        let id = format!("{}-a{attempt}", delivery.id);
        let mut headers = request.headers.clone();
        if let Ok(value) = http::HeaderValue::from_str(&id) {
            headers.insert(REQUEST_ID_HEADER, value);
        }
        let answer = client
            .request(request.method.clone(), &url)
            .query(&query)
            .headers(headers)
            .body(request.body.clone())
            .send()
            .await
            .ok()
            .map(|response| response.status().as_u16());
        sent.attempts.push((id, answer));
        if answer.is_some_and(|status| (200..300).contains(&status)) {
            sent.accepted = true;
            break;
        }
    }
    sent
}

/// Transactions whose provider's word did not all reach the pipeline (every retry of a
/// send failed, e.g. around a kill, and the provider gave up).
#[derive(Debug, Clone, Copy, Default)]
pub struct Unheard {
    /// No webhook of the transaction reached the pipeline: nothing can know of it.
    pub transactions: usize,
    /// Its final word never reached the pipeline and its provider has no status API to
    /// ask: the provider's last word we heard stands.
    pub final_words: usize,
}

/// Sets each transaction's expectation to what reached the pipeline: for a provider with
/// a status API, its API's answer (the sync asks it) once any webhook made the
/// transaction known; for one without, the words it delivered.
pub fn as_heard(providers: &[ChaosProvider], transactions: &mut [Transaction], sent: &[(Delivery, Sent)]) -> Unheard {
    let mut heard: Vec<Vec<&'static str>> = vec![Vec::new(); transactions.len()];
    for (delivery, sent) in sent {
        if sent.accepted && !heard[delivery.transaction].contains(&delivery.word) {
            heard[delivery.transaction].push(delivery.word);
        }
    }
    let mut unheard = Unheard::default();
    for (transaction, words) in transactions.iter_mut().zip(heard) {
        let provider = &providers[transaction.provider];
        if words.is_empty() {
            transaction.reached = false;
            unheard.transactions += 1;
            continue;
        }
        if provider.has_status_api {
            continue;
        }
        let statuses: Vec<Status> = words.iter().map(|w| provider.simulation.status_of(w)).collect();
        let mut finals: Vec<Status> = statuses.iter().copied().filter(|s| s.is_final()).collect();
        finals.dedup();
        let expected_final = transaction.expected.is_final();
        match finals.as_slice() {
            [] => {
                if expected_final {
                    unheard.final_words += 1;
                }
                transaction.alternative = None;
                if let Some(highest) = statuses.iter().copied().max_by_key(|s| s.rank()) {
                    transaction.expected = highest;
                }
            }
            [only] => {
                transaction.expected = *only;
                transaction.alternative = None;
            }
            [first, second, ..] => {
                transaction.expected = *first;
                transaction.alternative = Some(*second);
            }
        }
    }
    unheard
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Words are status names.
    struct Words;

    impl Simulated for Words {
        fn sequence(&self) -> &'static [&'static str] {
            &["processing", "completed"]
        }
        fn conflict(&self) -> (&'static str, &'static str) {
            ("completed", "failed")
        }
        fn after_final(&self) -> &'static [&'static str] {
            &[]
        }
        fn status_of(&self, word: &str) -> Status {
            Status::ALL.into_iter().find(|s| s.as_str() == word).unwrap_or(Status::Pending)
        }
        fn new_reference(&self, unique: u64) -> String {
            unique.to_string()
        }
        fn stored_reference(&self, reference: &str) -> String {
            reference.to_owned()
        }
        fn settle(&self, _: &str, _: &str) {}
        fn deliver(&self, _: &str, _: &str, _: OffsetDateTime) -> Inbound {
            Inbound::new(http::Method::POST, "")
        }
        fn with_body(&self, body: &[u8], _: OffsetDateTime) -> Inbound {
            Inbound::new(http::Method::POST, body)
        }
        fn signed_content(&self, _: &str, _: &str) -> Option<Vec<u8>> {
            None
        }
        fn sign_content(&self, content: &[u8], now: OffsetDateTime) -> Inbound {
            self.with_body(content, now)
        }
    }

    fn provider(name: &'static str, has_status_api: bool) -> ChaosProvider {
        let route = Route { name, method: "POST", path: "/x", also_at: &[] };
        ChaosProvider {
            name,
            has_status_api,
            hint: false,
            route,
            retries: 5,
            simulation: Box::new(Words),
            variables: Vec::new(),
        }
    }

    fn send(transaction: usize, word: &'static str, accepted: bool) -> (Delivery, Sent) {
        let delivery = Delivery { id: format!("{transaction}-{word}"), transaction, word, delay: Duration::ZERO };
        (delivery, Sent { attempts: Vec::new(), accepted })
    }

    /// What the pipeline could know: the API's answer where there is one, else the words
    /// that got through; nothing of a transaction none of whose words did.
    #[test]
    fn expectations_follow_what_got_through() {
        let providers = [provider("asked", true), provider("unasked", false)];
        let (plan, _) = plan(&providers, 10, 3);
        let mut transactions: Vec<Transaction> = plan.into_iter().take(4).collect();
        for t in &mut transactions {
            t.expected = Status::Completed;
            t.alternative = None;
        }
        // 0 (asked): only "processing" got through; 1 (unasked): the same;
        // 2 (asked): nothing got through; 3 (unasked): both conflicting finals.
        let sent = [
            send(0, "processing", true),
            send(0, "completed", false),
            send(1, "processing", true),
            send(1, "completed", false),
            send(2, "processing", false),
            send(3, "failed", true),
            send(3, "completed", true),
        ];
        let unheard = as_heard(&providers, &mut transactions, &sent);
        assert_eq!((unheard.transactions, unheard.final_words), (1, 1));
        assert_eq!((transactions[0].reached, transactions[0].expected), (true, Status::Completed), "the sync asks");
        assert_eq!(transactions[1].expected, Status::Processing, "its last word we heard");
        assert!(!transactions[2].reached);
        assert_eq!((transactions[3].expected, transactions[3].alternative), (Status::Failed, Some(Status::Completed)));
        assert!(transactions[3].accepts(Status::Completed) && !transactions[3].accepts(Status::Processing));
    }
}
