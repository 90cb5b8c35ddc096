//! Pay3's side, simulated: `POST /webhooks/pay3` with `{"payload": "<JWT>"}`, the JWT
//! signed with the shared secret.
// Test tooling behind the `simulator` feature, never on Lambda: a panic fails a test.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::indexing_slicing)]

use std::path::Path;

use http::Method;
use jsonwebtoken::{Algorithm, EncodingKey, Header};
use provider_testkit::Simulator;
use provider_testkit::{Fixture, Load, SimulatorError, Variables};
use serde_json::{json, Value};
use shared::model::{MismatchKind, RefundStatus, Status};
use shared::pipeline::{parse_status, Inbound};
use shared::runtime::config::Env;
use time::OffsetDateTime;

use crate::stand_in::{self, StandIn};
use crate::{Pay3, Pay3Order, Pay3OrderStatus};

#[derive(Debug)]
pub struct Pay3Simulator {
    secret: String,
    /// Its API's stand-in; none when the environment points at a real API (`PAY3_API_URL`).
    stand_in: Option<StandIn>,
}

/// The `requestId` the simulated merchant created `order` with.
pub fn request_id(order: &str) -> String {
    format!("req-{order}")
}

/// `body` posted as Pay3 posts it.
fn post(body: &[u8]) -> Inbound {
    Inbound::new(Method::POST, body).with_header("content-type", "application/json")
}

/// The envelope around `jwt`.
fn envelope(jwt: &str) -> Inbound {
    post(json!({ "payload": jwt }).to_string().as_bytes())
}

/// The claims Pay3 sends for `order` (`orderType` CHECKOUT) at `status`.
fn claims(order: &str, status: &str, payment_status: Option<&str>, at: OffsetDateTime) -> Value {
    let error =
        if status == "FAILED" { json!({"code": 4001, "message": "Declined by payment partner"}) } else { Value::Null };
    json!({
        "data": { "orderType": "CHECKOUT", "orderId": order, "orderStatus": status, "paymentStatus": payment_status, "error": error },
        "requestId": request_id(order), "type": "pay3-sdk-transaction-status", "iat": at.unix_timestamp()
    })
}

fn sign(claims: &Value, algorithm: Algorithm, secret: &str) -> Result<String, jsonwebtoken::errors::Error> {
    jsonwebtoken::encode(&Header::new(algorithm), claims, &EncodingKey::from_secret(secret.as_bytes()))
}

impl Pay3Simulator {
    fn signed(&self, claims: &Value) -> Inbound {
        // Encoding a JSON value with HMAC cannot fail.
        envelope(&sign(claims, Algorithm::HS384, &self.secret).unwrap_or_default())
    }
}

impl Pay3Simulator {
    /// The stand-in of its API, which settles the truth the sync and the webhook ask for.
    pub fn stand_in(&self) -> &StandIn {
        self.stand_in.as_ref().expect("PAY3_API_URL is set: the simulator started no stand-in to settle")
    }
}

