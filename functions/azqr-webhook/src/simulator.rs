//! AZQR's side, simulated: `PUT /webhooks/azqr/qr/{rrn}/status` with the `apiKey` header,
//! and its status query (the stand-in), which the status sync asks.
// Test tooling behind the `simulator` feature, never on Lambda: a panic fails a test.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::indexing_slicing)]

use std::path::Path;

use http::Method;
use provider_testkit::Simulator;
use provider_testkit::{Fixture, Load, SimulatorError, Variables};
use serde_json::json;
use shared::model::Status;
use shared::pipeline::{parse_status, Inbound};
use shared::runtime::config::Env;
use time::OffsetDateTime;

use crate::stand_in::{self, StandIn};
use crate::{Azqr, AzqrStatus};

#[derive(Debug)]
pub struct AzqrSimulator {
    api_key: String,
    /// Its API's stand-in; none when the environment points at a real API (`AZQR_API_URL`).
    stand_in: Option<StandIn>,
}

/// A status update for `rrn`, with the `apiKey` header when given.
pub fn put(rrn: &str, api_key: Option<&str>, body: &str) -> Inbound {
    let request =
        Inbound::new(Method::PUT, body).with_header("content-type", "application/json").with_path_parameter("rrn", rrn);
    match api_key {
        Some(key) => request.with_header("apikey", key),
        None => request,
    }
}

impl AzqrSimulator {
    fn update(&self, rrn: &str, status: &str, description: &str) -> Inbound {
        put(rrn, Some(&self.api_key), &json!({ "status": status, "description": description }).to_string())
    }
}

impl AzqrSimulator {
    /// The stand-in of its API, which settles the truth the sync and the webhook ask for.
    pub fn stand_in(&self) -> &StandIn {
        self.stand_in.as_ref().expect("AZQR_API_URL is set: the simulator started no stand-in to settle")
    }
}

impl Simulator for AzqrSimulator {
    type Provider = Azqr;
    const LOAD: Load = Load {
        reference_weight: 25.0,
        pix_weight: 15.0,
        status_query: std::time::Duration::from_millis(150),
        charges_expire: false,
        refunds: false,
    };
    // AZQR publishes no retry policy: 5 is our assumption.
    const WEBHOOK_RETRIES: u32 = 5;
    const SEQUENCE: &'static [&'static str] = &["read", "paid", "canceled", "completed"];
    const CONFLICT: (&'static str, &'static str) = ("completed", "expired");
    const BENCH_FIXTURE: Option<&'static str> = Some("completed");

    /// Starts the status query's stand-in, unless `AZQR_API_URL` points elsewhere.
    async fn start(env: &(impl Env + Sync), _root: &Path) -> Result<(Self, Variables), SimulatorError> {
        let api_key = env.required("AZQR_API_KEY")?;
        if env.optional("AZQR_API_URL").is_some() {
            return Ok((AzqrSimulator { api_key, stand_in: None }, Vec::new()));
        }
        let stand_in = stand_in::start(&api_key).await?;
        let url = stand_in.url.clone();
        Ok((AzqrSimulator { api_key, stand_in: Some(stand_in) }, vec![("AZQR_API_URL", url)]))
    }

    /// AZQR's query now answers what the webhook word `word` means (`read` and `paid`
    /// are `inprogress` there).
    fn settle(&self, reference: &str, word: &str) {
        let query_word = match word {
            "read" | "paid" => "inprogress",
            other => other,
        };
        self.stand_in().set(reference, query_word);
    }

    fn status_of(word: &str) -> Status {
        parse_status::<AzqrStatus>(word).map(Status::from).unwrap_or_else(|_| panic!("not an AZQR word: {word}"))
    }

    fn new_reference(unique: u64) -> String {
        format!("{:012}", unique % 1_000_000_000_000)
    }

    fn webhook(&self, reference: &str, word: &str, _now: OffsetDateTime) -> Inbound {
        self.update(reference, word, "")
    }

    fn unverified(&self, reference: &str, _now: OffsetDateTime) -> (Inbound, u16) {
        (put(reference, Some("not-the-key"), r#"{"status":"completed"}"#), 401)
    }

    fn unknown_status(&self, reference: &str, now: OffsetDateTime) -> (Inbound, u16) {
        (self.webhook(reference, "refunded", now), 422)
    }

    fn with_body(&self, body: &[u8], _now: OffsetDateTime) -> Inbound {
        let mut request = put("100000000006", Some(&self.api_key), "");
        request.body = body.to_vec();
        request
    }

    fn fixtures(&self, _at: OffsetDateTime) -> Result<Vec<Fixture>, SimulatorError> {
        let key = Some(self.api_key.as_str());
        let bare = |status: &str| json!({ "status": status, "description": "" }).to_string();
        Ok(vec![
            Fixture::stored(
                "read",
                self.update("100000000001", "read", "QR code read"),
                204,
                "100000000001",
                Status::Pending,
            ),
            Fixture::stored(
                "paid",
                self.update("100000000002", "paid", "Payment confirmed by payer"),
                204,
                "100000000002",
                Status::Processing,
            ),
            Fixture::stored(
                "canceled",
                self.update("100000000003", "canceled", "Payer canceled"),
                204,
                "100000000003",
                Status::Canceling,
            ),
            Fixture::stored(
                "expired",
                self.update("100000000004", "expired", "QR code expired"),
                204,
                "100000000004",
                Status::Expired,
            ),
            Fixture::stored(
                "incompleted",
                self.update("100000000005", "incompleted", "AM04 InsufficientFunds"),
                204,
                "100000000005",
                Status::Failed,
            ),
            Fixture::stored(
                "completed",
                self.update("100000000006", "completed", "Payment completed"),
                204,
                "100000000006",
                Status::Completed,
            ),
            Fixture::nothing("bad-wrong-key", put("100000000007", Some("not-the-right-key"), &bare("completed")), 401),
            Fixture::nothing("bad-missing-key", put("100000000008", None, &bare("completed")), 401),
            Fixture::nothing("bad-rrn", put("12345", key, &bare("completed")), 400),
            Fixture::nothing("bad-unknown-status", put("100000000009", key, &bare("refunded")), 422),
            Fixture::nothing("bad-malformed-json", put("100000000010", key, r#"{"status": "completed""#), 400),
        ])
    }
}
