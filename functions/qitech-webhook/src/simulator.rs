//! QI Tech's side, simulated: `POST /webhooks/qitech`, signed with the TEST-ONLY key in
//! `dev-keys/qitech-dev-private.pem` (its public half is `QITECH_PUBLIC_KEY` in
//! local.env.example), with the `API-CLIENT-KEY` header.
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

use crate::signing::QiTechSigner;
use crate::{QiTech, QiTechEntryStatus, PATH};

/// QI Tech's TEST-ONLY signing key, under the workspace root.
pub const DEV_KEY: &str = "dev-keys/qitech-dev-private.pem";

#[derive(Debug)]
pub struct QiTechSimulator {
    signer: QiTechSigner,
    client_key: String,
}

/// A payment instrument entry webhook for `entry` at `status`.
pub fn entry_body(entry: &str, status: &str) -> String {
    json!({
        "webhook_type": "baas.invoice.payment_instrument_entry",
        "webhook_datetime": "2026-11-22T10:00:00.000Z",
        "data": {
            "payment_instrument_key": "ecf87b4b-fa6e-49c0-a7f0-f2cad6b42d79",
            "payment_instrument_entry_key": entry,
            "payment_instrument_entry_amount": 150.00,
            "payment_instrument_entry_type": "purchase",
            "payment_instrument_entry_status": status
        }
    })
    .to_string()
    // serde_json writes 150.0; QI Tech writes 150.00, which must survive exactly.
    .replace("150.0,", "150.00,")
}

/// `body` signed by `signer` for `method` and `uri` at `at`, with `client_key`.
fn signed(signer: &QiTechSigner, body: &str, uri: &str, at: OffsetDateTime, client_key: &str) -> Inbound {
    let jwt = signer.sign(body.as_bytes(), "POST", uri, at);
    Inbound::new(Method::POST, body)
        .with_header("content-type", "application/json")
        .with_header("authorization", &jwt)
        .with_header("api-client-key", client_key)
}

impl QiTechSimulator {
    fn post(&self, body: &str, at: OffsetDateTime) -> Inbound {
        signed(&self.signer, body, PATH, at, &self.client_key)
    }
}

