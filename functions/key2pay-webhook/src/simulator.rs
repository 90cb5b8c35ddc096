//! Key2Pay's side, simulated: `POST /webhooks/key2pay?token=...` with the payment's own
//! token ([`crate::callback_token`]), a notification per action (`AUTHORIZATION`, then
//! `CAPTURE`).
// Test tooling behind the `simulator` feature, never on Lambda: a panic fails a test.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::indexing_slicing)]

use std::path::Path;

use http::Method;
use provider_testkit::Simulator;
use provider_testkit::{Fixture, Load, SimulatorError, Variables};
use serde_json::json;
use shared::model::{MismatchKind, Status};
use shared::pipeline::Inbound;
use shared::runtime::config::Env;
use time::OffsetDateTime;

use crate::{callback_token, Key2Pay};
use shared::runtime::config::Secret;

#[derive(Debug)]
pub struct Key2PaySimulator {
    /// `KEY2PAY_WEBHOOK_TOKEN`: the key of the per-payment tokens.
    key: Secret,
}

/// A notification body. `word` is an action, or `CAPTURE_DECLINED` for a failed capture.
fn notification(trackid: &str, transaction: &str, word: &str) -> String {
    let (action, result, code, description) = match word {
        "CAPTURE_DECLINED" => ("CAPTURE", "Failed", "05", "Do not honor"),
        action => (action, "Successful", "0", "Approved or completed available successfully"),
    };
    body(trackid, transaction, action, result, code, description)
}

fn body(trackid: &str, transaction: &str, action: &str, result: &str, code: &str, description: &str) -> String {
    json!({
        "transactionid": transaction, "transactiondate": "2026-11-22 10:00:00Z", "cardholder": "INSTAPAY",
        "merchantcustomerid": null, "trackid": trackid, "currencycode": "PHP", "amount": "2000.00",
        "card": "20000000****0008", "cardtype": "PHQR", "action": action, "result": result, "authcode": "",
        "responsecode": code, "error_code_tag": "", "avs": "", "extendedresponse": "", "descriptor": "test",
        "message": null, "merchantcode": "INSTAPAYTEST001", "responsedescription": description
    })
    .to_string()
}

impl Key2PaySimulator {
    /// `body` posted to its payment's callback URL: with the token of the body's
    /// `trackid` (of an empty one when it has none).
    fn post(&self, body: &[u8]) -> Inbound {
        let trackid = serde_json::from_slice::<serde_json::Value>(body)
            .ok()
            .and_then(|value| value.get("trackid").and_then(|t| t.as_str().map(str::to_owned)))
            .unwrap_or_default();
        post(Some(&callback_token(&self.key, &trackid)), body)
    }
}

/// `body` posted to the callback URL, with `token` in its query when given.
fn post(token: Option<&str>, body: &[u8]) -> Inbound {
    let request = Inbound::new(Method::POST, body).with_header("content-type", "application/json");
    match token {
        Some(token) => request.with_query("token", token),
        None => request,
    }
}

