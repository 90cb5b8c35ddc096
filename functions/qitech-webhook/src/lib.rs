//! QI Tech webhook, with QI Tech's webhook v2 authentication.
//!
//! Every request carries `AUTHORIZATION`: a JWT signed with ES512 by QI Tech's private
//! key, whose claims bind it to this request (`payload_md5` of the raw body, `method`,
//! `uri`, `timestamp`), and `API-CLIENT-KEY`: the merchant's client key. We handle
//! `baas.invoice.payment_instrument_entry` webhooks; other types are acknowledged and
//! change nothing. QI Tech waits 10 seconds for the answer, 200.

use std::time::Duration;

use aws_lc_rs::signature::{ParsedPublicKey, ECDSA_P521_SHA512_FIXED};
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine;
use http::StatusCode;
use md5::{Digest, Md5};
use rustls_pki_types::pem::PemObject;
use rustls_pki_types::SubjectPublicKeyInfoDer;
use serde::Deserialize;
use serde_json::value::RawValue;
use shared::model::{Direction, Observation, Status};
use shared::pipeline::{check_shared_secret, parse_json, parse_status, Inbound, Provider, WebhookError};
use shared::runtime::config::{ConfigError, Env, Secret, Setting};
use shared::runtime::SecretSpec;
use time::format_description::well_known::Rfc3339;
use time::OffsetDateTime;

pub mod signing;

#[cfg(feature = "simulator")]
pub mod simulator;

pub const METHOD: &str = "POST";
pub const PATH: &str = "/webhooks/qitech";
/// The webhook type this function acts on.
pub const PAYMENT_INSTRUMENT_ENTRY: &str = "baas.invoice.payment_instrument_entry";
/// How far the signed timestamp may be from our clock.
pub const MAX_CLOCK_SKEW: Duration = Duration::from_secs(5 * 60);

/// The webhook body. QI Tech adds fields at will: everything unknown is ignored.
#[derive(Debug, Deserialize)]
pub struct QiTechWebhook {
    pub webhook_type: String,
    #[serde(default)]
    pub webhook_datetime: Option<String>,
    /// Parsed only for the webhook type we handle.
    #[serde(default)]
    pub data: Option<Box<RawValue>>,
}

#[derive(Debug, Deserialize)]
pub struct QiTechPaymentInstrumentEntry {
    pub payment_instrument_entry_key: String,
    /// Kept as the JSON text QI Tech sent, so `150.00` stays `150.00`.
    #[serde(default)]
    pub payment_instrument_entry_amount: Option<Box<RawValue>>,
    pub payment_instrument_entry_status: String,
    #[serde(default)]
    pub payment_instrument_key: Option<String>,
    #[serde(default)]
    pub payment_instrument_entry_type: Option<String>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum QiTechEntryStatus {
    ProcessingConclusion,
    ProcessingCancellation,
    Concluded,
    Canceled,
}

impl From<QiTechEntryStatus> for Status {
    fn from(status: QiTechEntryStatus) -> Status {
        match status {
            QiTechEntryStatus::ProcessingConclusion => Status::Processing,
            QiTechEntryStatus::ProcessingCancellation => Status::Canceling,
            QiTechEntryStatus::Concluded => Status::Completed,
            QiTechEntryStatus::Canceled => Status::Canceled,
        }
    }
}

/// The claims of the `AUTHORIZATION` JWT.
#[derive(Debug, Deserialize)]
struct AuthClaims {
    payload_md5: String,
    timestamp: String,
    method: String,
    uri: String,
}

#[derive(Debug, Deserialize)]
struct JwsHeader {
    alg: String,
}

pub struct QiTech {
    /// Every key a signature may verify with (more than one while QI Tech changes keys).
    public_keys: Vec<ParsedPublicKey>,
    client_key: Secret,
    webhook_path: String,
}

impl std::fmt::Debug for QiTech {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("QiTech")
            .field("client_key", &self.client_key)
            .field("webhook_path", &self.webhook_path)
            .finish()
    }
}

/// The `payload_md5` claim for `body`: lowercase hex of its MD5, as QI Tech signs it.
pub fn payload_md5(body: &[u8]) -> String {
    hex::encode(Md5::digest(body))
}

/// Parses a PEM `PUBLIC KEY` (SPKI) holding a P-521 key. Literal `\n` sequences are
/// accepted for newlines, so the key fits in one environment variable.
pub fn parse_public_key(pem: &str) -> Result<ParsedPublicKey, String> {
    let pem = shared::runtime::config::multiline(pem);
    let der =
        SubjectPublicKeyInfoDer::from_pem_slice(pem.as_bytes()).map_err(|e| format!("not a PEM public key: {e}"))?;
    ParsedPublicKey::new(&ECDSA_P521_SHA512_FIXED, der.as_ref()).map_err(|e| format!("not a P-521 public key: {e}"))
}

