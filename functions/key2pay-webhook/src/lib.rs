//! Key2Pay (Philippine QR via InstaPay) webhook.
//!
//! Key2Pay POSTs a transaction notification to the callback URL the merchant gave with
//! the payment request: first `action: AUTHORIZATION`, then `action: CAPTURE`, each with
//! its own `transactionid`; `trackid` is the merchant's reference and the stable key.
//! No signature scheme is documented, so the callback URL carries a `token` query
//! parameter of its payment's own ([`callback_token`]), which the transactions API's
//! registration answers. The card number arrives masked; we store and log none of it.

use http::StatusCode;
use serde::Deserialize;
use serde_json::value::RawValue;
use shared::model::{Observation, Status};
use shared::pipeline::{parse_json, parse_status, Inbound, Provider, WebhookError};
use shared::runtime::config::{ConfigError, Env, Secret, Setting};
use shared::runtime::SecretSpec;
use time::format_description::well_known::Rfc3339;
use time::OffsetDateTime;

#[cfg(feature = "simulator")]
pub mod simulator;

pub const METHOD: &str = "POST";
pub const PATH: &str = "/webhooks/key2pay";

/// The notification body. Unknown fields (card, avs, descriptor…) are ignored.
#[derive(Debug, Deserialize)]
pub struct Key2PayNotification {
    pub trackid: String,
    pub action: String,
    pub result: String,
    /// `"0"` on success, `"9"` while processing, anything else a decline; accepted as a
    /// string or a number, with or without a currency prefix ([`Key2PayOutcome`]).
    pub responsecode: Box<RawValue>,
    #[serde(default)]
    pub responsedescription: Option<String>,
    #[serde(default)]
    pub amount: Option<Box<RawValue>>,
    /// ISO 4217 letters; anything else (a number, a longer name) is kept as received.
    #[serde(default)]
    pub currencycode: Option<Box<RawValue>>,
    #[serde(default)]
    pub merchantcode: Option<String>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum Key2PayAction {
    Authorization,
    Capture,
}

/// What Key2Pay's response code says, whatever the action: `0` approved (with `result:
/// Successful`), `9` processing (the payment is still in flight, whatever `result` says),
/// anything else a decline. A code may carry a currency prefix (`EGP9998`), which is not
/// part of the code. (Key2Pay's documentation; `9` is also ISO 8583's "in progress".)
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Key2PayOutcome {
    Approved,
    Processing,
    Declined,
}

/// A notification's status needs its context: the action, and what the response code
/// says. A successful authorization means money is moving; a successful capture
/// completes the payment; a code `9` leaves the payment in flight; a decline fails it.
/// An unknown action is `422 unsupported_value`.
impl TryFrom<&Key2PayNotification> for Status {
    type Error = WebhookError;

    fn try_from(notification: &Key2PayNotification) -> Result<Status, WebhookError> {
        let action: Key2PayAction = parse_status(&notification.action)?;
        Ok(match (action, notification.outcome()) {
            (Key2PayAction::Authorization, Key2PayOutcome::Approved) => Status::Processing,
            (Key2PayAction::Capture, Key2PayOutcome::Approved) => Status::Completed,
            (Key2PayAction::Authorization | Key2PayAction::Capture, Key2PayOutcome::Processing) => Status::Processing,
            (Key2PayAction::Authorization | Key2PayAction::Capture, Key2PayOutcome::Declined) => Status::Failed,
        })
    }
}

impl Key2PayNotification {
    /// The response code without quotes or a currency prefix (`"EGP9998"` → `9998`): three
    /// letters, as a currency code is; any other letters stay, and make it no code we know.
    fn code(&self) -> &str {
        let code = self.responsecode.get().trim_matches('"');
        match code.as_bytes() {
            [a, b, c, ..] if [a, b, c].iter().all(|l| l.is_ascii_alphabetic()) => &code[3..],
            _ => code,
        }
    }

