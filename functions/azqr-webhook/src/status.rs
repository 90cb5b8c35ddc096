//! AZQR's status query, for the status sync: `GET {AZQR_API_URL}/qr/{rrn}/status` with
//! the merchant's key in the `apiKey` header, answering `{"status", "description"}`.

use serde::Deserialize;
use shared::model::{Observation, Status, TransactionRecord};
use shared::pipeline::{parse_status, Provider, StatusFuture, SyncError, CONNECT_TIMEOUT, REQUEST_TIMEOUT};
use shared::runtime::config::{ConfigError, Env, Secret};
use time::OffsetDateTime;

use crate::{Azqr, AzqrStatus};

/// The status words of AZQR's query (`inprogress` where the webhook says `read` or `paid`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum AzqrQueryStatus {
    Inprogress,
    Expired,
    Canceled,
    Completed,
    Incompleted,
}

impl From<AzqrQueryStatus> for Status {
    fn from(status: AzqrQueryStatus) -> Status {
        match status {
            AzqrQueryStatus::Inprogress => Status::Processing,
            AzqrQueryStatus::Expired => AzqrStatus::Expired.into(),
            AzqrQueryStatus::Canceled => AzqrStatus::Canceled.into(),
            AzqrQueryStatus::Completed => AzqrStatus::Completed.into(),
            AzqrQueryStatus::Incompleted => AzqrStatus::Incompleted.into(),
        }
    }
}

#[derive(Debug, Deserialize)]
struct AzqrQueryAnswer {
    status: String,
    #[serde(default)]
    description: Option<String>,
}

#[derive(Debug)]
pub struct AzqrStatusApi {
    http: reqwest::Client,
    api_url: String,
    api_key: Secret,
}

impl AzqrStatusApi {
    /// `AZQR_API_URL` (unset: no sync for AZQR) and `AZQR_API_KEY`.
    pub fn from_env(env: &impl Env) -> Result<Option<Self>, ConfigError> {
        let Some(api_url) = shared::runtime::config::api_url(env, "AZQR_API_URL")? else {
            return Ok(None);
        };
        let http = reqwest::Client::builder()
            .timeout(REQUEST_TIMEOUT)
            .connect_timeout(CONNECT_TIMEOUT)
            .pool_max_idle_per_host(shared::pipeline::IDLE_CONNECTIONS)
            .redirect(reqwest::redirect::Policy::none())
            .build()
            .map_err(|e| ConfigError::Invalid { name: "AZQR_API_URL", reason: format!("HTTP client: {e}") })?;
        Ok(Some(AzqrStatusApi { http, api_url, api_key: env.secret("AZQR_API_KEY")? }))
    }

    async fn ask(&self, rrn: &str) -> Result<Option<Observation>, SyncError> {
        let response = self
            .http
            .get(format!("{}/qr/{}/status", self.api_url, shared::pipeline::path_segment(rrn)))
            .header("apiKey", self.api_key.expose())
            .send()
            .await
            .map_err(SyncError::new)?;
        match response.status().as_u16() {
            200 => {}
            404 => return Ok(None),
            status => return Err(SyncError::status("AZQR", status)),
        }
        let answer: AzqrQueryAnswer = response.json().await.map_err(SyncError::transaction)?;
        let Ok(status) = parse_status::<AzqrQueryStatus>(&answer.status) else {
            tracing::warn!(provider = Azqr::NAME, rrn, provider_status = %answer.status, "unknown status from AZQR's query: nothing applied");
            return Ok(None);
        };
        let mut observation = Observation::new(rrn, status.into(), answer.status);
        let description = answer.description.unwrap_or_default();
        // `inprogress` has no text of its own: the record keeps the last one.
        observation.customer_message = match status {
            AzqrQueryStatus::Inprogress => None,
            AzqrQueryStatus::Expired => Some(AzqrStatus::Expired.customer_message(&description)),
            AzqrQueryStatus::Canceled => Some(AzqrStatus::Canceled.customer_message(&description)),
            AzqrQueryStatus::Completed => Some(AzqrStatus::Completed.customer_message(&description)),
            AzqrQueryStatus::Incompleted => Some(AzqrStatus::Incompleted.customer_message(&description)),
        };
        if observation.status == Status::Failed {
            observation.set_reason(Some(description));
        }
        Ok(Some(observation))
    }
}

