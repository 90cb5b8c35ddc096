//! The events API, IAM-authorized in template.yaml and open in the local pipeline: what
//! was sent to the merchant and what its endpoint answered, a catch-up feed, and resend
//! and recover.
//!
//! | route | answer |
//! |---|---|
//! | `GET /events?since&after&limit&type&delivered` | `{"data": [event…], "next": cursor or null}`, oldest first |
//! | `GET /events/{id}` | the event, with `delivered_at` (or null) and `attempt_count` |
//! | `GET /events/{id}/attempts` | `{"data": [attempt…]}` |
//! | `POST /events/{id}/resend` | 202: delivered again, same `webhook-id`; 429 `resend_cooldown` within a minute of the last |
//! | `POST /events/recover` `{"since", "until"?, "after"?}` (≤ 14 days) | 202 `{"resent": n, "until", "next"}`: the window's undelivered events again, a batch per request; `next` (or null) continues it |
//!
//! Resend and recover take an `Idempotency-Key` header: the same key answers the first
//! request's answer again, without sending again (24 hours; another request with the key
//! is 422 `idempotency_key_reused`, one while the first runs 409 `idempotency_in_progress`).

use std::time::Duration;

use http::{Method, StatusCode};
use lambda_http::{Body, Request, Response};
use serde::Deserialize;
use shared::model::EventType;
use shared::pipeline::Inbound;
use shared::runtime::config::{ConfigError, Env};
use shared::runtime::error_response;
use shared::storage::{is_position, EventLog, EventQuery, EventQueue, Idempotent, StoredEvent, TransactionStore};

