//! Pay3 webhook.
//!
//! Pay3 POSTs `{"payload": "<JWT>"}`; the JWT, signed with the shared secret, carries
//! `data.orderType`, `data.orderId`, `data.orderStatus`, optional `data.paymentStatus`
//! and `data.error`, plus `requestId` and `type`. The algorithm is pinned by our
//! configuration (default HS384), never taken from the token. Pay3 expects 200.
//! The same `orderId` can carry a fiat and a crypto order: the reference is
//! `{orderId}:{orderType}`.

use http::StatusCode;
use jsonwebtoken::{Algorithm, DecodingKey, Validation};
use serde::Deserialize;
use shared::model::{Direction, Observation, RefundObservation, RefundStatus, Status};
use shared::pipeline::{parse_json, parse_status, Inbound, Provider, WebhookError};
use shared::runtime::config::{ConfigError, Env, Secret, Setting};
use shared::runtime::SecretSpec;
use time::OffsetDateTime;

#[cfg(feature = "simulator")]
pub mod simulator;
#[cfg(feature = "simulator")]
pub mod stand_in;
pub mod status;

pub use status::Pay3StatusApi;

pub const METHOD: &str = "POST";
pub const PATH: &str = "/webhooks/pay3";

/// The request body.
#[derive(Debug, Clone, Deserialize)]
pub struct Pay3Envelope {
    pub payload: String,
}

/// The verified JWT claims.
#[derive(Debug, Clone, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Pay3Claims {
    pub data: Pay3Data,
    #[serde(default)]
    pub request_id: Option<String>,
    #[serde(default, rename = "type")]
    pub kind: Option<String>,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Pay3Data {
    pub order_type: String,
    pub order_id: String,
    pub order_status: String,
    #[serde(default)]
    pub payment_status: Option<String>,
    #[serde(default)]
    pub error: Option<Pay3Error>,
}

#[derive(Debug, Clone, Deserialize)]
pub struct Pay3Error {
    #[serde(default)]
    pub message: Option<String>,
}

/// Pay3's order statuses, with the sub-statuses it can send after a final one.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum Pay3OrderStatus {
    Created,
    OrderStarted,
    OrderPaymentAwaiting,
    OrderPaymentProcessing,
    OrderPaymentInitiated,
    Completed,
    Failed,
    Abandoned,
    ReviewCreated,
    ReviewSubmitted,
    RefundInitiated,
    Refunded,
    RefundFailed,
    UnderPaid,
}

/// An order status with the context it needs: `FAILED` with payment status `CANCELED` is
/// a cancellation.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Pay3Order<'a> {
    pub status: Pay3OrderStatus,
    pub payment_status: Option<&'a str>,
}

/// A sub-status that follows a final status and never reopens the order: kept on the
/// record's `after_final`, with what it says of the money.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Pay3AfterFinal {
    /// `REVIEW_CREATED`, `REVIEW_SUBMITTED`: nothing more.
    Review,
    /// `REFUND_INITIATED` (pending), `REFUNDED` (succeeded), `REFUND_FAILED` (failed): the
    /// order's one refund, which Pay3 gives no id ([`refund_id`]).
    Refund(RefundStatus),
    /// `UNDER_PAID`: the payer sent less than asked, amounts or none.
    UnderPaid,
}

impl TryFrom<Pay3Order<'_>> for Status {
    type Error = Pay3AfterFinal;

    fn try_from(order: Pay3Order<'_>) -> Result<Status, Pay3AfterFinal> {
        match order.status {
            Pay3OrderStatus::Created => Ok(Status::Created),
            Pay3OrderStatus::OrderStarted | Pay3OrderStatus::OrderPaymentAwaiting => Ok(Status::Pending),
            Pay3OrderStatus::OrderPaymentProcessing | Pay3OrderStatus::OrderPaymentInitiated => Ok(Status::Processing),
            Pay3OrderStatus::Completed => Ok(Status::Completed),
            Pay3OrderStatus::Failed if order.payment_status == Some("CANCELED") => Ok(Status::Canceled),
            Pay3OrderStatus::Failed => Ok(Status::Failed),
            Pay3OrderStatus::Abandoned => Ok(Status::Expired),
            Pay3OrderStatus::ReviewCreated | Pay3OrderStatus::ReviewSubmitted => Err(Pay3AfterFinal::Review),
            Pay3OrderStatus::RefundInitiated => Err(Pay3AfterFinal::Refund(RefundStatus::Pending)),
            Pay3OrderStatus::Refunded => Err(Pay3AfterFinal::Refund(RefundStatus::Succeeded)),
            Pay3OrderStatus::RefundFailed => Err(Pay3AfterFinal::Refund(RefundStatus::Failed)),
            Pay3OrderStatus::UnderPaid => Err(Pay3AfterFinal::UnderPaid),
        }
    }
}