impl Simulator for QiTechSimulator {
    type Provider = QiTech;
    const LOAD: Load = Load {
        reference_weight: 20.0,
        pix_weight: 15.0,
        status_query: std::time::Duration::from_millis(200),
        charges_expire: false,
        refunds: false,
    };
    // QI Tech: its bookkeeping product's 8 (its BaaS policy is not published).
    const WEBHOOK_RETRIES: u32 = 8;
    const SEQUENCE: &'static [&'static str] = &["processing_conclusion", "concluded"];
    const CONFLICT: (&'static str, &'static str) = ("concluded", "canceled");
    const BENCH_FIXTURE: Option<&'static str> = Some("concluded");

    async fn start(env: &(impl Env + Sync), root: &Path) -> Result<(Self, Variables), SimulatorError> {
        let pem = std::fs::read_to_string(root.join(DEV_KEY)).map_err(|e| format!("{DEV_KEY}: {e}"))?;
        let signer = QiTechSigner::from_pkcs8_pem(&pem)?;
        Ok((QiTechSimulator { signer, client_key: env.required("QITECH_API_CLIENT_KEY")? }, Vec::new()))
    }

    fn status_of(word: &str) -> Status {
        parse_status::<QiTechEntryStatus>(word)
            .map(Status::from)
            .unwrap_or_else(|_| panic!("not a QI Tech entry status: {word}"))
    }

    fn new_reference(unique: u64) -> String {
        format!("00000000-0000-4000-8000-{:012}", unique % 1_000_000_000_000)
    }

    fn webhook(&self, reference: &str, word: &str, now: OffsetDateTime) -> Inbound {
        self.post(&entry_body(reference, word), now)
    }

    fn unverified(&self, reference: &str, now: OffsetDateTime) -> (Inbound, u16) {
        (signed(&self.signer, &entry_body(reference, "concluded"), PATH, now, "wrong-client-key"), 401)
    }

    fn unknown_status(&self, reference: &str, now: OffsetDateTime) -> (Inbound, u16) {
        (self.webhook(reference, "teleported", now), 422)
    }

    /// Signed over these exact bytes.
    fn with_body(&self, body: &[u8], now: OffsetDateTime) -> Inbound {
        let jwt = self.signer.sign(body, "POST", PATH, now);
        Inbound::new(Method::POST, body)
            .with_header("content-type", "application/json")
            .with_header("authorization", &jwt)
            .with_header("api-client-key", &self.client_key)
    }

    fn fixtures(&self, at: OffsetDateTime) -> Result<Vec<Fixture>, SimulatorError> {
        let other_signer = QiTechSigner::generate()?;
        let good = |entry: &str, status: &str| self.post(&entry_body(entry, status), at);
        let tampered = {
            let original = entry_body("00000000-0000-4000-8000-0000000000b1", "concluded");
            let mut request = self.post(&original, at);
            request.body = original.replace("150.00", "1500.00").into_bytes();
            request
        };
        let bad = |entry: &str| entry_body(entry, "concluded");
        let key = self.client_key.as_str();
        let other_type = r#"{"webhook_type":"baas.account.balance_update","data":{"account_key":"x"}}"#;
        Ok(vec![
            Fixture::stored(
                "processing-conclusion",
                good("00000000-0000-4000-8000-000000000001", "processing_conclusion"),
                200,
                "00000000-0000-4000-8000-000000000001",
                Status::Processing,
            ),
            Fixture::stored(
                "processing-cancellation",
                good("00000000-0000-4000-8000-000000000002", "processing_cancellation"),
                200,
                "00000000-0000-4000-8000-000000000002",
                Status::Canceling,
            ),
            Fixture::stored(
                "concluded",
                good("00000000-0000-4000-8000-000000000003", "concluded"),
                200,
                "00000000-0000-4000-8000-000000000003",
                Status::Completed,
            ),
            Fixture::stored(
                // A JSON number in exponent form (150): read exactly, never refused.
                "concluded-exponent-amount",
                self.post(
                    &entry_body("00000000-0000-4000-8000-000000000005", "concluded").replace("150.00", "1.5E2"),
                    at,
                ),
                200,
                "00000000-0000-4000-8000-000000000005",
                Status::Completed,
            ),
            Fixture::stored(
                "canceled",
                good("00000000-0000-4000-8000-000000000004", "canceled"),
                200,
                "00000000-0000-4000-8000-000000000004",
                Status::Canceled,
            ),
            Fixture::nothing("other-webhook-type", self.post(other_type, at), 200),
            Fixture::nothing("bad-tampered-body", tampered, 401),
            Fixture::nothing(
                "bad-signature",
                signed(&other_signer, &bad("00000000-0000-4000-8000-0000000000b2"), PATH, at, key),
                401,
            ),
            Fixture::nothing(
                "bad-wrong-uri",
                signed(&self.signer, &bad("00000000-0000-4000-8000-0000000000b3"), "/other", at, key),
                401,
            ),
            Fixture::nothing(
                "bad-wrong-client-key",
                signed(&self.signer, &bad("00000000-0000-4000-8000-0000000000b4"), PATH, at, "wrong"),
                401,
            ),
            Fixture::nothing(
                "bad-stale-timestamp",
                signed(
                    &self.signer,
                    &bad("00000000-0000-4000-8000-0000000000b5"),
                    PATH,
                    at - time::Duration::minutes(10),
                    key,
                ),
                401,
            ),
            Fixture::nothing("bad-unknown-status", good("00000000-0000-4000-8000-0000000000b6", "teleported"), 422),
            Fixture::nothing("bad-malformed-json", self.post(r#"{"webhook_type": "#, at), 400),
        ])
    }
}