    /// What the response code says ([`Key2PayOutcome`]); codes are compared as numbers, so
    /// `"00"` is `0` and `"09"` is `9`.
    pub fn outcome(&self) -> Key2PayOutcome {
        let code = self.code();
        let significant = code.trim_start_matches('0');
        let number = match (code.is_empty(), significant.is_empty()) {
            (true, _) => None,
            (false, true) => Some(0),
            // Digits only (`parse` would take a sign); too many for a u64 is no code we know.
            (false, false) if significant.bytes().all(|b| b.is_ascii_digit()) => significant.parse::<u64>().ok(),
            (false, false) => None,
        };
        match number {
            Some(9) => Key2PayOutcome::Processing,
            Some(0) if self.result.eq_ignore_ascii_case("Successful") => Key2PayOutcome::Approved,
            Some(_) | None => Key2PayOutcome::Declined,
        }
    }
}

/// `KEY2PAY_STATIC_TOKEN_UNTIL` (stack parameter `Key2PayStaticTokenUntil`): until when
/// the static token (the key itself) is still accepted, for moving an integration over.
pub const STATIC_TOKEN_UNTIL: Setting = Setting::optional(
    "KEY2PAY_STATIC_TOKEN_UNTIL",
    None,
    "until when (RFC 3339) a callback with the static token KEY2PAY_WEBHOOK_TOKEN is still accepted, for moving an integration over to per-payment tokens; empty: never",
);

#[derive(Debug, Clone)]
pub struct Key2Pay {
    /// The key of the per-payment callback tokens ([`callback_token`]).
    key: Secret,
    /// Until when the key itself, the static token of old, is accepted as a token.
    static_token_until: Option<OffsetDateTime>,
}

/// The callback token of the payment `trackid`: `hex(HMAC-SHA256(key, trackid))`. One
/// callback URL seen (in Key2Pay's logs, a proxy's) vouches for that payment only.
pub fn callback_token(key: &Secret, trackid: &str) -> String {
    let key = aws_lc_rs::hmac::Key::new(aws_lc_rs::hmac::HMAC_SHA256, key.expose().as_bytes());
    let tag = aws_lc_rs::hmac::sign(&key, trackid.as_bytes());
    hex::encode(tag.as_ref())
}

impl Key2Pay {
    /// Per-payment tokens only.
    pub fn new(key: Secret) -> Self {
        Key2Pay { key, static_token_until: None }
    }

    /// Also accepting the static token (the key itself) before `until`.
    pub fn with_static_token_until(self, until: Option<OffsetDateTime>) -> Self {
        Key2Pay { static_token_until: until, ..self }
    }

    /// The request's token is its payment's ([`callback_token`] of its own `trackid`), or
    /// the static one while [`STATIC_TOKEN_UNTIL`] lasts. Both compared in constant time.
    fn verify(&self, request: &Inbound, now: OffsetDateTime) -> Result<Key2PayNotification, WebhookError> {
        let Some(given) = request.query_parameter("token").map(str::as_bytes) else {
            return Err(WebhookError::Unauthorized { reason: "token query parameter missing" });
        };
        let notification: Key2PayNotification = parse_json(&request.body)?;
        if Secret::new(callback_token(&self.key, &notification.trackid)).matches(given) {
            return Ok(notification);
        }
        if self.static_token_until.is_some_and(|until| now < until) && self.key.matches(given) {
            tracing::warn!(
                provider = "key2pay",
                reference = %notification.trackid,
                "callback verified with the static token (KEY2PAY_STATIC_TOKEN_UNTIL)"
            );
            return Ok(notification);
        }
        Err(WebhookError::Unauthorized { reason: "token mismatch" })
    }
}

impl Provider for Key2Pay {
    const NAME: &'static str = "key2pay";
    const ACK_STATUS: StatusCode = StatusCode::OK;
    const METHOD: &'static str = METHOD;
    const PATH: &'static str = PATH;
    const HAS_STATUS_API: bool = false;
    /// Its secret: the callback URL's token (generated by the stack).
    const SECRET: SecretSpec = SecretSpec { arn: "KEY2PAY_SECRET_ARN", keys: &["KEY2PAY_WEBHOOK_TOKEN"] };
    /// Its `trackid`, chosen by the merchant: 1 to 100 letters, digits, `.`, `_` and `-`,
    /// starting with a letter or a digit.
    fn check_reference(reference: &str) -> Result<(), WebhookError> {
        let format = |r: &str| {
            r.len() <= 100
                && r.bytes().next().is_some_and(|b| b.is_ascii_alphanumeric())
                && r.bytes().all(|b| b.is_ascii_alphanumeric() || b"._-".contains(&b))
        };
        let described = "a trackid is 1 to 100 letters, digits, '.', '_' and '-', starting with a letter or a digit";
        shared::pipeline::reference_format(reference, format, described)
    }