/// The id of an order's refund: Pay3 sends none, and an order has one refund at most.
pub fn refund_id(order_id: &str) -> String {
    format!("{order_id}-refund")
}

/// What Pay3's word `order` (written `word`) says about order `order_id`, whose reference
/// is `reference`: a status, or a word after the final status with its refund or
/// under-payment. The webhook and the order query both read a word this way.
pub(crate) fn observe(reference: String, order_id: &str, order: Pay3Order<'_>, word: &str) -> Observation {
    match Status::try_from(order) {
        Ok(status) => Observation::new(reference, status, word),
        Err(after) => {
            let mut observation = Observation::after_final(reference, word);
            match after {
                Pay3AfterFinal::Review => {}
                Pay3AfterFinal::Refund(status) => observation.add_refund(RefundObservation {
                    id: refund_id(order_id),
                    status,
                    provider_status: word.to_owned(),
                    amount: None,
                    currency: None,
                }),
                Pay3AfterFinal::UnderPaid => observation.underpaid = true,
            }
            observation
        }
    }
}

/// The JWT algorithms a shared secret can sign with.
fn algorithm(name: &str) -> Result<Algorithm, ConfigError> {
    match name {
        "HS256" => Ok(Algorithm::HS256),
        "HS384" => Ok(Algorithm::HS384),
        "HS512" => Ok(Algorithm::HS512),
        other => Err(ConfigError::Invalid {
            name: "PAY3_JWT_ALGORITHM",
            reason: format!("{other:?} is not one of HS256, HS384, HS512"),
        }),
    }
}

pub struct Pay3 {
    key: DecodingKey,
    validation: Validation,
}

impl std::fmt::Debug for Pay3 {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Pay3").field("key", &"[redacted]").field("algorithms", &self.validation.algorithms).finish()
    }
}

impl Pay3 {
    pub fn new(secret: &Secret, algorithm: Algorithm) -> Self {
        // Pinned algorithm; `exp` is checked by us against the given clock, when present.
        let mut validation = Validation::new(algorithm);
        validation.algorithms = vec![algorithm];
        validation.required_spec_claims.clear();
        validation.validate_exp = false;
        validation.validate_nbf = false;
        validation.validate_aud = false;
        Pay3 { key: DecodingKey::from_secret(secret.expose().as_bytes()), validation }
    }

    /// Verifies the token's signature (pinned algorithm) and expiry; returns its claims.
    fn verify(&self, token: &str, now: OffsetDateTime) -> Result<serde_json::Value, WebhookError> {
        let data = jsonwebtoken::decode::<serde_json::Value>(token, &self.key, &self.validation)
            .map_err(|_| WebhookError::Unauthorized { reason: "JWT signature, algorithm or format invalid" })?;
        match data.claims.get("exp") {
            None => {}
            Some(exp) => match exp.as_i64() {
                Some(exp) if exp > now.unix_timestamp() => {}
                Some(_) => return Err(WebhookError::Unauthorized { reason: "JWT expired" }),
                None => return Err(WebhookError::Unauthorized { reason: "JWT exp is not a number" }),
            },
        }
        Ok(data.claims)
    }
}