/// Parses every PEM `PUBLIC KEY` in `pem` (one or more, as QI Tech's key list during a
/// key change): at least one, each a P-521 key.
pub fn parse_public_keys(pem: &str) -> Result<Vec<ParsedPublicKey>, String> {
    let pem = shared::runtime::config::multiline(pem);
    let keys = SubjectPublicKeyInfoDer::pem_slice_iter(pem.as_bytes())
        .map(|der| {
            let der = der.map_err(|e| format!("not a PEM public key: {e}"))?;
            ParsedPublicKey::new(&ECDSA_P521_SHA512_FIXED, der.as_ref())
                .map_err(|e| format!("not a P-521 public key: {e}"))
        })
        .collect::<Result<Vec<_>, _>>()?;
    match keys.len() {
        0 => Err("no PEM public key".into()),
        _ => Ok(keys),
    }
}

impl QiTech {
    pub fn new(public_keys: Vec<ParsedPublicKey>, client_key: Secret, webhook_path: impl Into<String>) -> Self {
        QiTech { public_keys, client_key, webhook_path: webhook_path.into() }
    }

    /// Webhook v2 authentication: the client key, then the ES512 JWT and every claim.
    fn verify(&self, request: &Inbound, now: OffsetDateTime) -> Result<(), WebhookError> {
        let unauthorized = |reason| WebhookError::Unauthorized { reason };
        let client_key = request.header("api-client-key");
        check_shared_secret(client_key, &self.client_key, "API-CLIENT-KEY missing", "API-CLIENT-KEY mismatch")?;
        let token = request
            .header("authorization")
            .and_then(|v| std::str::from_utf8(v).ok())
            .ok_or(unauthorized("AUTHORIZATION missing"))?
            .trim();
        let token = token.strip_prefix("Bearer ").unwrap_or(token);
        let (signing_input, signature) = token.rsplit_once('.').ok_or(unauthorized("JWT malformed"))?;
        let (header, claims) = signing_input.split_once('.').ok_or(unauthorized("JWT malformed"))?;
        let decode = |part: &str| URL_SAFE_NO_PAD.decode(part).map_err(|_| unauthorized("JWT malformed"));

        let header: JwsHeader = serde_json::from_slice(&decode(header)?).map_err(|_| unauthorized("JWT malformed"))?;
        if header.alg != "ES512" {
            return Err(unauthorized("JWT algorithm is not ES512"));
        }
        let signature = decode(signature)?;
        if !self.public_keys.iter().any(|key| key.verify_sig(signing_input.as_bytes(), &signature).is_ok()) {
            return Err(unauthorized("JWT signature invalid"));
        }
        let claims: AuthClaims =
            serde_json::from_slice(&decode(claims)?).map_err(|_| unauthorized("JWT claims malformed"))?;

        if !claims.payload_md5.eq_ignore_ascii_case(&payload_md5(&request.body)) {
            return Err(unauthorized("payload_md5 does not match the body"));
        }
        if !claims.method.eq_ignore_ascii_case(request.method.as_str()) || !claims.method.eq_ignore_ascii_case(METHOD) {
            return Err(unauthorized("method claim does not match"));
        }
        if claims.uri != self.webhook_path {
            return Err(unauthorized("uri claim does not match"));
        }
        let signed_at =
            OffsetDateTime::parse(&claims.timestamp, &Rfc3339).map_err(|_| unauthorized("timestamp malformed"))?;
        if (now - signed_at).unsigned_abs() > MAX_CLOCK_SKEW {
            return Err(unauthorized("timestamp outside the allowed window"));
        }
        Ok(())
    }
}

impl Provider for QiTech {
    const NAME: &'static str = "qitech";
    const ACK_STATUS: StatusCode = StatusCode::OK;
    const METHOD: &'static str = METHOD;
    const PATH: &'static str = PATH;
    const HAS_STATUS_API: bool = false;
    /// Its secret: the client key, and its public key(s): during a key change, both PEMs.
    const SECRET: SecretSpec =
        SecretSpec { arn: "QITECH_SECRET_ARN", keys: &["QITECH_API_CLIENT_KEY", "QITECH_PUBLIC_KEY"] };
    const SETTINGS: &'static [Setting] =
        &[Setting::optional("QITECH_WEBHOOK_PATH", Some(PATH), "the path QI Tech signs as uri")];
    /// Its `payment_instrument_entry_key`: a UUID (8-4-4-4-12 hexadecimal digits).
    fn check_reference(reference: &str) -> Result<(), WebhookError> {
        let format = |r: &str| {
            let groups: Vec<&str> = r.split('-').collect();
            groups.iter().map(|g| g.len()).eq([8, 4, 4, 4, 12])
                && groups.iter().all(|g| g.bytes().all(|b| b.is_ascii_hexdigit()))
        };
        shared::pipeline::reference_format(reference, format, "an entry key is a UUID")
    }

