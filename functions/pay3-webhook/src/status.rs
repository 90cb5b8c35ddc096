//! Pay3's order query, for the status sync:
//! `GET {PAY3_API_URL}/v1/client/orders?requestId=...&clientId=...` (crypto orders:
//! `/v1/client/crypto-orders`) with the `access-token` header. The lookup key is the
//! merchant's `requestId`, which every webhook carries and the record keeps in
//! `details.request_id`.

use serde::Deserialize;
use shared::model::{Observation, TransactionRecord};
use shared::pipeline::{parse_status, Provider, StatusFuture, SyncError, CONNECT_TIMEOUT, REQUEST_TIMEOUT};
use shared::runtime::config::{ConfigError, Env, Secret};
use time::OffsetDateTime;

use crate::{Pay3, Pay3Order, Pay3OrderStatus};

/// The record's detail that holds the webhook's `requestId`.
pub const REQUEST_ID: &str = "request_id";
/// The order type whose orders are looked up under `/v1/client/crypto-orders`.
pub const CRYPTO: &str = "CRYPTO";

#[derive(Debug, Deserialize)]
pub struct Pay3OrdersAnswer {
    #[serde(default)]
    pub data: Vec<Pay3OrderEntry>,
}

/// One order as the query answers it. Unknown fields are ignored.
#[derive(Debug, Clone, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Pay3OrderEntry {
    pub order_id: String,
    pub order_status: String,
    #[serde(default)]
    pub order_type: Option<String>,
    #[serde(default)]
    pub payment_status: Option<String>,
    #[serde(default)]
    pub error_reason: Option<Pay3ErrorReason>,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Pay3ErrorReason {
    #[serde(default)]
    pub error_desc: Option<String>,
}

#[derive(Debug)]
pub struct Pay3StatusApi {
    http: reqwest::Client,
    api_url: String,
    client_id: String,
    access_token: Secret,
}

impl Pay3StatusApi {
    /// `PAY3_API_URL` (unset: no sync for Pay3), `PAY3_CLIENT_ID` and `PAY3_ACCESS_TOKEN`.
    pub fn from_env(env: &impl Env) -> Result<Option<Self>, ConfigError> {
        let Some(api_url) = shared::runtime::config::api_url(env, "PAY3_API_URL")? else {
            return Ok(None);
        };
        let http = reqwest::Client::builder()
            .timeout(REQUEST_TIMEOUT)
            .connect_timeout(CONNECT_TIMEOUT)
            .pool_max_idle_per_host(shared::pipeline::IDLE_CONNECTIONS)
            .redirect(reqwest::redirect::Policy::none())
            .build()
            .map_err(|e| ConfigError::Invalid { name: "PAY3_API_URL", reason: format!("HTTP client: {e}") })?;
        Ok(Some(Pay3StatusApi {
            http,
            api_url,
            client_id: env.required("PAY3_CLIENT_ID")?,
            access_token: env.secret("PAY3_ACCESS_TOKEN")?,
        }))
    }

    async fn ask(&self, record: &TransactionRecord) -> Result<Option<Observation>, SyncError> {
        let reference = record.reference.as_str();
        let Some((order_id, order_type)) = reference.rsplit_once(':') else {
            return Ok(None);
        };
        let Some(request_id) = record.details.get(REQUEST_ID) else {
            tracing::warn!(provider = Pay3::NAME, reference, "no requestId kept on the record: Pay3 cannot be asked");
            return Ok(None);
        };
        let path = if order_type == CRYPTO { "crypto-orders" } else { "orders" };
        let response = self
            .http
            .get(format!("{}/v1/client/{path}", self.api_url))
            .query(&[("requestId", request_id.as_str()), ("clientId", self.client_id.as_str())])
            .header("access-token", self.access_token.expose())
            .send()
            .await
            .map_err(SyncError::new)?;
        match response.status().as_u16() {
            200 => {}
            404 => return Ok(None),
            status => return Err(SyncError::status("Pay3", status)),
        }
        let answer: Pay3OrdersAnswer = response.json().await.map_err(SyncError::transaction)?;
        let order = answer
            .data
            .into_iter()
            .find(|o| o.order_id == order_id && o.order_type.as_deref().is_none_or(|t| t == order_type));
        let Some(order) = order else {
            return Ok(None);
        };
        let Ok(status) = parse_status::<Pay3OrderStatus>(&order.order_status) else {
            tracing::warn!(provider = Pay3::NAME, reference, provider_status = %order.order_status, "unknown order status from Pay3's query: nothing applied");
            return Ok(None);
        };
        let pay3_order = Pay3Order { status, payment_status: order.payment_status.as_deref() };
        let mut observation = crate::observe(reference.to_owned(), order_id, pay3_order, &order.order_status);
        observation.set_reason(order.error_reason.and_then(|e| e.error_desc));
        observation.details = record.details.clone();
        Ok(Some(observation))
    }
}