impl Provider for Pay3 {
    const NAME: &'static str = "pay3";
    const ACK_STATUS: StatusCode = StatusCode::OK;
    const METHOD: &'static str = METHOD;
    const PATH: &'static str = PATH;
    const HAS_STATUS_API: bool = true;
    /// Its secret: the webhook JWT's secret, and the order query's access token.
    const SECRET: SecretSpec = SecretSpec { arn: "PAY3_SECRET_ARN", keys: &["PAY3_JWT_SECRET", "PAY3_ACCESS_TOKEN"] };
    const SETTINGS: &'static [Setting] = &[Setting::optional(
        "PAY3_JWT_ALGORITHM",
        Some("HS384"),
        "the one JWT algorithm accepted: HS256, HS384 or HS512",
    )];
    const STATUS_API_SETTINGS: &'static [Setting] = &[
        Setting::optional("PAY3_API_URL", None, "Pay3's order query base URL; unset, Pay3 is not synced"),
        Setting::optional("PAY3_CLIENT_ID", None, "Pay3's client id (needed with PAY3_API_URL)"),
    ];
    /// `{orderId}:{orderType}`: an order id of 1 to 64 letters, digits, `.`, `_` and `-`,
    /// starting with a letter or a digit, and its type in capitals (`CHECKOUT`, `PAYOUT`,
    /// `CRYPTO`; a new one is accepted).
    fn check_reference(reference: &str) -> Result<(), WebhookError> {
        let format = |r: &str| {
            r.split_once(':').is_some_and(|(id, kind)| {
                (1..=64).contains(&id.len())
                    && id.bytes().next().is_some_and(|b| b.is_ascii_alphanumeric())
                    && id.bytes().all(|b| b.is_ascii_alphanumeric() || b"._-".contains(&b))
                    && (1..=32).contains(&kind.len())
                    && kind.bytes().all(|b| b.is_ascii_uppercase() || b == b'_')
            })
        };
        shared::pipeline::reference_format(reference, format, "a Pay3 reference is {orderId}:{orderType}")
    }

    /// Reads `PAY3_JWT_SECRET` and `PAY3_JWT_ALGORITHM` (default HS384).
    fn from_env(env: &impl Env) -> Result<Self, ConfigError> {
        let secret = env.secret("PAY3_JWT_SECRET")?;
        let algorithm = algorithm(&env.optional("PAY3_JWT_ALGORITHM").unwrap_or_else(|| "HS384".into()))?;
        Ok(Pay3::new(&secret, algorithm))
    }

    fn status_api(env: &impl Env) -> Result<Option<Box<dyn shared::pipeline::StatusSource>>, ConfigError> {
        Ok(Pay3StatusApi::from_env(env)?.map(|api| Box::new(api) as Box<dyn shared::pipeline::StatusSource>))
    }

    type Verified = Pay3Claims;

    /// The body is only an envelope: the JWT inside it is verified, and its claims are
    /// what is trusted.
    async fn authenticate(&self, request: &Inbound, now: OffsetDateTime) -> Result<Pay3Claims, WebhookError> {
        let envelope: Pay3Envelope = parse_json(&request.body)?;
        let claims = self.verify(&envelope.payload, now)?;
        serde_json::from_value(claims).map_err(WebhookError::MalformedJson)
    }

    fn normalize(&self, claims: Pay3Claims) -> Result<Vec<Observation>, WebhookError> {
        let data = claims.data;
        let reference = format!("{}:{}", data.order_id, data.order_type);
        let status: Pay3OrderStatus = parse_status(&data.order_status)?;
        let order = Pay3Order { status, payment_status: data.payment_status.as_deref() };
        let mut observation = observe(reference, &data.order_id, order, &data.order_status);
        observation.direction = direction(&data.order_type);
        observation.set_reason(data.error.and_then(|e| e.message));
        // The status sync's lookup key (Pay3's query is by requestId, not orderId).
        if let Some(request_id) = claims.request_id.filter(|id| !id.is_empty() && id.len() <= 100) {
            observation.details.insert(status::REQUEST_ID.to_owned(), request_id);
        }
        Ok(vec![observation])
    }
}

