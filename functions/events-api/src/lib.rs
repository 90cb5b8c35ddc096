//! The events API, IAM-authorized in template.yaml and open in the local pipeline: what
//! was sent to the merchant and what its endpoint answered, a catch-up feed, and resend
//! and recover.
//!
//! | route | answer |
//! |---|---|
//! | `GET /events?since&after&limit&type&delivered` | `{"data": [event…], "next": cursor or null}`, oldest first |
//! | `GET /events/{id}` | the event, with `delivered_at` (or null) and `attempt_count` |
//! | `GET /events/{id}/attempts` | `{"data": [attempt…]}` |
//! | `POST /events/{id}/resend` | 202: delivered again, same `webhook-id` |
//! | `POST /events/recover` `{"since", "until"?}` (≤ 14 days) | 202 `{"resent": n}`: every undelivered event in the window again |

use std::time::Duration;

use http::{Method, StatusCode};
use lambda_http::{Body, Request, Response};
use serde::Deserialize;
use shared::model::EventType;
use shared::pipeline::Inbound;
use shared::runtime::config::{ConfigError, Env};
use shared::runtime::error_response;
use shared::storage::{is_position, EventLog, EventQuery, EventQueue, StoredEvent, TransactionStore};
use time::OffsetDateTime;

/// Every route, as in template.yaml and openapi.yaml.
pub const ROUTES: [(Route, &str, &str); 5] = [
    (Route::List, "GET", "/events"),
    (Route::Get, "GET", "/events/{id}"),
    (Route::Attempts, "GET", "/events/{id}/attempts"),
    (Route::Resend, "POST", "/events/{id}/resend"),
    (Route::Recover, "POST", "/events/recover"),
];

/// The widest window `POST /events/recover` takes.
pub const MAX_RECOVER_WINDOW: Duration = Duration::from_secs(14 * 24 * 60 * 60);
/// `limit` when the listing does not say.
pub const DEFAULT_LIMIT: usize = 50;
/// Most events one recover resends (it says how many).
const MAX_RECOVER: usize = 10_000;

/// The variables the function reads.
pub const SETTINGS: [shared::runtime::config::Setting; 2] =
    [shared::runtime::config::TABLE_NAME, shared::runtime::config::QUEUE_URL];

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Route {
    List,
    Get,
    Attempts,
    Resend,
    Recover,
}

impl Route {
    /// The route of a request API Gateway sent (its method and path).
    pub fn matching(method: &Method, path: &str) -> Option<Route> {
        let path = path.trim_end_matches('/');
        let segments: Vec<&str> = path.trim_start_matches('/').split('/').collect();
        match (method.as_str(), segments.as_slice()) {
            ("GET", ["events"]) => Some(Route::List),
            ("POST", ["events", "recover"]) => Some(Route::Recover),
            ("GET", ["events", _]) => Some(Route::Get),
            ("GET", ["events", _, "attempts"]) => Some(Route::Attempts),
            ("POST", ["events", _, "resend"]) => Some(Route::Resend),
            _ => None,
        }
    }
}

#[derive(Debug, Clone)]
pub struct EventsApi {
    log: EventLog,
    queue: EventQueue,
}

/// A 4xx or 5xx with its stable code.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Refusal {
    status: StatusCode,
    code: &'static str,
    message: String,
}

impl Refusal {
    fn invalid(field: &str, reason: &str) -> Self {
        Refusal {
            status: StatusCode::BAD_REQUEST,
            code: "invalid_field",
            message: format!("invalid {field}: {reason}"),
        }
    }

    fn not_found() -> Self {
        Refusal { status: StatusCode::NOT_FOUND, code: "not_found", message: "no such event".into() }
    }

    fn internal(error: &dyn std::error::Error) -> Self {
        tracing::error!(error = %error, "events API failed");
        Refusal {
            status: StatusCode::INTERNAL_SERVER_ERROR,
            code: "internal_error",
            message: "internal error, please retry".into(),
        }
    }
}

impl EventsApi {
    pub fn new(log: EventLog, queue: EventQueue) -> Self {
        EventsApi { log, queue }
    }

    /// Reads [`SETTINGS`].
    pub async fn from_env(env: &impl Env) -> Result<Self, ConfigError> {
        let storage = shared::runtime::config::StorageConfig::from_env(env)?;
        let aws = shared::runtime::AwsClients::from_env().await;
        let store = TransactionStore::new(aws.dynamodb, storage.table_name);
        let retention = Duration::from_secs(30 * 24 * 60 * 60); // only the notifier writes
        Ok(EventsApi::new(store.event_log(retention), EventQueue::new(aws.sqs, storage.queue_url)))
    }

