//! AZQR (Azerbaijan multibank QR API) status webhook.
//!
//! AZQR calls `PUT {webhook_url}/qr/{rrn}/status` with the merchant's key in the `apiKey`
//! header (its only proof of origin: there is no signature) and a JSON body
//! `{"status": "...", "description": "..."}`. It expects `204 No Content`.
//! `read`, `paid` and `canceled` are informational; `expired`, `incompleted` and
//! `completed` end the transaction.

use http::StatusCode;
use serde::Deserialize;
use shared::model::{Observation, Status};
use shared::pipeline::{check_shared_secret, parse_json, parse_status, Inbound, Provider, WebhookError};
use shared::runtime::config::{ConfigError, Env, Secret, Setting};
use shared::runtime::SecretSpec;
use time::OffsetDateTime;

#[cfg(feature = "simulator")]
pub mod simulator;
#[cfg(feature = "simulator")]
pub mod stand_in;
pub mod status;

pub use status::{AzqrQueryStatus, AzqrStatusApi};

/// The route, as in template.yaml.
pub const METHOD: &str = "PUT";
pub const PATH: &str = "/webhooks/azqr/qr/{rrn}/status";

/// The body AZQR sends.
#[derive(Debug, Clone, Deserialize)]
pub struct AzqrStatusUpdate {
    pub status: String,
    #[serde(default)]
    pub description: Option<String>,
}

/// AZQR's status words.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum AzqrStatus {
    Read,
    Paid,
    Canceled,
    Expired,
    Incompleted,
    Completed,
}

impl From<AzqrStatus> for Status {
    fn from(status: AzqrStatus) -> Status {
        match status {
            AzqrStatus::Read => Status::Pending,
            AzqrStatus::Paid => Status::Processing,
            // Informational per AZQR: the payer canceled, the outcome (expired…) still follows.
            AzqrStatus::Canceled => Status::Canceling,
            AzqrStatus::Expired => Status::Expired,
            AzqrStatus::Incompleted => Status::Failed,
            AzqrStatus::Completed => Status::Completed,
        }
    }
}

impl AzqrStatus {
    /// What AZQR recommends the merchant shows the payer on this status (its integration
    /// guide, in Azerbaijani); `incompleted` names AZQR's `description`.
    pub fn customer_message(self, description: &str) -> String {
        match self {
            AzqrStatus::Read => "QR code oxuduldu. Zəhmət olmasa ödənişi təsdiqləyin".to_owned(),
            AzqrStatus::Paid => "Ödənişi təsdiq etdiniz. Zəhmət olmasa gözləyin".to_owned(),
            AzqrStatus::Canceled => "Ödənişdən imtina etdiniz".to_owned(),
            AzqrStatus::Expired => {
                "QR code üzrə təyin olunmuş vaxt başa çatmışdır. Zəhmət olmasa yenidən cəhd edin".to_owned()
            }
            AzqrStatus::Incompleted => format!(
                "Əməliyyatınız “{}” səbəbdən uğursuz olmuşdur. Zəhmət olmasa yenidən cəhd edin",
                description.trim()
            ),
            AzqrStatus::Completed => "Əməliyyatınız uğurla başa çatmışdır".to_owned(),
        }
    }
}

#[derive(Debug, Clone)]
pub struct Azqr {
    api_key: Secret,
}

impl Azqr {
    pub fn new(api_key: Secret) -> Self {
        Azqr { api_key }
    }

    fn verify(&self, request: &Inbound) -> Result<(), WebhookError> {
        check_shared_secret(request.header("apikey"), &self.api_key, "apiKey header missing", "apiKey mismatch")
    }
}

fn is_rrn(rrn: &str) -> bool {
    rrn.len() == 12 && rrn.bytes().all(|b| b.is_ascii_digit())
}

/// The retrieval reference number from the path: exactly 12 digits.
fn rrn(request: &Inbound) -> Result<String, WebhookError> {
    let rrn = request.path_parameter("rrn").unwrap_or_default();
    if is_rrn(rrn) {
        Ok(rrn.to_owned())
    } else {
        Err(WebhookError::InvalidField { field: "rrn", reason: "must be exactly 12 digits".into() })
    }
}

/// A status update whose `apiKey` matched: the transaction's rrn and what AZQR says.
#[derive(Debug, Clone)]
pub struct AzqrVerified {
    pub rrn: String,
    pub update: AzqrStatusUpdate,
}

impl Provider for Azqr {
    const NAME: &'static str = "azqr";
    const ACK_STATUS: StatusCode = StatusCode::NO_CONTENT;
    const METHOD: &'static str = METHOD;
    const PATH: &'static str = PATH;
    const HAS_STATUS_API: bool = true;
    /// Its secret: its `apiKey`, for the webhook and the status API.
    const SECRET: SecretSpec = SecretSpec { arn: "AZQR_SECRET_ARN", keys: &["AZQR_API_KEY"] };
    const STATUS_API_SETTINGS: &'static [Setting] =
        &[Setting::optional("AZQR_API_URL", None, "AZQR's API base URL; unset, AZQR is not synced")];
    /// The retrieval reference number: exactly 12 digits.
    fn check_reference(reference: &str) -> Result<(), WebhookError> {
        shared::pipeline::reference_format(reference, is_rrn, "an rrn is exactly 12 digits")
    }

    /// Reads `AZQR_API_KEY`.
    fn from_env(env: &impl Env) -> Result<Self, ConfigError> {
        Ok(Azqr::new(env.secret("AZQR_API_KEY")?))
    }