    const SETTINGS: &'static [Setting] = &[STATIC_TOKEN_UNTIL];

    /// Reads `KEY2PAY_WEBHOOK_TOKEN` and [`STATIC_TOKEN_UNTIL`].
    fn from_env(env: &impl Env) -> Result<Self, ConfigError> {
        let until = match env.optional(STATIC_TOKEN_UNTIL.name) {
            None => None,
            Some(text) => Some(OffsetDateTime::parse(text.trim(), &Rfc3339).map_err(|error| ConfigError::Invalid {
                name: STATIC_TOKEN_UNTIL.name,
                reason: format!("not an RFC 3339 time: {error}"),
            })?),
        };
        Ok(Key2Pay::new(env.secret("KEY2PAY_WEBHOOK_TOKEN")?).with_static_token_until(until))
    }

    const CALLBACK_TOKEN: bool = true;

    fn callback_token(&self, reference: &str) -> Option<String> {
        Some(callback_token(&self.key, reference))
    }

    type Verified = Key2PayNotification;

    async fn authenticate(&self, request: &Inbound, now: OffsetDateTime) -> Result<Key2PayNotification, WebhookError> {
        self.verify(request, now)
    }

    fn normalize(&self, notification: Key2PayNotification) -> Result<Vec<Observation>, WebhookError> {
        let status = Status::try_from(&notification)?;
        let declined = notification.outcome() == Key2PayOutcome::Declined;
        let mut observation = Observation::new(notification.trackid.clone(), status, notification.action.clone());
        // Informational: one that cannot be read is kept as received, never refused.
        match notification.amount.as_deref() {
            Some(amount) => observation.set_amount_json(amount),
            // Key2Pay reports the amount of every notification.
            None => observation.amount_missing = true,
        }
        match notification.currencycode.as_deref().map(RawValue::get) {
            None | Some("null") => {}
            Some(code) => match serde_json::from_str::<String>(code) {
                Ok(text) => observation.set_currency(&text),
                Err(_) => observation.set_currency(code),
            },
        }
        if declined {
            observation.set_reason(notification.responsedescription);
        }
        if let Some(code) = notification.merchantcode.filter(|c| !c.is_empty()) {
            observation.details.insert("merchant_code".into(), code.chars().take(64).collect());
        }
        Ok(vec![observation])
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const KEY: &str = "key2pay-unit-test-token";
    /// `Test001`'s token, as Python's `hmac.new(KEY, b"Test001", "sha256").hexdigest()`
    /// writes it.
    const TOKEN: &str = "0cc61a2e4229deb932fcd4836c654b59f25068de63024b0233dff863a608700c";

    fn body(action: &str, result: &str, code: &str) -> String {
        format!(
            r#"{{"transactionid":"1049766","transactiondate":"2024-09-27 11:35:47Z","cardholder":"INSTAPAY",
            "merchantcustomerid":null,"trackid":"Test001","currencycode":"PHP","amount":"2000.00",
            "card":"20000000****0008","cardtype":"PHQR","action":"{action}","result":"{result}","authcode":"",
            "responsecode":{code},"error_code_tag":"","avs":"","descriptor":"test","message":null,
            "merchantcode":"INSTAPAYTEST001","responsedescription":"Insufficient funds"}}"#
        )
    }

    fn request(token: Option<&str>, body: &str) -> Inbound {
        let request = Inbound::new(http::Method::POST, body);
        match token {
            Some(token) => request.with_query("token", token),
            None => request,
        }
    }