    /// Answers one Lambda request (API Gateway's event); one with no IAM identity is 403
    /// `forbidden`, whatever the route's configuration.
    pub async fn handle(&self, request: Request) -> Response<Body> {
        if let Some(refused) = shared::runtime::refuse_without_iam(&request) {
            return refused;
        }
        let route = Route::matching(request.method(), request.uri().path());
        let inbound = Inbound::from_lambda(request);
        match route {
            Some(route) => self.answer(route, &inbound, OffsetDateTime::now_utc()).await,
            None => error_response(StatusCode::NOT_FOUND, "not_found", "no such route"),
        }
    }

    pub async fn answer(&self, route: Route, request: &Inbound, now: OffsetDateTime) -> Response<Body> {
        let result = match route {
            Route::List => self.list(request).await,
            Route::Get => self.event(request).await.map(|event| (StatusCode::OK, shown(&event))),
            Route::Attempts => {
                self.event(request).await.map(|event| (StatusCode::OK, serde_json::json!({ "data": event.attempts })))
            }
            Route::Resend => self.resend(request, now).await,
            Route::Recover => self.recover(request, now).await,
        };
        match result {
            Ok((status, body)) => {
                let mut response = Response::new(Body::Text(body.to_string()));
                *response.status_mut() = status;
                response
                    .headers_mut()
                    .insert(http::header::CONTENT_TYPE, http::HeaderValue::from_static("application/json"));
                response
            }
            Err(refusal) => error_response(refusal.status, refusal.code, &refusal.message),
        }
    }

    async fn list(&self, request: &Inbound) -> Result<(StatusCode, serde_json::Value), Refusal> {
        let query = list_query(request)?;
        let page = self.log.list(&query).await.map_err(|e| Refusal::internal(&e))?;
        let data: Vec<serde_json::Value> = page.events.iter().map(shown).collect();
        Ok((StatusCode::OK, serde_json::json!({ "data": data, "next": page.next })))
    }

    async fn event(&self, request: &Inbound) -> Result<StoredEvent, Refusal> {
        let id = request.path_parameter("id").unwrap_or_default();
        if !is_event_id(id) {
            return Err(Refusal::not_found());
        }
        self.log.get(id).await.map_err(|e| Refusal::internal(&e))?.ok_or_else(Refusal::not_found)
    }

    async fn resend(&self, request: &Inbound, now: OffsetDateTime) -> Result<(StatusCode, serde_json::Value), Refusal> {
        let event = self.event(request).await?;
        self.send_again(&event, "resend", now).await?;
        tracing::info!(event_id = event.id(), "event resent on request");
        Ok((StatusCode::ACCEPTED, serde_json::json!({ "id": event.id() })))
    }

    async fn recover(
        &self,
        request: &Inbound,
        now: OffsetDateTime,
    ) -> Result<(StatusCode, serde_json::Value), Refusal> {
        #[derive(Debug, Deserialize)]
        #[serde(deny_unknown_fields)]
        struct Window {
            #[serde(with = "time::serde::rfc3339")]
            since: OffsetDateTime,
            #[serde(default, with = "time::serde::rfc3339::option")]
            until: Option<OffsetDateTime>,
        }
        let window: Window = shared::pipeline::parse_json(&request.body).map_err(|e| Refusal {
            status: e.status(),
            code: e.code(),
            message: e.public_message(),
        })?;
        let until = window.until.unwrap_or(now);
        if window.since >= until {
            return Err(Refusal::invalid("since", "must be before until"));
        }
        if until - window.since > MAX_RECOVER_WINDOW {
            return Err(Refusal::invalid("since", "the window is at most 14 days"));
        }
        let mut query = EventQuery {
            since: Some(window.since),
            until: Some(until),
            limit: 100,
            delivered: Some(false),
            ..EventQuery::default()
        };
        let mut resent = 0;
        loop {
            let page = self.log.list(&query).await.map_err(|e| Refusal::internal(&e))?;
            // Ten to a SendMessageBatch: a large window is sent in a fraction of the calls.
            let events: Vec<shared::storage::Resend<'_>> = page.events.iter().map(to_resend).collect();
            let nonce = now.unix_timestamp_nanos();
            resent += self.queue.resend_batch(&events, "recover", nonce).await.map_err(|e| Refusal::internal(&e))?;
            match page.next {
                Some(next) if resent < MAX_RECOVER => query.after = Some(next),
                Some(_) | None => break,
            }
        }
        tracing::info!(resent, "undelivered events recovered on request");
        Ok((StatusCode::ACCEPTED, serde_json::json!({ "resent": resent })))
    }

    /// The stored body again, same `webhook-id`, under a new deduplication id.
    async fn send_again(&self, event: &StoredEvent, kind: &str, now: OffsetDateTime) -> Result<(), Refusal> {
        let resend = to_resend(event);
        let nonce = now.unix_timestamp_nanos();
        self.queue
            .resend(resend.body, &resend.group, resend.event_id, kind, nonce)
            .await
            .map_err(|e| Refusal::internal(&e))
    }
}