    fn status_api(env: &impl Env) -> Result<Option<Box<dyn shared::pipeline::StatusSource>>, ConfigError> {
        Ok(AzqrStatusApi::from_env(env)?.map(|api| Box::new(api) as Box<dyn shared::pipeline::StatusSource>))
    }
    type Verified = AzqrVerified;

    async fn authenticate(&self, request: &Inbound, _now: OffsetDateTime) -> Result<AzqrVerified, WebhookError> {
        self.verify(request)?;
        Ok(AzqrVerified { rrn: rrn(request)?, update: parse_json(&request.body)? })
    }

    fn normalize(&self, verified: AzqrVerified) -> Result<Vec<Observation>, WebhookError> {
        let AzqrVerified { rrn, update } = verified;
        let status: AzqrStatus = parse_status(&update.status)?;
        let mut observation = Observation::new(rrn, status.into(), update.status);
        let description = update.description.unwrap_or_default();
        observation.customer_message = Some(status.customer_message(&description));
        if status == AzqrStatus::Incompleted {
            observation.set_reason(Some(description));
        }
        Ok(vec![observation])
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const KEY: &str = "test-key";

    fn request(rrn: &str, api_key: Option<&str>, body: &str) -> Inbound {
        let request = Inbound::new(http::Method::PUT, body).with_path_parameter("rrn", rrn);
        match api_key {
            Some(key) => request.with_header("apiKey", key),
            None => request,
        }
    }

    async fn receive(request: Inbound) -> Result<Vec<Observation>, WebhookError> {
        Azqr::new(Secret::new(KEY)).receive(&request, OffsetDateTime::UNIX_EPOCH).await
    }

    #[tokio::test]
    async fn maps_every_status() {
        let cases = [
            ("read", Status::Pending),
            ("paid", Status::Processing),
            ("canceled", Status::Canceling),
            ("expired", Status::Expired),
            ("incompleted", Status::Failed),
            ("completed", Status::Completed),
        ];
        for (word, expected) in cases {
            let body = format!(r#"{{"status":"{word}","description":"AM04 InsufficientFunds"}}"#);
            let observations = receive(request("123456789012", Some(KEY), &body)).await.expect(word);
            assert_eq!(observations.len(), 1);
            let observation = &observations[0];
            assert_eq!((observation.reference.as_str(), observation.status), ("123456789012", expected));
            assert_eq!(observation.provider_status, word);
            // Only a failure carries its description as the reason.
            let reason = (word == "incompleted").then(|| "AM04 InsufficientFunds".to_owned());
            assert_eq!(observation.reason, reason, "{word}");
        }
    }

    /// The texts of AZQR's integration guide (seed 000), one per status.
    #[tokio::test]
    async fn carries_the_customer_message_azqr_recommends() {
        let cases = [
            ("read", "QR code oxuduldu. Zəhmət olmasa ödənişi təsdiqləyin"),
            ("paid", "Ödənişi təsdiq etdiniz. Zəhmət olmasa gözləyin"),
            ("canceled", "Ödənişdən imtina etdiniz"),
            ("expired", "QR code üzrə təyin olunmuş vaxt başa çatmışdır. Zəhmət olmasa yenidən cəhd edin"),
            (
                "incompleted",
                "Əməliyyatınız “AM04 InsufficientFunds” səbəbdən uğursuz olmuşdur. Zəhmət olmasa yenidən cəhd edin",
            ),
            ("completed", "Əməliyyatınız uğurla başa çatmışdır"),
        ];
        for (word, message) in cases {
            let body = format!(r#"{{"status":"{word}","description":"AM04 InsufficientFunds"}}"#);
            let observations = receive(request("123456789012", Some(KEY), &body)).await.expect(word);
            assert_eq!(observations[0].customer_message.as_deref(), Some(message), "{word}");
        }
    }

    #[tokio::test]
    async fn tolerates_unknown_fields_and_missing_description() {
        let body = r#"{"status":"completed","extra":{"nested":true}}"#;
        let observations = receive(request("000000000001", Some(KEY), body)).await.expect("accepted");
        assert_eq!(observations[0].status, Status::Completed);
    }

    #[tokio::test]
    async fn rejects_bad_requests_with_their_codes() {
        let ok = r#"{"status":"completed"}"#;
        let cases = [
            (request("123456789012", None, ok), 401),
            (request("123456789012", Some("wrong"), ok), 401),
            (request("123456789012", Some(""), ok), 401),
            (request("12345678901", Some(KEY), ok), 400),
            (request("1234567890123", Some(KEY), ok), 400),
            (request("12345678901a", Some(KEY), ok), 400),
            (request("123456789012", Some(KEY), "{not json"), 400),
            (request("123456789012", Some(KEY), r#"{"status": 7}"#), 400),
            (request("123456789012", Some(KEY), r#"{"description":"no status"}"#), 400),
            (request("123456789012", Some(KEY), r#"{"status":"refunded"}"#), 422),
            (request("123456789012", Some(KEY), r#"{"status":"COMPLETED"}"#), 422),
        ];
        for (request, status) in cases {
            let error = receive(request).await.expect_err("rejected");
            assert_eq!(error.status().as_u16(), status, "{error}");
        }
    }

    #[tokio::test]
    async fn verifies_the_key_before_reading_anything_else() {
        // A bad rrn and a bad body with a wrong key: the answer is 401, not 400.
        let error = receive(request("bad", Some("wrong"), "{")).await.expect_err("rejected");
        assert_eq!(error.status().as_u16(), 401);
    }

    #[test]
    fn config_names_the_missing_variable() {
        let error = Azqr::from_env(&[("OTHER", "x")]).expect_err("missing");
        assert_eq!(error, ConfigError::Missing("AZQR_API_KEY"));
    }
}