impl shared::pipeline::StatusSource for AzqrStatusApi {
    fn status<'a>(&'a self, record: &'a TransactionRecord, _now: OffsetDateTime) -> StatusFuture<'a> {
        Box::pin(self.ask(&record.reference))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use shared::pipeline::StatusSource;
    use wiremock::matchers::{header, method, path};
    use wiremock::{Mock, MockServer, ResponseTemplate};

    fn api(url: &str) -> AzqrStatusApi {
        AzqrStatusApi::from_env(&[("AZQR_API_URL", url), ("AZQR_API_KEY", "k")]).expect("config").expect("configured")
    }

    async fn ask(api: &AzqrStatusApi, rrn: &str) -> Result<Option<Observation>, SyncError> {
        let at = OffsetDateTime::UNIX_EPOCH;
        let record = shared::model::TransactionRecord { reference: rrn.into(), ..blank(at) };
        api.status(&record, at).await
    }

    fn blank(at: OffsetDateTime) -> TransactionRecord {
        serde_json::from_value(serde_json::json!({
            "provider": "azqr", "reference": "", "status": "pending",
            "first_seen_at": at.format(&time::format_description::well_known::Rfc3339).expect("time"),
            "updated_at": at.format(&time::format_description::well_known::Rfc3339).expect("time"),
        }))
        .expect("record")
    }

    #[tokio::test]
    async fn maps_every_query_status_and_sends_the_key() {
        let server = MockServer::start().await;
        let cases = [
            ("inprogress", Status::Processing),
            ("expired", Status::Expired),
            ("canceled", Status::Canceling),
            ("completed", Status::Completed),
            ("incompleted", Status::Failed),
        ];
        for (i, (word, expected)) in cases.into_iter().enumerate() {
            let rrn = format!("10000000000{i}");
            Mock::given(method("GET"))
                .and(path(format!("/qr/{rrn}/status")))
                .and(header("apiKey", "k"))
                .respond_with(ResponseTemplate::new(200).set_body_json(
                    serde_json::json!({"status": word, "description": "AM04 InsufficientFunds", "extra": 1}),
                ))
                .mount(&server)
                .await;
            let observation = ask(&api(&server.uri()), &rrn).await.expect(word).expect(word);
            assert_eq!((observation.reference.as_str(), observation.status), (rrn.as_str(), expected), "{word}");
            assert_eq!(observation.provider_status, word);
            assert_eq!(observation.reason.is_some(), expected == Status::Failed, "{word}");
        }
    }

    #[tokio::test]
    async fn unknown_rrns_and_words_say_nothing_and_failures_are_errors() {
        let server = MockServer::start().await;
        Mock::given(path("/qr/100000000001/status")).respond_with(ResponseTemplate::new(404)).mount(&server).await;
        Mock::given(path("/qr/100000000002/status"))
            .respond_with(ResponseTemplate::new(200).set_body_json(serde_json::json!({"status": "weird"})))
            .mount(&server)
            .await;
        Mock::given(path("/qr/100000000003/status")).respond_with(ResponseTemplate::new(503)).mount(&server).await;
        Mock::given(path("/qr/100000000004/status"))
            .respond_with(ResponseTemplate::new(200).set_delay(REQUEST_TIMEOUT + std::time::Duration::from_secs(1)))
            .mount(&server)
            .await;
        Mock::given(path("/qr/100000000005/status"))
            .respond_with(ResponseTemplate::new(200).set_body_string("<html>"))
            .mount(&server)
            .await;
        let api = api(&server.uri());
        assert!(ask(&api, "100000000001").await.expect("404").is_none());
        assert!(ask(&api, "100000000002").await.expect("unknown word").is_none());
        for rrn in ["100000000003", "100000000004", "100000000005"] {
            assert!(ask(&api, rrn).await.is_err(), "{rrn}");
        }
    }

    #[test]
    fn configuration() {
        assert!(AzqrStatusApi::from_env(&[("AZQR_API_KEY", "k")]).expect("no URL").is_none());
        let error = AzqrStatusApi::from_env(&[("AZQR_API_URL", "https://azqr.example")]).expect_err("no key");
        assert_eq!(error, ConfigError::Missing("AZQR_API_KEY"));
        assert!(AzqrStatusApi::from_env(&[("AZQR_API_URL", "http://azqr.example"), ("AZQR_API_KEY", "k")]).is_err());
        let api = api("https://azqr.example/");
        assert_eq!(api.api_url, "https://azqr.example");
        assert!(!format!("{api:?}").contains("\"k\""));
    }
}