/// A stored event as the queue sends it again: its body, its transaction's group, its id.
fn to_resend(event: &StoredEvent) -> shared::storage::Resend<'_> {
    let field = |name: &str| {
        event.event.get("data").and_then(|data| data.get(name)).and_then(serde_json::Value::as_str).unwrap_or_default()
    };
    let group = shared::model::transaction_key(field("provider"), field("reference"));
    shared::storage::Resend { body: &event.body, group, event_id: event.id() }
}

/// An event as the API shows it: the event as delivered, `delivered_at` and `attempt_count`.
fn shown(event: &StoredEvent) -> serde_json::Value {
    let mut value = event.event.clone();
    if let Some(object) = value.as_object_mut() {
        let delivered_at =
            event.delivered_at.and_then(|at| at.format(&time::format_description::well_known::Rfc3339).ok());
        object.insert("delivered_at".into(), delivered_at.into());
        object.insert("attempt_count".into(), event.attempt_count.into());
    }
    value
}

/// Event ids are `evt_` and 32 hex digits; anything else is no event.
fn is_event_id(id: &str) -> bool {
    id.strip_prefix("evt_").is_some_and(|hex| hex.len() == 32 && hex.bytes().all(|b| b.is_ascii_hexdigit()))
}

/// The query a listing's parameters make, or the status they are refused with (for the
/// fuzz targets: every refusal must be a 4xx, and every query one DynamoDB takes).
pub fn listing(request: &Inbound) -> Result<EventQuery, StatusCode> {
    list_query(request).map_err(|refusal| refusal.status)
}

/// The listing's parameters, each checked.
fn list_query(request: &Inbound) -> Result<EventQuery, Refusal> {
    let mut query = EventQuery { limit: DEFAULT_LIMIT, ..EventQuery::default() };
    if let Some(since) = request.query_parameter("since") {
        let since = OffsetDateTime::parse(since, &time::format_description::well_known::Rfc3339)
            .map_err(|_| Refusal::invalid("since", "must be an RFC 3339 time"))?;
        query.since = Some(since);
    }
    if let Some(after) = request.query_parameter("after") {
        if !is_position(after) {
            return Err(Refusal::invalid("after", "must be a cursor from an earlier page"));
        }
        query.after = Some(after.to_owned());
    }
    if let Some(limit) = request.query_parameter("limit") {
        query.limit = limit
            .parse::<usize>()
            .ok()
            .filter(|n| (1..=100).contains(n))
            .ok_or_else(|| Refusal::invalid("limit", "must be 1 to 100"))?;
    }
    if let Some(kind) = request.query_parameter("type") {
        let kind: EventType = kind.parse().map_err(|_| Refusal::invalid("type", "must be an event type"))?;
        query.kind = Some(kind);
    }
    if let Some(delivered) = request.query_parameter("delivered") {
        query.delivered = Some(match delivered {
            "true" => true,
            "false" => false,
            _ => return Err(Refusal::invalid("delivered", "must be true or false")),
        });
    }
    Ok(query)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn routes_are_told_apart_by_method_and_path() {
        for (route, method, path) in ROUTES {
            let concrete = path.replace("{id}", "evt_0123456789abcdef0123456789abcdef");
            assert_eq!(Route::matching(&method.parse().expect("method"), &concrete), Some(route), "{method} {path}");
        }
        assert_eq!(Route::matching(&Method::DELETE, "/events"), None);
        assert_eq!(Route::matching(&Method::GET, "/events/a/b"), None);
    }

    #[test]
    fn listing_parameters_are_checked() {
        let get = |pairs: &[(&str, &str)]| {
            pairs.iter().fold(Inbound::new(Method::GET, ""), |request, (name, value)| request.with_query(name, value))
        };
        let query = list_query(&get(&[("limit", "100"), ("type", "transaction.updated"), ("delivered", "false")]))
            .expect("valid");
        assert_eq!(
            (query.limit, query.kind.map(EventType::as_str), query.delivered),
            (100, Some("transaction.updated"), Some(false))
        );
        assert_eq!(list_query(&get(&[])).expect("defaults").limit, DEFAULT_LIMIT);
        for (name, value) in [
            ("limit", "0"),
            ("limit", "101"),
            ("limit", "ten"),
            ("type", "transaction.paid"),
            ("delivered", "yes"),
            ("since", "yesterday"),
            ("after", "not-a-cursor"),
        ] {
            let refusal = list_query(&get(&[(name, value)])).expect_err(name);
            assert_eq!((refusal.status, refusal.code), (StatusCode::BAD_REQUEST, "invalid_field"), "{name}={value}");
        }
        assert!(is_event_id("evt_0123456789abcdef0123456789abcdef"));
        assert!(!is_event_id("evt_xyz") && !is_event_id("0123456789abcdef0123456789abcdef0123"));
    }
}