    /// Reads `QITECH_PUBLIC_KEY` (one PEM, or several one after the other), `QITECH_API_CLIENT_KEY` and `QITECH_WEBHOOK_PATH`
    /// (default `/webhooks/qitech`).
    fn from_env(env: &impl Env) -> Result<Self, ConfigError> {
        let public_keys = parse_public_keys(&env.required("QITECH_PUBLIC_KEY")?)
            .map_err(|reason| ConfigError::Invalid { name: "QITECH_PUBLIC_KEY", reason })?;
        let client_key = env.secret("QITECH_API_CLIENT_KEY")?;
        let path = env.optional("QITECH_WEBHOOK_PATH").unwrap_or_else(|| PATH.into());
        Ok(QiTech::new(public_keys, client_key, path))
    }

    type Verified = QiTechWebhook;

    async fn authenticate(&self, request: &Inbound, now: OffsetDateTime) -> Result<QiTechWebhook, WebhookError> {
        self.verify(request, now)?;
        parse_json(&request.body)
    }

    fn normalize(&self, webhook: QiTechWebhook) -> Result<Vec<Observation>, WebhookError> {
        if webhook.webhook_type != PAYMENT_INSTRUMENT_ENTRY {
            tracing::info!(provider = Self::NAME, webhook_type = %webhook.webhook_type, "webhook type not handled: acknowledged, nothing changed");
            return Ok(Vec::new());
        }
        let data = webhook.data.ok_or(WebhookError::InvalidField { field: "data", reason: "missing".into() })?;
        let entry: QiTechPaymentInstrumentEntry = parse_json(data.get().as_bytes())?;
        let status: QiTechEntryStatus = parse_status(&entry.payment_instrument_entry_status)?;
        let mut observation =
            Observation::new(entry.payment_instrument_entry_key, status.into(), entry.payment_instrument_entry_status);
        match entry.payment_instrument_entry_amount.as_deref() {
            Some(amount) => observation.set_amount_json(amount),
            // QI Tech reports the amount of every entry.
            None => observation.amount_missing = true,
        }
        observation.direction = entry.payment_instrument_entry_type.as_deref().and_then(direction);
        Ok(vec![observation])
    }
}

/// Which way an entry's money moves: a `withdrawal` is out; a `purchase` and a
/// `postpaid_card_issuance` (the issuance of a postpaid card, charged like a purchase; the
/// documentation lists both beside each other and nothing says money leaves) are in. A
/// type QI Tech adds later says nothing.
fn direction(entry_type: &str) -> Option<Direction> {
    match entry_type.to_ascii_lowercase().as_str() {
        "withdrawal" => Some(Direction::Out),
        "purchase" | "postpaid_card_issuance" => Some(Direction::In),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::signing::QiTechSigner;
    use super::*;

    const PRIVATE_KEY: &str = include_str!("../../../dev-keys/qitech-dev-private.pem");
    const PUBLIC_KEY: &str = include_str!("../../../dev-keys/qitech-dev-public.pem");
    const CLIENT_KEY: &str = "qitech-unit-test-client-key";

    fn now() -> OffsetDateTime {
        OffsetDateTime::from_unix_timestamp(1_795_000_000).expect("timestamp")
    }

    fn provider() -> QiTech {
        QiTech::new(parse_public_keys(PUBLIC_KEY).expect("public key"), Secret::new(CLIENT_KEY), PATH)
    }

    fn body(status: &str) -> String {
        format!(
            r#"{{"webhook_type":"baas.invoice.payment_instrument_entry","webhook_datetime":"2026-11-22T10:00:00.000Z",
            "data":{{"payment_instrument_key":"ecf87b4b-fa6e-49c0-a7f0-f2cad6b42d79",
            "payment_instrument_entry_key":"fd86d9b1-2a5e-4e03-9a59-a043c7632c97",
            "payment_instrument_entry_amount":150.00,"payment_instrument_entry_type":"purchase",
            "payment_instrument_entry_status":"{status}","brand_new_field":{{"x":1}}}}}}"#
        )
    }

    fn signed(body: &str, method: &str, uri: &str, at: OffsetDateTime) -> Inbound {
        let signer = QiTechSigner::from_pkcs8_pem(PRIVATE_KEY).expect("private key");
        let jwt = signer.sign(body.as_bytes(), method, uri, at);
        Inbound::new(http::Method::POST, body)
            .with_header("AUTHORIZATION", &jwt)
            .with_header("API-CLIENT-KEY", CLIENT_KEY)
    }

    /// Another P-521 public key, not the dev key's.
    const OTHER_PUBLIC_KEY: &str = "-----BEGIN PUBLIC KEY-----
