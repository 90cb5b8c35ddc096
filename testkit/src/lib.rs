//! The test kit: a provider's side of the conversation, simulated (its genuine webhooks,
//! forged and malformed ones, and where we call the provider back, its API) and its
//! fixtures, each with what it must give. Each provider crate implements [`Simulator`]
//! next to its verification and mapping, behind its `simulator` feature, so no Lambda
//! build compiles this crate; the fixtures (`make-events`), the scenario tests, the fuzz
//! targets, the benchmarks, the chaos run, the capacity model and the local pipeline drive
//! every provider through it, taken from the catalog.

use std::future::Future;
use std::path::Path;

use time::OffsetDateTime;

use shared::model::{MismatchKind, RefundStatus, Status};
use shared::pipeline::{Inbound, Provider};
use shared::runtime::config::Env;

pub type SimulatorError = Box<dyn std::error::Error + Send + Sync>;

/// Environment variables that point a provider at what its simulation started.
pub type Variables = Vec<(&'static str, String)>;

/// What the capacity model (`scripts/capacity`) assumes of a provider's traffic.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Load {
    /// Its weight among the providers in the reference mix: its share of the webhooks is
    /// its weight over the sum of every provider's.
    pub reference_weight: f64,
    /// Its weight in the Pix mix, where Pix charges are half the load.
    pub pix_weight: f64,
    /// How long one query of its status API takes.
    pub status_query: std::time::Duration,
    /// Its charges say when they expire, and expire unpaid (BACEN's Pix): in the Pix mix,
    /// a share of them is never paid and found expired by the status sync.
    pub charges_expire: bool,
    /// Its transactions are refunded after the outcome, and it says so (Pay3's refund
    /// words, Pagstar's returns): a share of them gets a refund, pending then settled.
    pub refunds: bool,
}

/// A running simulation of one provider.
pub trait Simulator: Sized + Send + Sync + 'static {
    type Provider: Provider;

    /// The provider's status words in the order one transaction goes through them, the
    /// last one final.
    const SEQUENCE: &'static [&'static str];
    /// How many times the provider retries a webhook not answered with a 2xx: its
    /// published count (`../shared/providers/README.md`), or 5 where it publishes none.
    const WEBHOOK_RETRIES: u32;
    /// What the capacity model assumes of its traffic.
    const LOAD: Load;
    /// Two different final words.
    const CONFLICT: (&'static str, &'static str);
    /// Words the provider sends after the final one, which move no status (Pay3's reviews,
    /// under-payment and refund), delivered as webhooks like any word; none by default.
    const AFTER_FINAL: &'static [&'static str] = &[];
    /// The fixture (in `events/<name>/`, without `.json`) the benchmarks run: a final one,
    /// verified without a call over the network; `None` when every one needs a call.
    const BENCH_FIXTURE: Option<&'static str>;

    /// Starts the simulation with the provider's dev configuration (`env`, and `root`, the
    /// workspace root, for the keys in `dev-keys/`). Returns it and the variables that
    /// point the provider at anything it started (Pagstar: `PAGSTAR_API_URL`).
    fn start(
        env: &(impl Env + Sync),
        root: &Path,
    ) -> impl Future<Output = Result<(Self, Variables), SimulatorError>> + Send;

    /// The canonical status a word of [`Self::SEQUENCE`] or [`Self::CONFLICT`] maps to.
    fn status_of(word: &str) -> Status;

    /// A fresh reference, of the provider's format, from a unique number.
    fn new_reference(unique: u64) -> String;

    /// The reference a transaction is stored under (default: as sent).
    fn stored_reference(reference: &str) -> String {
        reference.to_owned()
    }

    /// The genuine webhook saying `word` about `reference`, sent at `now`. For a provider
    /// that is asked for the truth, this also makes `word` the truth first.
    fn webhook(&self, reference: &str, word: &str, now: OffsetDateTime) -> Inbound;

    /// For a provider that is asked for the truth: makes `word` the truth about
    /// `reference` (default: nothing to do).
    fn settle(&self, _reference: &str, _word: &str) {}

    /// One delivery once the truth is settled (default: the genuine webhook).
    fn deliver(&self, reference: &str, word: &str, now: OffsetDateTime) -> Inbound {
        self.webhook(reference, word, now)
    }

    /// A webhook about `reference` that fails verification, and the status that deserves.
    fn unverified(&self, reference: &str, now: OffsetDateTime) -> (Inbound, u16);

    /// A verified webhook whose status nobody knows, and the status that deserves.
    fn unknown_status(&self, reference: &str, now: OffsetDateTime) -> (Inbound, u16);

    /// `body` sent with whatever credentials travel beside it (a header, a query token, a
    /// signature over the body), so that it passes verification when the body is genuine.
    fn with_body(&self, body: &[u8], now: OffsetDateTime) -> Inbound;

    /// What the provider signs, when it signs something inside the body (Pay3's JWT
    /// claims), for fuzzing behind a valid signature; `None` when the body is what is
    /// signed or nothing is (then [`Self::with_body`] is that target).
    fn signed_content(&self, _reference: &str, _word: &str) -> Option<Vec<u8>> {
        None
    }

    /// `content` signed and wrapped as the provider would send it (see [`Self::signed_content`]).
    fn sign_content(&self, content: &[u8], now: OffsetDateTime) -> Inbound {
        self.with_body(content, now)
    }

    /// Every fixture of `events/<name>/`, its request made at `at`, each with what it
    /// must give.
    fn fixtures(&self, at: OffsetDateTime) -> Result<Vec<Fixture>, SimulatorError>;
}

/// One fixture, `events/<provider>/<name>.json`: the request, and what it must give.
#[derive(Debug)]
pub struct Fixture {
    /// Its file name, without `.json`.
    pub name: &'static str,
    pub request: Inbound,
    pub expected: Expected,
}

impl Fixture {
    /// A fixture answered with `status` that stores `reference` as `stored`.
    pub fn stored(name: &'static str, request: Inbound, status: u16, reference: &'static str, stored: Status) -> Self {
        let expected = Expected { status, stored: Some((reference, stored)), mismatch: None, refunds: &[] };
        Fixture { name, request, expected }
    }

    /// A fixture answered with `status` that writes nothing.
    pub fn nothing(name: &'static str, request: Inbound, status: u16) -> Self {
        Fixture { name, request, expected: Expected { status, stored: None, mismatch: None, refunds: &[] } }
    }

    /// The same fixture, whose stored record says `amount_mismatch.kind = kind`.
    pub fn flagged(mut self, kind: MismatchKind) -> Self {
        self.expected.mismatch = Some(kind);
        self
    }

    /// The same fixture, whose stored record shows these refunds (id, status), each sent as
    /// a `transaction.refund_updated`.
    pub fn refunded(mut self, refunds: &'static [(&'static str, RefundStatus)]) -> Self {
        self.expected.refunds = refunds;
        self
    }
}

/// What a fixture must give: the HTTP status, the (reference, status) stored, or `None`
/// when nothing is written, the kind of `amount_mismatch` the stored record shows, and its
/// refunds.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Expected {
    pub status: u16,
    pub stored: Option<(&'static str, Status)>,
    pub mismatch: Option<MismatchKind>,
    pub refunds: &'static [(&'static str, RefundStatus)],
}