    async fn receive(request: Inbound) -> Result<Vec<Observation>, WebhookError> {
        Key2Pay::new(Secret::new(KEY)).receive(&request, OffsetDateTime::UNIX_EPOCH).await
    }

    #[tokio::test]
    async fn maps_every_action_and_outcome() {
        let cases = [
            ("AUTHORIZATION", "Successful", r#""0""#, Status::Processing, None),
            ("CAPTURE", "Successful", r#""0""#, Status::Completed, None),
            ("CAPTURE", "Successful", "0", Status::Completed, None),
            ("AUTHORIZATION", "Failed", r#""51""#, Status::Failed, Some("Insufficient funds")),
            ("CAPTURE", "Successful", r#""05""#, Status::Failed, Some("Insufficient funds")),
            ("CAPTURE", "Declined", r#""0""#, Status::Failed, Some("Insufficient funds")),
            ("CAPTURE", "Successful", r#""00""#, Status::Completed, None),
            ("CAPTURE", "Successful", r#""PHP0""#, Status::Completed, None),
            // 9: still processing, whatever the result says; never a failure.
            ("AUTHORIZATION", "Successful", r#""9""#, Status::Processing, None),
            ("CAPTURE", "Pending", r#""9""#, Status::Processing, None),
            ("CAPTURE", "Failed", "9", Status::Processing, None),
            ("CAPTURE", "Declined", r#""EGP9""#, Status::Processing, None),
            ("CAPTURE", "Successful", r#""09""#, Status::Processing, None),
            // A prefixed decline is a decline, not a 9.
            ("CAPTURE", "Declined", r#""EGP9998""#, Status::Failed, Some("Insufficient funds")),
            ("CAPTURE", "Successful", r#""99""#, Status::Failed, Some("Insufficient funds")),
            ("CAPTURE", "Successful", r#""""#, Status::Failed, Some("Insufficient funds")),
            ("CAPTURE", "Successful", r#""EGP""#, Status::Failed, Some("Insufficient funds")),
            // Only a three-letter prefix is a currency's: other letters make no code we know.
            ("CAPTURE", "Pending", r#""E9""#, Status::Failed, Some("Insufficient funds")),
            ("CAPTURE", "Pending", r#""NULL9""#, Status::Failed, Some("Insufficient funds")),
            ("CAPTURE", "Pending", r#""php9""#, Status::Processing, None),
            ("CAPTURE", "Successful", r#""+0""#, Status::Failed, Some("Insufficient funds")),
            ("CAPTURE", "Successful", r#""0x0""#, Status::Failed, Some("Insufficient funds")),
            ("CAPTURE", "Successful", r#""000000000000000000000000000000""#, Status::Completed, None),
            (
                "CAPTURE",
                "Successful",
                r#""100000000000000000000000000000""#,
                Status::Failed,
                Some("Insufficient funds"),
            ),
        ];
        for (action, result, code, expected, reason) in cases {
            let observations = receive(request(Some(TOKEN), &body(action, result, code))).await.expect(action);
            let observation = &observations[0];
            assert_eq!(observation.status, expected, "{action} {result} {code}");
            assert_eq!(observation.reference, "Test001");
            assert_eq!(observation.provider_status, action);
            assert_eq!(observation.reason.as_deref(), reason);
            assert_eq!(observation.amount.as_ref().map(shared::model::Amount::as_str), Some("2000.00"));
            assert_eq!(observation.currency.as_deref(), Some("PHP"));
            assert_eq!(observation.details.get("merchant_code").map(String::as_str), Some("INSTAPAYTEST001"));
            assert!(!format!("{observation:?}").contains("0008"), "nothing of the card is kept");
        }
    }

    /// A verified outcome is never refused for its amount or currency: what cannot be read
    /// is kept as received and the status applied.
    #[tokio::test]
    async fn an_unreadable_amount_or_currency_is_kept_and_the_status_applied() {
        let ok = body("CAPTURE", "Declined", r#""05""#);
        for (name, body, amount, currency) in [
            ("empty amount", ok.replace(r#""2000.00""#, r#""""#), Some(r#""""#), None),
            ("comma amount", ok.replace(r#""2000.00""#, r#""2,000""#), Some(r#""2,000""#), None),
            ("long currency", ok.replace(r#""PHP""#, r#""PESO""#), None, Some("PESO")),
            ("numeric currency", ok.replace(r#""PHP""#, "608"), None, Some("608")),
        ] {
            let observations = receive(request(Some(TOKEN), &body)).await.expect(name);
            let observation = &observations[0];
            assert_eq!(observation.status, Status::Failed, "{name}");
            assert_eq!(observation.unreadable_amount.as_deref(), amount, "{name}");
            assert_eq!(observation.unreadable_currency.as_deref(), currency, "{name}");
            assert!(!observation.amount_missing, "{name}");
        }
        let without = ok.replace(r#""amount":"2000.00","#, "");
        assert_ne!(without, ok);
        let observations = receive(request(Some(TOKEN), &without)).await.expect("no amount");
        assert!(observations[0].amount_missing && observations[0].amount.is_none(), "applied, and marked");
    }

    #[tokio::test]
    async fn rejects_bad_requests() {
        let ok = body("CAPTURE", "Successful", r#""0""#);
        let cases = [
            ("missing token", request(None, &ok), 401),
            ("wrong token", request(Some(&TOKEN.replace('a', "b")), &ok), 401),
            ("the static token", request(Some(KEY), &ok), 401),
            ("another payment's token", request(Some(&callback_token(&Secret::new(KEY), "Test002")), &ok), 401),
            ("malformed", request(Some(TOKEN), "{"), 400),
            ("missing trackid", request(Some(TOKEN), r#"{"action":"CAPTURE","result":"x","responsecode":"0"}"#), 400),
            ("unknown action", request(Some(TOKEN), &body("REFUND", "Successful", r#""0""#)), 422),
        ];
        for (name, request, status) in cases {
            let error = receive(request).await.expect_err(name);
            assert_eq!(error.status().as_u16(), status, "{name}");
        }
    }

    #[test]
    fn a_token_is_its_payments_own() {
        let key = Secret::new(KEY);
        assert_eq!(callback_token(&key, "Test001"), TOKEN);
        assert_ne!(callback_token(&key, "Test002"), TOKEN);
        assert_ne!(callback_token(&Secret::new("another key"), "Test001"), TOKEN);
        let provider = Key2Pay::new(key);
        assert_eq!(Provider::callback_token(&provider, "Test001").as_deref(), Some(TOKEN));
    }

    /// The static token (the key itself) verifies only while KEY2PAY_STATIC_TOKEN_UNTIL
    /// lasts; a per-payment token always.
    #[tokio::test]
    async fn the_static_token_only_until_its_window_ends() {
        let until = time::macros::datetime!(2026-12-01 00:00 UTC);
        let env = [("KEY2PAY_WEBHOOK_TOKEN", KEY), ("KEY2PAY_STATIC_TOKEN_UNTIL", "2026-12-01T00:00:00Z")];
        let provider = Key2Pay::from_env(&env).expect("config");
        let ok = body("CAPTURE", "Successful", r#""0""#);
        let second = time::Duration::SECOND;
        for (token, at, verified) in [
            (KEY, until - second, true),
            (KEY, until, false),
            (TOKEN, until - second, true),
            (TOKEN, until + second, true),
        ] {
            let result = provider.receive(&request(Some(token), &ok), at).await;
            assert_eq!(result.is_ok(), verified, "{token} at {at}");
        }
        let without = [("KEY2PAY_WEBHOOK_TOKEN", KEY)];
        let provider = Key2Pay::from_env(&without).expect("config");
        assert!(provider.receive(&request(Some(KEY), &ok), until - second * 86_400).await.is_err(), "never without it");
        let bad = [("KEY2PAY_WEBHOOK_TOKEN", KEY), ("KEY2PAY_STATIC_TOKEN_UNTIL", "tomorrow")];
        let error = Key2Pay::from_env(&bad).expect_err("invalid");
        assert!(error.to_string().contains("KEY2PAY_STATIC_TOKEN_UNTIL"), "{error}");
    }
}
