//! Pagstar's side, simulated: the unsigned `POST /webhooks/pagstar/pix-payment` hint,
//! and Pagstar's API (the stand-in), which holds the truth the webhook asks for.
// Test tooling behind the `simulator` feature, never on Lambda: a panic fails a test.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::indexing_slicing)]

use std::path::Path;

use http::Method;
use provider_testkit::Simulator;
use provider_testkit::{Fixture, Load, SimulatorError, Variables};
use serde_json::json;
use shared::model::{MismatchKind, RefundStatus, Status};
use shared::pipeline::{parse_status, Inbound};
use shared::runtime::config::Env;
use time::OffsetDateTime;

use crate::stand_in::{self, StandIn};
use crate::{Pagstar, PagstarCobStatus};

#[derive(Debug)]
pub struct PagstarSimulator {
    /// Its API's stand-in; none when the environment points at a real API (`PAGSTAR_API_URL`).
    stand_in: Option<StandIn>,
}

/// `body` posted as Pagstar posts it.
fn post(body: &[u8]) -> Inbound {
    Inbound::new(Method::POST, body).with_header("content-type", "application/json")
}

/// The Pix API's notification naming `txid`.
pub fn hint(txid: &str) -> Inbound {
    let body = json!({ "pix": [{ "endToEndId": "E18236120202611221000s0000000001", "txid": txid, "valor": "100.00",
                                  "horario": "2026-11-22T10:00:00.000Z", "infoPagador": "fixture" }] });
    post(body.to_string().as_bytes())
}

impl PagstarSimulator {
    /// The stand-in of its API, which settles the truth the sync and the webhook ask for.
    pub fn stand_in(&self) -> &StandIn {
        self.stand_in.as_ref().expect("PAGSTAR_API_URL is set: the simulator started no stand-in to settle")
    }
}

impl Simulator for PagstarSimulator {
    type Provider = Pagstar;
    const LOAD: Load = Load {
        reference_weight: 20.0,
        pix_weight: 50.0,
        status_query: std::time::Duration::from_millis(300),
        charges_expire: true,
        refunds: true,
    };
    // Pagstar: its older API retried twice, then stopped.
    const WEBHOOK_RETRIES: u32 = 2;
    const SEQUENCE: &'static [&'static str] = &["ATIVA", "CONCLUIDA"];
    const CONFLICT: (&'static str, &'static str) = ("CONCLUIDA", "REMOVIDA_PELO_PSP");
    /// Every genuine hint needs a call to Pagstar (benches/webhooks.rs times the parsing
    /// and mapping around that call on their own).
    const BENCH_FIXTURE: Option<&'static str> = None;

    /// Starts the stand-in with the fixtures' charges, unless `PAGSTAR_API_URL` points elsewhere.
    async fn start(env: &(impl Env + Sync), _root: &Path) -> Result<(Self, Variables), SimulatorError> {
        if env.optional("PAGSTAR_API_URL").is_some() {
            return Ok((PagstarSimulator { stand_in: None }, Vec::new()));
        }
        let stand_in = stand_in::start(stand_in::fixture_charges()).await?;
        let url = stand_in.url.clone();
        Ok((PagstarSimulator { stand_in: Some(stand_in) }, vec![("PAGSTAR_API_URL", url)]))
    }

    fn status_of(word: &str) -> Status {
        parse_status::<PagstarCobStatus>(word)
            .map(Status::from)
            .unwrap_or_else(|_| panic!("not a Pix charge status: {word}"))
    }

    fn new_reference(unique: u64) -> String {
        format!("pagstar{unique:022}")
    }

    /// The charge becomes `word` at Pagstar, then the hint is sent.
    fn webhook(&self, reference: &str, word: &str, _now: OffsetDateTime) -> Inbound {
        self.settle(reference, word);
        hint(reference)
    }

    fn settle(&self, reference: &str, word: &str) {
        self.stand_in().set(reference, word, "100.00");
    }

    fn deliver(&self, reference: &str, _word: &str, _now: OffsetDateTime) -> Inbound {
        hint(reference)
    }

    /// The hint carries no credential; what can be forged is the txid, and one that can
    /// never be a txid is refused before any call to Pagstar.
    fn unverified(&self, _reference: &str, _now: OffsetDateTime) -> (Inbound, u16) {
        (post(json!({ "txid": "../../oauth/token" }).to_string().as_bytes()), 400)
    }

    /// Pagstar answers with a status we do not know: acknowledged, nothing written.
    fn unknown_status(&self, reference: &str, _now: OffsetDateTime) -> (Inbound, u16) {
        self.stand_in().set(reference, "EM_PROCESSAMENTO", "100.00");
        (hint(reference), 200)
    }

    fn with_body(&self, body: &[u8], _now: OffsetDateTime) -> Inbound {
        post(body)
    }

    fn fixtures(&self, _at: OffsetDateTime) -> Result<Vec<Fixture>, SimulatorError> {
        Ok(vec![
            Fixture::stored(
                "ativa",
                hint("pagstarativa00000000000000001"),
                200,
                "pagstarativa00000000000000001",
                Status::Created,
            ),
            Fixture::stored(
                "concluida",
                hint("pagstarconcluida0000000000001"),
                200,
                "pagstarconcluida0000000000001",
                Status::Completed,
            ),
            Fixture::stored(
                // Paid 90.00 of the 100.00 asked: applied, and an under-payment.
                "concluida-underpaid",
                hint("pagstarconcluidasubpago000001"),
                200,
                "pagstarconcluidasubpago000001",
                Status::Completed,
            )
            .flagged(MismatchKind::Underpaid),
            Fixture::stored(
                // Paid, then partly returned (D0001), and a return through MED settling.
                "concluida-devolvida",
                hint("pagstarconcluidadevolvida0001"),
                200,
                "pagstarconcluidadevolvida0001",
                Status::Completed,
            )
            .refunded(&[("D0001", RefundStatus::Succeeded), ("MED0001", RefundStatus::Pending)]),
            Fixture::stored(
                "removida-pelo-usuario-recebedor",
                post(json!({ "txid": "pagstarremovidausuario0000001" }).to_string().as_bytes()),
                200,
                "pagstarremovidausuario0000001",
                Status::Canceled,
            ),
            Fixture::stored(
                "removida-pelo-psp",
                hint("pagstarremovidapsp00000000001"),
                200,
                "pagstarremovidapsp00000000001",
                Status::Canceled,
            ),
            Fixture::nothing("unknown-txid", hint("pagstarnaoexiste0000000000001"), 200),
            Fixture::nothing("unknown-status", hint("pagstarstatusdesconhecido0001"), 200),
            Fixture::nothing("bad-no-txid", post(br#"{"pix":[{"endToEndId":"E1","valor":"1.00"}]}"#), 400),
            Fixture::nothing("bad-malformed-json", post(br#"{"pix": ["#), 400),
        ])
    }
}