/// The least time between two resends of one event.
pub const RESEND_COOLDOWN: Duration = Duration::from_secs(60);
/// How long one recover request sends before it answers with where to continue: well
/// within the function's 29 s, whatever the window.
const RECOVER_BUDGET: Duration = Duration::from_secs(15);
/// The header of a client's idempotency key, and its longest value.
const IDEMPOTENCY_KEY: &str = "idempotency-key";
const MAX_IDEMPOTENCY_KEY: usize = 255;
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
/// Most events one recover request resends before it answers with its `next`.
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
    /// Most events one recover request resends ([`MAX_RECOVER`]).
    recover_batch: usize,
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
        EventsApi { log, queue, recover_batch: MAX_RECOVER }
    }

    /// With a recover request answering once it has resent `events` or more (it resends
    /// whole pages).
    pub fn with_recover_batch(self, events: usize) -> Self {
        EventsApi { recover_batch: events.clamp(1, MAX_RECOVER), ..self }
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
        if matches!(route, Route::Resend | Route::Recover) && request.header(IDEMPOTENCY_KEY).is_some() {
            return self.answer_once(route, request, now).await;
        }
        respond(self.act(route, request, now).await)
    }

    /// A resend or recover under an idempotency key: the first request's answer for every
    /// request with the key; acted on once. A 5xx or a 429 lets go of the key (a retry acts).
    async fn answer_once(&self, route: Route, request: &Inbound, now: OffsetDateTime) -> Response<Body> {
        let key = String::from_utf8_lossy(request.header(IDEMPOTENCY_KEY).unwrap_or_default()).into_owned();
        if key.is_empty() || key.len() > MAX_IDEMPOTENCY_KEY || !key.bytes().all(|b| b.is_ascii_graphic()) {
            return respond(Err(Refusal::invalid("Idempotency-Key", "must be 1 to 255 visible ASCII characters")));
        }
        let route_name = format!("{route:?}");
        let fingerprint = fingerprint(&route_name, request);
        match self.log.begin_idempotent(&route_name, &key, &fingerprint, now).await {
            Err(error) => respond(Err(Refusal::internal(&error))),
            Ok(Idempotent::Reused) => respond(Err(Refusal {
                status: StatusCode::UNPROCESSABLE_ENTITY,
                code: "idempotency_key_reused",
                message: "this Idempotency-Key was used with another request".into(),
            })),
            Ok(Idempotent::InProgress) => respond(Err(Refusal {
                status: StatusCode::CONFLICT,
                code: "idempotency_in_progress",
                message: "the first request with this Idempotency-Key is still being answered: retry".into(),
            })),
            Ok(Idempotent::Answered { status, answer }) => {
                let mut response = json_response(StatusCode::from_u16(status).unwrap_or(StatusCode::OK), answer);
                response.headers_mut().insert("idempotent-replayed", http::HeaderValue::from_static("true"));
                response
            }
            Ok(Idempotent::New) => {
                let result = self.act(route, request, now).await;
                let (status, answer) = match &result {
                    Ok((status, body)) => (*status, body.to_string()),
                    Err(refusal) => (refusal.status, error_body(refusal)),
                };
                let kept = match status.is_server_error() || status == StatusCode::TOO_MANY_REQUESTS {
                    true => self.log.abandon_idempotent(&route_name, &key).await,
                    false => self.log.finish_idempotent(&route_name, &key, status.as_u16(), &answer).await,
                };
                if let Err(error) = kept {
                    tracing::error!(error = %error, "idempotency key not kept: a retry with it acts again");
                }
                respond(result)
            }
        }
    }

    async fn act(
        &self,
        route: Route,
        request: &Inbound,
        now: OffsetDateTime,
    ) -> Result<(StatusCode, serde_json::Value), Refusal> {
        match route {
            Route::List => self.list(request).await,
            Route::Get => self.event(request).await.map(|event| (StatusCode::OK, shown(&event))),
            Route::Attempts => {
                self.event(request).await.map(|event| (StatusCode::OK, serde_json::json!({ "data": event.attempts })))
            }
            Route::Resend => self.resend(request, now).await,
            Route::Recover => self.recover(request, now).await,
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
        if !self.log.claim_resend(event.id(), now, RESEND_COOLDOWN).await.map_err(|e| Refusal::internal(&e))? {
            return Err(Refusal {
                status: StatusCode::TOO_MANY_REQUESTS,
                code: "resend_cooldown",
                message: format!("this event was resent less than {} s ago", RESEND_COOLDOWN.as_secs()),
            });
        }
        if let Err(refusal) = self.send_again(&event, "resend", now).await {
            // Not sent (as far as we know): a retry must not meet the cooldown.
            if let Err(error) = self.log.release_resend(event.id(), now).await {
                tracing::warn!(event_id = event.id(), %error, "a failed resend's cooldown could not be given back");
            }
            return Err(refusal);
        }
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
            /// Where an earlier request of the same window stopped (its `next`).
            #[serde(default)]
            after: Option<String>,
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
        if window.after.as_deref().is_some_and(|after| !is_position(after)) {
            return Err(Refusal::invalid("after", "must be the next of an earlier answer"));
        }
        let mut query = EventQuery {
            since: Some(window.since),
            until: Some(until),
            after: window.after,
            limit: self.recover_batch.min(100),
            delivered: Some(false),
            ..EventQuery::default()
        };
        // A batch per request, within a time budget: a window of any size completes over
        // requests that each answer in time, each event sent once per request.
        let started = std::time::Instant::now();
        let mut resent = 0;
        let next = loop {
            let page = self.log.list(&query).await.map_err(|e| Refusal::internal(&e))?;
            // Ten to a SendMessageBatch: a large window is sent in a fraction of the calls.
            let events: Vec<shared::storage::Resend<'_>> = page.events.iter().map(to_resend).collect();
            let nonce = now.unix_timestamp_nanos();
            resent += self.queue.resend_batch(&events, "recover", nonce).await.map_err(|e| Refusal::internal(&e))?;
            match page.next {
                Some(next) if resent < self.recover_batch && started.elapsed() < RECOVER_BUDGET => {
                    query.after = Some(next)
                }
                next => break next,
            }
        };
        let until = until.format(&time::format_description::well_known::Rfc3339).map_err(|e| Refusal::internal(&e))?;
        tracing::info!(resent, more = next.is_some(), "undelivered events recovered on request");
        Ok((StatusCode::ACCEPTED, serde_json::json!({ "resent": resent, "until": until, "next": next })))
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

/// A route's answer: its JSON, or its refusal.
fn respond(result: Result<(StatusCode, serde_json::Value), Refusal>) -> Response<Body> {
    match result {
        Ok((status, body)) => json_response(status, body.to_string()),
        Err(refusal) => error_response(refusal.status, refusal.code, &refusal.message),
    }
}

fn json_response(status: StatusCode, body: String) -> Response<Body> {
    let mut response = Response::new(Body::Text(body));
    *response.status_mut() = status;
    response.headers_mut().insert(http::header::CONTENT_TYPE, http::HeaderValue::from_static("application/json"));
    response
}

/// A refusal's body, as [`error_response`] writes it.
fn error_body(refusal: &Refusal) -> String {
    serde_json::json!({ "error": { "code": refusal.code, "message": refusal.message } }).to_string()
}

/// What makes two requests the same for an idempotency key: the route, its event, the body.
fn fingerprint(route: &str, request: &Inbound) -> String {
    use sha2::{Digest, Sha256};
    let mut hash = Sha256::new();
    for part in [route.as_bytes(), request.path_parameter("id").unwrap_or_default().as_bytes(), &request.body] {
        hash.update((part.len() as u64).to_be_bytes());
        hash.update(part);
    }
    hex::encode(hash.finalize())
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