impl Simulator for Pay3Simulator {
    type Provider = Pay3;
    const LOAD: Load = Load {
        reference_weight: 20.0,
        pix_weight: 10.0,
        status_query: std::time::Duration::from_millis(200),
        charges_expire: false,
        refunds: true,
    };
    // Pay3 retries 10 times.
    const WEBHOOK_RETRIES: u32 = 10;
    const SEQUENCE: &'static [&'static str] = &["CREATED", "ORDER_STARTED", "ORDER_PAYMENT_PROCESSING", "COMPLETED"];
    const CONFLICT: (&'static str, &'static str) = ("COMPLETED", "FAILED");
    const AFTER_FINAL: &'static [&'static str] = &["REVIEW_CREATED", "UNDER_PAID", "REFUND_INITIATED", "REFUNDED"];
    const BENCH_FIXTURE: Option<&'static str> = Some("completed");

    /// Starts the order query's stand-in, unless `PAY3_API_URL` points elsewhere.
    async fn start(env: &(impl Env + Sync), _root: &Path) -> Result<(Self, Variables), SimulatorError> {
        let secret = env.required("PAY3_JWT_SECRET")?;
        if env.optional("PAY3_API_URL").is_some() {
            return Ok((Pay3Simulator { secret, stand_in: None }, Vec::new()));
        }
        let stand_in = stand_in::start(&env.required("PAY3_CLIENT_ID")?, &env.required("PAY3_ACCESS_TOKEN")?).await?;
        let url = stand_in.url.clone();
        Ok((Pay3Simulator { secret, stand_in: Some(stand_in) }, vec![("PAY3_API_URL", url)]))
    }

    /// Pay3's order query now answers `word` for the order `reference`.
    fn settle(&self, reference: &str, word: &str) {
        let stored = Self::stored_reference(reference);
        let order = stored.rsplit_once(':').map_or(stored.as_str(), |(order, _)| order);
        self.stand_in().set(&request_id(order), &stored, word);
    }

    /// A word after the final status says `created`, which moves no record.
    fn status_of(word: &str) -> Status {
        parse_status::<Pay3OrderStatus>(word)
            .map(|status| Status::try_from(Pay3Order { status, payment_status: None }).unwrap_or(Status::Created))
            .unwrap_or_else(|_| panic!("not a Pay3 order status: {word}"))
    }

    fn new_reference(unique: u64) -> String {
        format!("order-{unique}")
    }

    fn stored_reference(reference: &str) -> String {
        format!("{reference}:CHECKOUT")
    }

    fn webhook(&self, reference: &str, word: &str, now: OffsetDateTime) -> Inbound {
        self.signed(&claims(reference, word, None, now))
    }

    fn unverified(&self, reference: &str, now: OffsetDateTime) -> (Inbound, u16) {
        let forged = sign(&claims(reference, "COMPLETED", None, now), Algorithm::HS384, "not-the-secret");
        (envelope(&forged.unwrap_or_default()), 401)
    }

    fn unknown_status(&self, reference: &str, now: OffsetDateTime) -> (Inbound, u16) {
        (self.webhook(reference, "TELEPORTED", now), 422)
    }

    /// The envelope is not signed: it travels as it is.
    fn with_body(&self, body: &[u8], _now: OffsetDateTime) -> Inbound {
        post(body)
    }

    fn signed_content(&self, reference: &str, word: &str) -> Option<Vec<u8>> {
        Some(claims(reference, word, None, OffsetDateTime::UNIX_EPOCH).to_string().into_bytes())
    }

    /// Any bytes as the claims of a token with a valid HS384 signature.
    fn sign_content(&self, content: &[u8], _now: OffsetDateTime) -> Inbound {
        use base64::engine::general_purpose::URL_SAFE_NO_PAD;
        use base64::Engine;
        let input = format!(
            "{}.{}",
            URL_SAFE_NO_PAD.encode(br#"{"alg":"HS384","typ":"JWT"}"#),
            URL_SAFE_NO_PAD.encode(content)
        );
        let key = aws_lc_rs::hmac::Key::new(aws_lc_rs::hmac::HMAC_SHA384, self.secret.as_bytes());
        let signature = URL_SAFE_NO_PAD.encode(aws_lc_rs::hmac::sign(&key, input.as_bytes()));
        envelope(&format!("{input}.{signature}"))
    }

    fn fixtures(&self, at: OffsetDateTime) -> Result<Vec<Fixture>, SimulatorError> {
        let good = |order: &str, status: &str, payment: Option<&str>| self.signed(&claims(order, status, payment, at));
        let mut expired = claims("pay3-order-bad-4", "COMPLETED", None, at);
        expired["exp"] = json!(at.unix_timestamp() - 60);
        let valid = sign(&claims("pay3-order-bad-5", "COMPLETED", None, at), Algorithm::HS384, &self.secret)?;
        let forged = sign(&claims("pay3-order-bad-5", "FAILED", None, at), Algorithm::HS384, "another-secret")?;
        let tampered = {
            let (valid_parts, forged_parts): (Vec<&str>, Vec<&str>) =
                (valid.split('.').collect(), forged.split('.').collect());
            format!("{}.{}.{}", valid_parts[0], forged_parts[1], valid_parts[2])
        };
        // A payout (a withdrawal the user asked for): money out.
        let mut payout = claims("pay3-payout-1", "COMPLETED", Some("SUCCESS"), at);
        payout["data"]["orderType"] = json!("PAYOUT");
        let none_header = "eyJhbGciOiJub25lIiwidHlwIjoiSldUIn0"; // {"alg":"none","typ":"JWT"}
        let unsigned = format!("{none_header}.{}.", valid.split('.').nth(1).unwrap_or_default());
        let other_secret =
            sign(&claims("pay3-order-bad-1", "COMPLETED", None, at), Algorithm::HS384, "another-secret")?;
        let other_algorithm = sign(&claims("pay3-order-bad-2", "COMPLETED", None, at), Algorithm::HS256, &self.secret)?;
        Ok(vec![
            Fixture::stored(
                "created",
                good("pay3-order-1", "CREATED", None),
                200,
                "pay3-order-1:CHECKOUT",
                Status::Created,
            ),
            Fixture::stored(
                "order-started",
                good("pay3-order-2", "ORDER_STARTED", None),
                200,
                "pay3-order-2:CHECKOUT",
                Status::Pending,
            ),
            Fixture::stored(
                "order-payment-awaiting",
                good("pay3-order-3", "ORDER_PAYMENT_AWAITING", None),
                200,
                "pay3-order-3:CHECKOUT",
                Status::Pending,
            ),
            Fixture::stored(
                "order-payment-processing",
                good("pay3-order-4", "ORDER_PAYMENT_PROCESSING", None),
                200,
                "pay3-order-4:CHECKOUT",
                Status::Processing,
            ),
            Fixture::stored(
                "order-payment-initiated",
                good("pay3-order-5", "ORDER_PAYMENT_INITIATED", None),
                200,
                "pay3-order-5:CHECKOUT",
                Status::Processing,
            ),
            Fixture::stored(
                "completed",
                good("pay3-order-6", "COMPLETED", Some("SUCCESS")),
                200,
                "pay3-order-6:CHECKOUT",
                Status::Completed,
            ),
            Fixture::stored(
                "failed",
                good("pay3-order-7", "FAILED", Some("DECLINED")),
                200,
                "pay3-order-7:CHECKOUT",
                Status::Failed,
            ),
            Fixture::stored(
                "failed-canceled",
                good("pay3-order-8", "FAILED", Some("CANCELED")),
                200,
                "pay3-order-8:CHECKOUT",
                Status::Canceled,
            ),
            Fixture::stored(
                "abandoned",
                good("pay3-order-9", "ABANDONED", Some("MAX_RETRIES_REACHED")),
                200,
                "pay3-order-9:CHECKOUT",
                Status::Expired,
            ),
            Fixture::stored("payout-completed", self.signed(&payout), 200, "pay3-payout-1:PAYOUT", Status::Completed),
            // A refund heard before the final status it follows: kept on a new record.
            Fixture::stored(
                "refunded-after-final",
                good("pay3-order-10", "REFUNDED", None),
                200,
                "pay3-order-10:CHECKOUT",
                Status::Created,
            )
            .refunded(&[("pay3-order-10-refund", RefundStatus::Succeeded)]),
            Fixture::stored(
                "refund-initiated-after-final",
                good("pay3-order-11", "REFUND_INITIATED", None),
                200,
                "pay3-order-11:CHECKOUT",
                Status::Created,
            )
            .refunded(&[("pay3-order-11-refund", RefundStatus::Pending)]),
            Fixture::stored(
                "refund-failed-after-final",
                good("pay3-order-12", "REFUND_FAILED", None),
                200,
                "pay3-order-12:CHECKOUT",
                Status::Created,
            )
            .refunded(&[("pay3-order-12-refund", RefundStatus::Failed)]),
            Fixture::stored(
                "under-paid-after-final",
                good("pay3-order-13", "UNDER_PAID", None),
                200,
                "pay3-order-13:CHECKOUT",
                Status::Created,
            )
            .flagged(MismatchKind::Underpaid),
            Fixture::stored(
                "review-created-after-final",
                good("pay3-order-14", "REVIEW_CREATED", None),
                200,
                "pay3-order-14:CHECKOUT",
                Status::Created,
            ),
            Fixture::nothing("bad-signature", envelope(&other_secret), 401),
            Fixture::nothing("bad-algorithm", envelope(&other_algorithm), 401),
            Fixture::nothing("bad-alg-none", envelope(&unsigned), 401),
            Fixture::nothing("bad-expired", envelope(&sign(&expired, Algorithm::HS384, &self.secret)?), 401),
            Fixture::nothing("bad-tampered", envelope(&tampered), 401),
            Fixture::nothing("bad-unknown-status", good("pay3-order-bad-6", "TELEPORTED", None), 422),
            Fixture::nothing("bad-malformed-json", post(br#"{"payload": "#), 400),
        ])
    }
}