MIGbMBAGByqGSM49AgEGBSuBBAAjA4GGAAQA5suVi1fx6BMdFU6WkiCbr5U8Lr0p
6zJyfSpzBwYz3hAZNvMQV54M35gHWDziStC98eHMWrN09Xk6ZJgVhGVhJMAB5JKg
kzIRyo6qGqUY+4GH5MVDJXduiNsgDBV5P8WUrYnJNaFoC/QSIcvvzP9tfl++Bjsi
DdKgznLNV739WnC7lJI=
-----END PUBLIC KEY-----
";

    /// While QI Tech changes keys, `QITECH_PUBLIC_KEY` holds both PEMs: a signature by
    /// either verifies; with only the other key, the dev key's signature does not.
    #[tokio::test]
    async fn the_public_key_may_be_a_list() {
        let both = format!("{OTHER_PUBLIC_KEY}{PUBLIC_KEY}");
        let env = [("QITECH_PUBLIC_KEY", both.as_str()), ("QITECH_API_CLIENT_KEY", CLIENT_KEY)];
        let listed = QiTech::from_env(&env).expect("two keys");
        assert_eq!(listed.public_keys.len(), 2);
        let request = signed(&body("concluded"), "POST", PATH, now());
        assert!(listed.receive(&request, now()).await.is_ok(), "signed by the second key of the list");
        let other = QiTech::new(parse_public_keys(OTHER_PUBLIC_KEY).expect("key"), Secret::new(CLIENT_KEY), PATH);
        let error = other.receive(&request, now()).await.expect_err("not its key");
        assert!(matches!(error, WebhookError::Unauthorized { reason: "JWT signature invalid" }), "{error:?}");
        for bad in ["", "not a pem", "-----BEGIN PUBLIC KEY-----\nAAAA\n-----END PUBLIC KEY-----"] {
            assert!(parse_public_keys(bad).is_err(), "{bad:?}");
        }
    }

    #[tokio::test]
    async fn maps_every_status_and_keeps_the_amount_exact() {
        let cases = [
            ("processing_conclusion", Status::Processing),
            ("processing_cancellation", Status::Canceling),
            ("concluded", Status::Completed),
            ("canceled", Status::Canceled),
        ];
        for (word, expected) in cases {
            let observations = provider().receive(&signed(&body(word), "POST", PATH, now()), now()).await.expect(word);
            let observation = &observations[0];
            assert_eq!(observation.status, expected);
            assert_eq!(observation.reference, "fd86d9b1-2a5e-4e03-9a59-a043c7632c97");
            assert_eq!(
                observation.amount.as_ref().map(shared::model::Amount::as_str),
                Some("150.00"),
                "no float round trip"
            );
            assert_eq!(observation.provider_status, word);
            assert_eq!(observation.direction, Some(Direction::In), "a purchase");
        }
        let withdrawal = body("concluded").replace(r#""purchase""#, r#""withdrawal""#);
        let observations = provider().receive(&signed(&withdrawal, "POST", PATH, now()), now()).await.expect("ok");
        assert_eq!(observations[0].direction, Some(Direction::Out), "a withdrawal is money out");
        // Any form of JSON number, read exactly: a verified outcome is never refused for it.
        let exponent = body("concluded").replace("150.00", "1.5E2");
        let observations = provider().receive(&signed(&exponent, "POST", PATH, now()), now()).await.expect("1.5E2");
        assert_eq!(observations[0].amount.as_ref().map(shared::model::Amount::as_str), Some("150"));
        assert!(!observations[0].amount_missing);
        let without = body("concluded").replace(r#""payment_instrument_entry_amount":150.00,"#, "");
        assert_ne!(without, body("concluded"));
        let observations = provider().receive(&signed(&without, "POST", PATH, now()), now()).await.expect("no amount");
        assert!(observations[0].amount_missing && observations[0].amount.is_none(), "applied, and marked");
    }

    #[tokio::test]
    async fn other_webhook_types_are_acknowledged_and_change_nothing() {
        let body = r#"{"webhook_type":"baas.account.balance","data":{"whatever":1}}"#;
        let observations = provider().receive(&signed(body, "POST", PATH, now()), now()).await.expect("ok");
        assert!(observations.is_empty());
    }

    #[tokio::test]
    async fn rejects_anything_not_bound_to_this_request() {
        let good = body("concluded");
        let mut tampered = signed(&good, "POST", PATH, now());
        tampered.body = good.replace("150.00", "15000.00").into_bytes();
        let mut wrong_client_key = signed(&good, "POST", PATH, now());
        wrong_client_key.headers.insert("api-client-key", http::HeaderValue::from_static("nope"));
        let mut missing_client_key = signed(&good, "POST", PATH, now());
        missing_client_key.headers.remove("api-client-key");
        let mut missing_jwt = signed(&good, "POST", PATH, now());
        missing_jwt.headers.remove("authorization");
        let mut bad_signature = signed(&good, "POST", PATH, now());
        let jwt = bad_signature.headers["authorization"].to_str().expect("ascii").to_owned();
        let flipped = format!("{}{}", &jwt[..jwt.len() - 2], if jwt.ends_with('A') { "BB" } else { "AA" });
        bad_signature.headers.insert("authorization", flipped.parse().expect("header"));
        let mut hs512 = signed(&good, "POST", PATH, now());
        let parts: Vec<&str> = jwt.split('.').collect();
        let hs_header = URL_SAFE_NO_PAD.encode(br#"{"alg":"HS512","typ":"JWT"}"#);
        hs512.headers.insert("authorization", format!("{hs_header}.{}.{}", parts[1], parts[2]).parse().expect("h"));
        let skew = time::Duration::seconds(301);

        let cases = [
            ("tampered body (MD5 mismatch)", tampered),
            ("wrong client key", wrong_client_key),
            ("missing client key", missing_client_key),
            ("missing JWT", missing_jwt),
            ("bad signature", bad_signature),
            ("other algorithm", hs512),
            ("wrong uri", signed(&good, "POST", "/webhooks/other", now())),
            ("wrong method", signed(&good, "PUT", PATH, now())),
            ("timestamp too old", signed(&good, "POST", PATH, now() - skew)),
            ("timestamp in the future", signed(&good, "POST", PATH, now() + skew)),
        ];
        for (name, request) in cases {
            let error = provider().receive(&request, now()).await.expect_err(name);
            assert_eq!(error.status().as_u16(), 401, "{name}: {error}");
        }
        // At the edge of the window it is still accepted.
        let edge = signed(&good, "POST", PATH, now() - time::Duration::seconds(299));
        assert!(provider().receive(&edge, now()).await.is_ok());
    }

    #[tokio::test]
    async fn signed_but_bad_bodies_are_4xx_and_an_unreadable_amount_is_kept() {
        let unknown = body("teleported");
        let error = provider().receive(&signed(&unknown, "POST", PATH, now()), now()).await.expect_err("unknown");
        assert_eq!(error.status().as_u16(), 422);
        let malformed = "{\"webhook_type\":";
        let error = provider().receive(&signed(malformed, "POST", PATH, now()), now()).await.expect_err("malformed");
        assert_eq!(error.status().as_u16(), 400);
        // An amount is informational: one that cannot be read is kept as received and the
        // verified outcome applied, never refused (QI Tech stops retrying a 4xx).
        let negative = body("concluded").replace("150.00", "-1");
        let observations = provider().receive(&signed(&negative, "POST", PATH, now()), now()).await.expect("applied");
        assert_eq!(observations[0].status, Status::Completed);
        assert_eq!((observations[0].amount.as_ref(), observations[0].unreadable_amount.as_deref()), (None, Some("-1")));
    }

    #[test]
    fn configuration_checks_the_key() {
        let env = [("QITECH_PUBLIC_KEY", "garbage"), ("QITECH_API_CLIENT_KEY", "k")];
        assert!(matches!(QiTech::from_env(&env), Err(ConfigError::Invalid { name: "QITECH_PUBLIC_KEY", .. })));
        let one_line = PUBLIC_KEY.trim().replace('\n', "\\n");
        let env = [("QITECH_PUBLIC_KEY", one_line.as_str()), ("QITECH_API_CLIENT_KEY", "k")];
        let qitech = QiTech::from_env(&env).expect("one-line PEM");
        assert_eq!(qitech.webhook_path, PATH);
        assert!(format!("{qitech:?}").contains("[redacted]"));
    }
}