impl Simulator for Key2PaySimulator {
    type Provider = Key2Pay;
    const LOAD: Load = Load {
        reference_weight: 15.0,
        pix_weight: 10.0,
        status_query: std::time::Duration::from_millis(200),
        charges_expire: false,
        refunds: false,
    };
    // Key2Pay publishes no retry policy: 5 is our assumption.
    const WEBHOOK_RETRIES: u32 = 5;
    const SEQUENCE: &'static [&'static str] = &["AUTHORIZATION", "CAPTURE"];
    const CONFLICT: (&'static str, &'static str) = ("CAPTURE", "CAPTURE_DECLINED");
    const BENCH_FIXTURE: Option<&'static str> = Some("capture");

    async fn start(env: &(impl Env + Sync), _root: &Path) -> Result<(Self, Variables), SimulatorError> {
        Ok((Key2PaySimulator { key: Secret::new(env.required("KEY2PAY_WEBHOOK_TOKEN")?) }, Vec::new()))
    }

    fn status_of(word: &str) -> Status {
        match word {
            "AUTHORIZATION" => Status::Processing,
            "CAPTURE" => Status::Completed,
            "CAPTURE_DECLINED" => Status::Failed,
            other => panic!("not a Key2Pay word: {other}"),
        }
    }

    fn new_reference(unique: u64) -> String {
        format!("track-{unique}")
    }

    fn webhook(&self, reference: &str, word: &str, now: OffsetDateTime) -> Inbound {
        let transaction = now.unix_timestamp_nanos().to_string();
        self.post(notification(reference, &transaction, word).as_bytes())
    }

    /// A capture with another payment's token.
    fn unverified(&self, reference: &str, now: OffsetDateTime) -> (Inbound, u16) {
        let mut request = self.webhook(reference, "CAPTURE", now);
        request.query.insert("token".into(), callback_token(&self.key, &format!("{reference}x")));
        (request, 401)
    }

    fn unknown_status(&self, reference: &str, now: OffsetDateTime) -> (Inbound, u16) {
        (self.webhook(reference, "VOID", now), 422)
    }

    fn with_body(&self, body: &[u8], _now: OffsetDateTime) -> Inbound {
        self.post(body)
    }

    fn fixtures(&self, _at: OffsetDateTime) -> Result<Vec<Fixture>, SimulatorError> {
        let ok = "Approved or completed available successfully";
        let good = |trackid: &str, transaction: &str, action: &str| {
            self.post(body(trackid, transaction, action, "Successful", "0", ok).as_bytes())
        };
        let failed = body("k2p-track-3", "1049768", "AUTHORIZATION", "Failed", "51", "Insufficient funds");
        // Code 9: the capture is still being processed (whatever `result` says): not a failure.
        let in_flight = body("k2p-track-4", "1049769", "CAPTURE", "Pending", "9", "Transaction in progress");
        // A decline whose amount cannot be read: applied all the same, the amount kept as received.
        let unreadable = body("k2p-track-5", "1049770", "CAPTURE", "Failed", "05", "Do not honor")
            .replace(r#""amount":"2000.00""#, r#""amount":"""#);
        let capture = |trackid: &str, transaction: &str| body(trackid, transaction, "CAPTURE", "Successful", "0", ok);
        Ok(vec![
            Fixture::stored(
                "authorization",
                good("k2p-track-1", "1049766", "AUTHORIZATION"),
                200,
                "k2p-track-1",
                Status::Processing,
            ),
            Fixture::stored(
                "capture",
                good("k2p-track-2", "1049767", "CAPTURE"),
                200,
                "k2p-track-2",
                Status::Completed,
            ),
            Fixture::stored("failed", self.post(failed.as_bytes()), 200, "k2p-track-3", Status::Failed),
            Fixture::stored("processing", self.post(in_flight.as_bytes()), 200, "k2p-track-4", Status::Processing),
            Fixture::stored(
                "declined-unreadable-amount",
                self.post(unreadable.as_bytes()),
                200,
                "k2p-track-5",
                Status::Failed,
            )
            .flagged(MismatchKind::Unreadable),
            Fixture::nothing(
                "bad-wrong-token",
                post(Some("not-the-token"), capture("k2p-track-b1", "1").as_bytes()),
                401,
            ),
            Fixture::nothing("bad-missing-token", post(None, capture("k2p-track-b2", "2").as_bytes()), 401),
            // The static token of old (the key itself), refused unless KEY2PAY_STATIC_TOKEN_UNTIL
            // is set and not yet past.
            Fixture::nothing(
                "bad-static-token",
                post(Some(self.key.expose()), capture("k2p-track-b5", "5").as_bytes()),
                401,
            ),
            // A forged capture with another payment's token.
            Fixture::nothing(
                "bad-other-payments-token",
                post(Some(&callback_token(&self.key, "k2p-track-1")), capture("k2p-track-b6", "6").as_bytes()),
                401,
            ),
            Fixture::nothing("bad-unknown-action", good("k2p-track-b3", "3", "REFUND"), 422),
            Fixture::nothing("bad-malformed-json", self.post(br#"{"trackid": "k2p-track-b4""#), 400),
        ])
    }
}