impl shared::pipeline::StatusSource for Pay3StatusApi {
    fn status<'a>(&'a self, record: &'a TransactionRecord, _now: OffsetDateTime) -> StatusFuture<'a> {
        Box::pin(self.ask(record))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use shared::model::Status;
    use shared::pipeline::StatusSource;
    use wiremock::matchers::{header, method, path, query_param};
    use wiremock::{Mock, MockServer, ResponseTemplate};

    fn api(url: &str) -> Pay3StatusApi {
        let env = [("PAY3_API_URL", url), ("PAY3_CLIENT_ID", "client-1"), ("PAY3_ACCESS_TOKEN", "token-1")];
        Pay3StatusApi::from_env(&env).expect("config").expect("configured")
    }

    fn record(reference: &str, request_id: Option<&str>) -> TransactionRecord {
        let mut value = serde_json::json!({
            "provider": "pay3", "reference": reference, "status": "pending",
            "first_seen_at": "2026-11-24T00:00:00Z", "updated_at": "2026-11-24T00:00:00Z",
        });
        if let Some(id) = request_id {
            value["details"] = serde_json::json!({ "request_id": id });
        }
        serde_json::from_value(value).expect("record")
    }

    async fn ask(api: &Pay3StatusApi, record: &TransactionRecord) -> Result<Option<Observation>, SyncError> {
        api.status(record, OffsetDateTime::UNIX_EPOCH).await
    }

    fn orders(entries: serde_json::Value) -> ResponseTemplate {
        ResponseTemplate::new(200).set_body_json(serde_json::json!({ "data": entries, "total": 1 }))
    }

    #[tokio::test]
    async fn asks_by_request_id_on_the_order_types_endpoint() {
        let server = MockServer::start().await;
        Mock::given(method("GET"))
            .and(path("/v1/client/orders"))
            .and(query_param("requestId", "req-1"))
            .and(query_param("clientId", "client-1"))
            .and(header("access-token", "token-1"))
            .respond_with(orders(serde_json::json!([
                {"orderId": "other", "orderStatus": "FAILED", "orderType": "CHECKOUT"},
                {"orderId": "ord-1", "orderStatus": "COMPLETED", "orderType": "CHECKOUT", "updatedTs": 1}
            ])))
            .mount(&server)
            .await;
        Mock::given(method("GET"))
            .and(path("/v1/client/crypto-orders"))
            .and(query_param("requestId", "req-2"))
            .respond_with(orders(serde_json::json!([
                {"orderId": "ord-2", "orderStatus": "FAILED", "orderType": "CRYPTO", "paymentStatus": "CANCELED",
                 "errorReason": {"errorCode": "E1", "errorDesc": "canceled by payer"}}
            ])))
            .mount(&server)
            .await;
        let api = api(&server.uri());
        let fiat = ask(&api, &record("ord-1:CHECKOUT", Some("req-1"))).await.expect("ask").expect("known");
        assert_eq!((fiat.reference.as_str(), fiat.status), ("ord-1:CHECKOUT", Status::Completed));
        assert_eq!(fiat.details.get(REQUEST_ID).map(String::as_str), Some("req-1"), "the requestId stays");
        let crypto = ask(&api, &record("ord-2:CRYPTO", Some("req-2"))).await.expect("ask").expect("known");
        assert_eq!(crypto.status, Status::Canceled);
        assert_eq!(crypto.reason.as_deref(), Some("canceled by payer"));
    }

    #[tokio::test]
    async fn nothing_to_say_and_failures() {
        let server = MockServer::start().await;
        Mock::given(query_param("requestId", "req-empty"))
            .respond_with(orders(serde_json::json!([])))
            .mount(&server)
            .await;
        Mock::given(query_param("requestId", "req-refund"))
            .respond_with(orders(serde_json::json!([{"orderId": "o", "orderStatus": "REFUNDED"}])))
            .mount(&server)
            .await;
        Mock::given(query_param("requestId", "req-down")).respond_with(ResponseTemplate::new(502)).mount(&server).await;
        let api = api(&server.uri());
        assert!(ask(&api, &record("o:CHECKOUT", Some("req-empty"))).await.expect("empty").is_none());
        let refunded = ask(&api, &record("o:CHECKOUT", Some("req-refund"))).await.expect("after final").expect("word");
        assert_eq!((refunded.status, refunded.follows_final), (Status::Created, true), "moves no status");
        assert_eq!(
            refunded.refunds.iter().map(|r| (r.id.as_str(), r.status)).collect::<Vec<_>>(),
            [("o-refund", shared::model::RefundStatus::Succeeded)]
        );
        assert!(ask(&api, &record("o:CHECKOUT", None)).await.expect("no request id").is_none());
        assert!(ask(&api, &record("o:CHECKOUT", Some("req-down"))).await.is_err());
    }
}