/// Which way an order's money moves: `PAYOUT` is a withdrawal (out); `CHECKOUT` (fiat) and
/// `CRYPTO` are payments (in). An order type Pay3 adds later says nothing.
fn direction(order_type: &str) -> Option<Direction> {
    match order_type.to_ascii_uppercase().as_str() {
        "PAYOUT" => Some(Direction::Out),
        "CHECKOUT" | "CRYPTO" => Some(Direction::In),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use jsonwebtoken::{EncodingKey, Header};
    use serde_json::json;

    const SECRET: &str = "pay3-unit-test-secret";

    fn now() -> OffsetDateTime {
        OffsetDateTime::from_unix_timestamp(1_795_000_000).expect("timestamp")
    }

    fn token(claims: &serde_json::Value, algorithm: Algorithm, secret: &str) -> String {
        jsonwebtoken::encode(&Header::new(algorithm), claims, &EncodingKey::from_secret(secret.as_bytes()))
            .expect("encode")
    }

    fn claims(status: &str, payment_status: Option<&str>) -> serde_json::Value {
        json!({
            "data": {
                "orderType": "CHECKOUT", "orderId": "ord_123", "orderStatus": status,
                "paymentStatus": payment_status, "error": {"code": 4001, "message": "Declined by bank"},
                "newField": true
            },
            "requestId": "req-1", "type": "pay3-sdk-transaction-status"
        })
    }

    fn request(payload: &str) -> Inbound {
        let body = json!({ "payload": payload }).to_string();
        Inbound::new(http::Method::POST, body)
    }

    async fn receive(payload: &str) -> Result<Vec<Observation>, WebhookError> {
        Pay3::new(&Secret::new(SECRET), Algorithm::HS384).receive(&request(payload), now()).await
    }

    #[tokio::test]
    async fn maps_every_order_status() {
        let cases = [
            ("CREATED", None, Some(Status::Created)),
            ("ORDER_STARTED", None, Some(Status::Pending)),
            ("ORDER_PAYMENT_AWAITING", None, Some(Status::Pending)),
            ("ORDER_PAYMENT_PROCESSING", None, Some(Status::Processing)),
            ("ORDER_PAYMENT_INITIATED", None, Some(Status::Processing)),
            ("COMPLETED", Some("SUCCESS"), Some(Status::Completed)),
            ("FAILED", Some("DECLINED"), Some(Status::Failed)),
            ("FAILED", None, Some(Status::Failed)),
            ("FAILED", Some("CANCELED"), Some(Status::Canceled)),
            ("ABANDONED", Some("MAX_RETRIES_REACHED"), Some(Status::Expired)),
        ];
        for (status, payment_status, expected) in cases {
            let jwt = token(&claims(status, payment_status), Algorithm::HS384, SECRET);
            let observations = receive(&jwt).await.expect(status);
            assert_eq!(observations.first().map(|o| o.status), expected, "{status} {payment_status:?}");
            if let Some(observation) = observations.first() {
                assert_eq!(observation.reference, "ord_123:CHECKOUT");
                assert_eq!(observation.provider_status, status);
                assert_eq!(observation.reason.as_deref(), Some("Declined by bank"));
                assert!(!observation.follows_final && observation.refunds.is_empty(), "{status}");
            }
        }
    }

    /// The words after a final status move no status (`created` creates a record only
    /// where none is) and are kept, with the order's one refund or the under-payment.
    #[tokio::test]
    async fn words_after_the_final_status_are_kept_with_their_money() {
        let refund = |status| Some((String::from("ord_123-refund"), status));
        let cases = [
            ("REVIEW_CREATED", None, false),
            ("REVIEW_SUBMITTED", None, false),
            ("REFUND_INITIATED", refund(RefundStatus::Pending), false),
            ("REFUNDED", refund(RefundStatus::Succeeded), false),
            ("REFUND_FAILED", refund(RefundStatus::Failed), false),
            ("UNDER_PAID", None, true),
        ];
        for (word, refund, underpaid) in cases {
            let jwt = token(&claims(word, None), Algorithm::HS384, SECRET);
            let observations = receive(&jwt).await.expect(word);
            let [observation] = observations.as_slice() else { panic!("{word}: {observations:?}") };
            assert_eq!((observation.status, observation.follows_final), (Status::Created, true), "{word}");
            assert_eq!(observation.provider_status, word);
            let refunds: Vec<_> = observation.refunds.iter().map(|r| (r.id.clone(), r.status)).collect();
            assert_eq!(refunds, refund.into_iter().collect::<Vec<_>>(), "{word}");
            assert!(observation.refunds.iter().all(|r| r.provider_status == word && r.amount.is_none()));
            assert_eq!(observation.underpaid, underpaid, "{word}");
        }
    }

    #[tokio::test]
    async fn fiat_and_crypto_orders_are_separate_transactions() {
        let mut crypto = claims("COMPLETED", None);
        crypto["data"]["orderType"] = json!("CRYPTO");
        let observations = receive(&token(&crypto, Algorithm::HS384, SECRET)).await.expect("accepted");
        assert_eq!(observations[0].reference, "ord_123:CRYPTO");
        assert_eq!(observations[0].direction, Some(Direction::In));
    }

    #[tokio::test]
    async fn a_payout_is_money_out() {
        for (order_type, direction) in [
            ("PAYOUT", Some(Direction::Out)),
            ("payout", Some(Direction::Out)),
            ("CHECKOUT", Some(Direction::In)),
            ("REBATE", None),
        ] {
            let mut payout = claims("COMPLETED", None);
            payout["data"]["orderType"] = json!(order_type);
            let observations = receive(&token(&payout, Algorithm::HS384, SECRET)).await.expect(order_type);
            assert_eq!(observations[0].direction, direction, "{order_type}");
        }
    }

    #[tokio::test]
    async fn rejects_what_is_not_signed_by_the_pinned_algorithm_and_secret() {
        let good = claims("COMPLETED", None);
        let mut expired = good.clone();
        expired["exp"] = json!(now().unix_timestamp() - 1);
        let mut string_exp = good.clone();
        string_exp["exp"] = json!("tomorrow");
        let unsigned = {
            let token = token(&good, Algorithm::HS384, SECRET);
            let mut parts: Vec<&str> = token.split('.').collect();
            // {"alg":"none","typ":"JWT"}
            parts[0] = "eyJhbGciOiJub25lIiwidHlwIjoiSldUIn0";
            format!("{}.{}.", parts[0], parts[1])
        };
        let tampered = {
            let token = token(&good, Algorithm::HS384, SECRET);
            let mut parts: Vec<String> = token.split('.').map(str::to_owned).collect();
            let other = token_payload(&claims("FAILED", None));
            parts[1] = other;
            parts.join(".")
        };
        let cases = [
            ("wrong secret", token(&good, Algorithm::HS384, "another-secret")),
            ("HS256 instead of HS384", token(&good, Algorithm::HS256, SECRET)),
            ("HS512 instead of HS384", token(&good, Algorithm::HS512, SECRET)),
            ("alg none", unsigned),
            ("tampered claims", tampered),
            ("expired", token(&expired, Algorithm::HS384, SECRET)),
            ("exp not a number", token(&string_exp, Algorithm::HS384, SECRET)),
            ("not a JWT", "not-a-jwt".to_owned()),
        ];
        for (name, jwt) in cases {
            let error = receive(&jwt).await.expect_err(name);
            assert_eq!(error.status().as_u16(), 401, "{name}");
        }
        let mut future = good.clone();
        future["exp"] = json!(now().unix_timestamp() + 60);
        assert!(receive(&token(&future, Algorithm::HS384, SECRET)).await.is_ok(), "unexpired exp is accepted");
    }

    fn token_payload(claims: &serde_json::Value) -> String {
        token(claims, Algorithm::HS384, SECRET).split('.').nth(1).expect("payload").to_owned()
    }

    #[tokio::test]
    async fn signed_but_malformed_or_unknown_is_4xx() {
        let unknown = token(&claims("TELEPORTED", None), Algorithm::HS384, SECRET);
        assert_eq!(receive(&unknown).await.expect_err("unknown").status().as_u16(), 422);
        let shapeless = token(&json!({"data": {"orderId": 5}}), Algorithm::HS384, SECRET);
        assert_eq!(receive(&shapeless).await.expect_err("shape").status().as_u16(), 400);
        let provider = Pay3::new(&Secret::new(SECRET), Algorithm::HS384);
        let no_payload = Inbound::new(http::Method::POST, r#"{"data":{}}"#);
        assert_eq!(provider.receive(&no_payload, now()).await.expect_err("no payload").status().as_u16(), 400);
    }

    #[test]
    fn configuration_pins_one_of_the_hmac_algorithms() {
        let pay3 = Pay3::from_env(&[("PAY3_JWT_SECRET", "s")]).expect("default");
        assert_eq!(pay3.validation.algorithms, [Algorithm::HS384]);
        let pay3 = Pay3::from_env(&[("PAY3_JWT_SECRET", "s"), ("PAY3_JWT_ALGORITHM", "HS512")]).expect("HS512");
        assert_eq!(pay3.validation.algorithms, [Algorithm::HS512]);
        let error = Pay3::from_env(&[("PAY3_JWT_SECRET", "s"), ("PAY3_JWT_ALGORITHM", "RS256")]).expect_err("RS256");
        assert!(matches!(error, ConfigError::Invalid { name: "PAY3_JWT_ALGORITHM", .. }));
        assert_eq!(Pay3::from_env(&[("X", "y")]).expect_err("missing"), ConfigError::Missing("PAY3_JWT_SECRET"));
        let pay3 = Pay3::from_env(&[("PAY3_JWT_SECRET", "very-distinct-secret")]).expect("config");
        let debug = format!("{pay3:?}");
        assert!(debug.contains("[redacted]") && !debug.contains("very-distinct-secret"), "{debug}");
    }
}
