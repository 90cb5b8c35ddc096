//! The transactions API, IAM-authorized in template.yaml and open in the local pipeline:
//! - `GET /transactions/{provider}/{reference}` answers the stored record (the `data` of
//!   a terminal event, with history, notification and sync state) or 404;
//! - `PUT /transactions/{provider}/{reference}` registers a transaction before any
//!   webhook: `{"amount"?, "currency"?, "expires_at"?}`. 201 with a new `created`
//!   record, 200 when it exists (the same registration again, or a record a webhook
//!   created first, which the registration is attached to), 409 when it was registered
//!   with a different amount or currency. It never moves a record's status. For a
//!   provider whose callback URL carries a token per payment (Key2Pay), the answer also
//!   has the payment's `callback_token`.
//!
//! - `GET /transactions?attention=true[&after=CURSOR][&limit=1..100]` lists the
//!   transactions that need a human (a conflict, an amount mismatch, a failed refund, a
//!   sync given up, an outcome the merchant refused), most recently flagged first:
//!   `{"data": [{"provider", "reference", "status", "attention", "flagged_at"}], "next"}`;
//! - `GET /transactions?overdue=true[&limit=1..100]` lists the transactions whose status
//!   sync is more than [`OVERDUE_AFTER`] late (the sync lagging or stuck), most overdue
//!   first: `{"data": [{"provider", "reference", "next_sync_at", "overdue_seconds"}]}`.
//!
//! A provider it does not know is 404 `not_found` on either route; a reference not in
//! its provider's format is 400 `invalid_field`. Neither reads or writes anything. A
//! record answered has `attention`, the reasons it needs a human (absent when none).

use http::{Method, StatusCode};
use lambda_http::{Body, Request, Response};
use serde::Deserialize;
use shared::model::{Amount, Registration, RegistrationMatch, SyncPolicy, TransactionRecord, WritePlan};
use std::sync::Arc;

use shared::pipeline::{CallbackTokens, Inbound, KnownProvider};
use shared::runtime::config::{ConfigError, Env, Setting};
use shared::runtime::error_response;
use shared::storage::{Registered, TransactionStore};
use time::OffsetDateTime;

pub const METHOD: &str = "GET";
/// The list of the transactions that need a human.
pub const LIST_PATH: &str = "/transactions";
/// Every route the function serves (method, path), as template.yaml routes them.
pub const ROUTES: [(&str, &str); 3] = [(METHOD, PATH), (REGISTER_METHOD, PATH), (METHOD, LIST_PATH)];
/// How late a due sync must be to be listed as overdue: the sync runs every minute.
pub const OVERDUE_AFTER: time::Duration = time::Duration::minutes(5);
/// Entries of a page of the list when `limit` is not given.
const DEFAULT_LIMIT: usize = 50;
pub const PATH: &str = "/transactions/{provider}/{reference}";
pub const REGISTER_METHOD: &str = "PUT";

/// Largest registration body.
const MAX_BODY_BYTES: usize = 4 * 1024;

/// How far from the request's time a registration's `expires_at` may be, before or after:
/// a payment that expires more than a year away is a mistake, and a time far enough away
/// has no UTC form the store can write.
pub const EXPIRES_AT_RANGE: time::Duration = time::Duration::days(366);

/// The variables the function reads besides those of the providers that issue callback
/// tokens ([`settings`]).
pub const SETTINGS: [Setting; 2] =
    [shared::runtime::config::TABLE_NAME, shared::runtime::config::STATUS_SYNC_AFTER_SECONDS];

/// Every variable the function reads: [`SETTINGS`], and for each provider that issues
/// callback tokens, its secret's ARN and its own settings.
pub fn settings() -> Vec<Setting> {
    struct Collect(Vec<Setting>);
    impl provider_catalog::EachProvider for Collect {
        fn provider<P: shared::pipeline::Provider>(&mut self) {
            if P::CALLBACK_TOKEN {
                self.0.push(Setting::optional(P::SECRET.arn, None, "the ARN of the provider's secret"));
                self.0.extend_from_slice(P::SETTINGS);
            }
        }
    }
    let mut collect = Collect(SETTINGS.to_vec());
    provider_catalog::for_each(&mut collect);
    collect.0
}

/// A registration as the merchant sends it. Unknown fields are refused: a misspelt
/// `amount` must not register a transaction without one.

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RegistrationBody {
    #[serde(default)]
    amount: Option<String>,
    #[serde(default)]
    currency: Option<String>,
    #[serde(default, with = "time::serde::rfc3339::option")]
    expires_at: Option<OffsetDateTime>,
}

#[derive(Debug, Clone)]
pub struct TransactionsApi {
    store: TransactionStore,
    policy: SyncPolicy,
    /// Every provider: its reference format, and whether the status sync asks it.
    providers: Vec<KnownProvider>,
    /// The providers that issue a callback token per payment, with their secrets.
    callback_tokens: Vec<Arc<dyn CallbackTokens>>,
}

impl TransactionsApi {
    pub fn new(store: TransactionStore, policy: SyncPolicy, providers: Vec<KnownProvider>) -> Self {
        TransactionsApi { store, policy, providers, callback_tokens: Vec::new() }
    }

    /// With the callback tokens of `tokens`' providers in their registrations' answers.
    pub fn with_callback_tokens(self, tokens: Vec<Arc<dyn CallbackTokens>>) -> Self {
        TransactionsApi { callback_tokens: tokens, ..self }
    }

    /// Reads [`SETTINGS`] and the secrets of the providers that issue callback tokens, and
    /// builds the DynamoDB client, from the Lambda environment.
    pub async fn from_env(env: Arc<dyn Env + Send + Sync>, now: OffsetDateTime) -> Result<Self, ConfigError> {
        let table = env.required(shared::runtime::config::TABLE_NAME.name)?;
        let policy = shared::runtime::config::sync_policy(&env)?;
        let aws = shared::runtime::AwsClients::from_env().await;
        let tokens = provider_catalog::callback_tokens(env, &aws.secrets, now).await?;
        let store = TransactionStore::new(aws.dynamodb, table);
        Ok(TransactionsApi::new(store, policy, provider_catalog::all()).with_callback_tokens(tokens))
    }

    /// Answers one Lambda request (API Gateway's event); one with no IAM identity is 403
    /// `forbidden`, whatever the route's configuration.
    pub async fn handle(&self, request: Request) -> Response<Body> {
        if let Some(refused) = shared::runtime::refuse_without_iam(&request) {
            return refused;
        }
        self.answer(&Inbound::from_lambda(request), OffsetDateTime::now_utc()).await
    }

    pub async fn answer(&self, request: &Inbound, now: OffsetDateTime) -> Response<Body> {
        if request.path_parameters.is_empty() && request.method == Method::GET {
            return match request.query_parameter("overdue") {
                Some(_) => self.overdue(request, now).await,
                None => self.needing_attention(request).await,
            };
        }
        let provider = request.path_parameter("provider").unwrap_or_default();
        let reference = request.path_parameter("reference").unwrap_or_default();
        let Some(known) = self.providers.iter().find(|known| known.name == provider) else {
            return error_response(StatusCode::NOT_FOUND, "not_found", "no such provider");
        };
        if let Err(error) = (known.check_reference)(reference) {
            return error.to_response();
        }
        match request.method {
            Method::PUT => self.register(known, reference, request, now).await,
            _ => match self.store.get(known.name, reference).await {
                Ok(Some(record)) => shown(StatusCode::OK, &record, None),
                Ok(None) => error_response(StatusCode::NOT_FOUND, "not_found", "no such transaction"),
                Err(error) => internal(&error),
            },
        }
    }

    async fn register(
        &self,
        known: &KnownProvider,
        reference: &str,
        request: &Inbound,
        now: OffsetDateTime,
    ) -> Response<Body> {
        let (provider, supported) = (known.name, known.has_status_api);
        let registration = match parse(request, now) {
            Ok(registration) => registration,
            Err(rejected) => return rejected.into_response(),
        };
        let plan = WritePlan { policy: self.policy, supported, ..WritePlan::default() };
        let token = match self.callback_tokens.iter().find(|tokens| tokens.provider() == provider) {
            Some(tokens) => tokens.token(reference, now).await,
            None => None,
        };
        // A final transaction takes no more callbacks: no token to give out for it.
        let answer = |status, record: &TransactionRecord| {
            registered(status, record, token.as_deref().filter(|_| !record.status.is_final()))
        };
        match self.store.register(provider, reference, &registration, now, plan).await {
            Ok(Registered::Created(record)) => {
                tracing::info!(provider, reference, outcome = "created", "transaction registered");
                answer(StatusCode::CREATED, &record)
            }
            Ok(Registered::Existing { matched: RegistrationMatch::Different, .. }) => {
                tracing::warn!(provider, reference, outcome = "conflict", "registration differs from the one stored");
                error_response(
                    StatusCode::CONFLICT,
                    "registration_conflict",
                    "the transaction is registered with a different amount or currency",
                )
            }
            Ok(Registered::Existing { matched, record }) => {
                tracing::info!(provider, reference, outcome = ?matched, "registration of an existing transaction");
                // Attached to a record a webhook made: its amount may now differ.
                match self.store.flag_attention(&record, now).await {
                    Ok(flagged) if !flagged.is_empty() => {
                        let reasons: Vec<&str> = flagged.iter().map(|r| r.as_str()).collect();
                        tracing::warn!(provider, reference, reasons = ?reasons, "needs a human: listed in GET /transactions?attention=true");
                    }
                    Ok(_) => {}
                    Err(error) => return internal(&error),
                }
                answer(StatusCode::OK, &record)
            }
            Err(error) => internal(&error),
        }
    }
}

impl TransactionsApi {
    /// `GET /transactions?overdue=true`: the syncs most overdue at `now`.
    async fn overdue(&self, request: &Inbound, now: OffsetDateTime) -> Response<Body> {
        let invalid = |field: &str, reason: &str| Rejected::invalid(field, reason).into_response();
        if request.query_parameter("overdue") != Some("true") {
            return invalid("overdue", "must be true: this route lists the syncs that are late");
        }
        let limit = match limit_of(request) {
            Ok(limit) => limit,
            Err(rejected) => return rejected.into_response(),
        };
        let providers: Vec<&str> = self.providers.iter().filter(|p| p.has_status_api).map(|p| p.name).collect();
        match self.store.overdue_syncs(&providers, now - OVERDUE_AFTER, limit).await {
            Ok(due) => {
                let data: Vec<serde_json::Value> = due
                    .iter()
                    .filter_map(|(key, at)| {
                        let (provider, reference) = key.split_once('#')?;
                        let due_at = OffsetDateTime::parse(at, &time::format_description::well_known::Rfc3339).ok()?;
                        Some(serde_json::json!({
                            "provider": provider,
                            "reference": reference,
                            "next_sync_at": at,
                            "overdue_seconds": (now - due_at).whole_seconds().max(0),
                        }))
                    })
                    .collect();
                json(StatusCode::OK, &serde_json::json!({ "data": data }))
            }
            Err(error) => internal(&error),
        }
    }

    /// `GET /transactions?attention=true`: a page of what needs a human.
    async fn needing_attention(&self, request: &Inbound) -> Response<Body> {
        let invalid = |field: &str, reason: &str| Rejected::invalid(field, reason).into_response();
        if request.query_parameter("attention") != Some("true") {
            return invalid("attention", "must be true: this route lists the transactions that need a human");
        }
        let after = request.query_parameter("after");
        if after.is_some_and(|after| !shared::model::is_attention_cursor(after)) {
            return invalid("after", "must be a cursor from an earlier page");
        }
        let limit = match limit_of(request) {
            Ok(limit) => limit,
            Err(rejected) => return rejected.into_response(),
        };
        match self.store.needing_attention(after, limit).await {
            Ok(page) => {
                let data: Vec<serde_json::Value> = page
                    .entries
                    .iter()
                    .map(|entry| {
                        let flagged = shared::model::flagged_at(&entry.cursor)
                            .and_then(|at| at.format(&time::format_description::well_known::Rfc3339).ok());
                        serde_json::json!({
                            "provider": entry.provider,
                            "reference": entry.reference,
                            "status": entry.status,
                            "attention": entry.attention,
                            "flagged_at": flagged,
                        })
                    })
                    .collect();
                json(StatusCode::OK, &serde_json::json!({ "data": data, "next": page.next }))
            }
            Err(error) => internal(&error),
        }
    }
}

/// A listing's `limit` (1 to 100, [`DEFAULT_LIMIT`] when absent), or why it is refused.
fn limit_of(request: &Inbound) -> Result<usize, Rejected> {
    match request.query_parameter("limit") {
        None => Ok(DEFAULT_LIMIT),
        Some(limit) => limit
            .parse::<usize>()
            .ok()
            .filter(|n| (1..=100).contains(n))
            .ok_or_else(|| Rejected::invalid("limit", "must be 1 to 100")),
    }
}

/// Why a registration body is refused: a 4xx with a stable code.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Rejected {
    status: StatusCode,
    code: &'static str,
    message: String,
}

impl Rejected {
    fn new(status: StatusCode, code: &'static str, message: impl Into<String>) -> Self {
        Rejected { status, code, message: message.into() }
    }

    fn invalid(field: &str, reason: &str) -> Self {
        Rejected::new(StatusCode::BAD_REQUEST, "invalid_field", format!("invalid {field}: {reason}"))
    }

    fn into_response(self) -> Response<Body> {
        error_response(self.status, self.code, &self.message)
    }
}

/// The registration in a request's body at `now`, or the status it is refused with (for
/// the fuzz targets: every refusal must be a 4xx, and every registration writable).
pub fn registration(request: &Inbound, now: OffsetDateTime) -> Result<Registration, StatusCode> {
    parse(request, now).map_err(|rejected| rejected.status)
}

/// The registration in the body, or why it is refused.
fn parse(request: &Inbound, now: OffsetDateTime) -> Result<Registration, Rejected> {
    if request.body.len() > MAX_BODY_BYTES {
        return Err(Rejected::new(StatusCode::PAYLOAD_TOO_LARGE, "payload_too_large", "request body is too large"));
    }
    if let Some(content_type) = request.header("content-type") {
        let media_type = String::from_utf8_lossy(content_type).split(';').next().unwrap_or_default().trim().to_owned();
        if !media_type.eq_ignore_ascii_case("application/json") {
            return Err(Rejected::new(
                StatusCode::UNSUPPORTED_MEDIA_TYPE,
                "unsupported_media_type",
                "content type must be application/json",
            ));
        }
    }
    let body: RegistrationBody = if request.body.iter().all(u8::is_ascii_whitespace) {
        RegistrationBody { amount: None, currency: None, expires_at: None }
    } else {
        shared::pipeline::parse_json(&request.body)
            .map_err(|error| Rejected::new(error.status(), error.code(), error.public_message()))?
    };
    let amount = match body.amount {
        Some(text) => Some(Amount::parse(&text).map_err(|e| Rejected::invalid("amount", &e.to_string()))?),
        None => None,
    };
    if let Some(currency) = &body.currency {
        if currency.len() != 3 || !currency.bytes().all(|b| b.is_ascii_uppercase()) {
            return Err(Rejected::invalid("currency", "must be an ISO 4217 code: three capital letters"));
        }
    }
    if let Some(expires_at) = body.expires_at {
        if (expires_at - now).abs() > EXPIRES_AT_RANGE {
            return Err(Rejected::invalid("expires_at", "must be within 366 days of now, before or after"));
        }
    }
    Ok(Registration { amount, currency: body.currency, expires_at: body.expires_at })
}

/// A registration's answer: the record, and the payment's `callback_token` when its
/// provider issues one.
fn registered(status: StatusCode, record: &TransactionRecord, callback_token: Option<&str>) -> Response<Body> {
    shown(status, record, callback_token)
}

/// The record as answered: with `attention` when it needs a human, and the callback token
/// where one is given out.
fn shown(status: StatusCode, record: &TransactionRecord, callback_token: Option<&str>) -> Response<Body> {
    let attention: Vec<&str> = record.attention().iter().map(|r| r.as_str()).collect();
    match serde_json::to_value(record) {
        Ok(serde_json::Value::Object(mut fields)) => {
            if !attention.is_empty() {
                fields.insert("attention".into(), attention.into());
            }
            if let Some(token) = callback_token {
                fields.insert("callback_token".into(), token.into());
            }
            json(status, &fields)
        }
        Ok(_) => internal(&std::io::Error::other("a record is not a JSON object")),
        Err(error) => internal(&error),
    }
}

fn json(status: StatusCode, record: &impl serde::Serialize) -> Response<Body> {
    match serde_json::to_string(record) {
        Ok(json) => {
            let mut response = Response::new(Body::Text(json));
            *response.status_mut() = status;
            response
                .headers_mut()
                .insert(http::header::CONTENT_TYPE, http::HeaderValue::from_static("application/json"));
            response
        }
        Err(error) => internal(&error),
    }
}

fn internal(error: &dyn std::error::Error) -> Response<Body> {
    tracing::error!(error = %error, "transactions API failed");
    error_response(StatusCode::INTERNAL_SERVER_ERROR, "internal_error", "internal error, please retry")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn put(body: &str) -> Inbound {
        Inbound::new(Method::PUT, body).with_header("content-type", "application/json")
    }

    const NOW: OffsetDateTime = time::macros::datetime!(2026-11-24 00:00 UTC);

    fn parse_now(request: &Inbound) -> Result<Registration, Rejected> {
        parse(request, NOW)
    }

    fn code(rejected: Rejected) -> (u16, String) {
        let response = rejected.into_response();
        let body: serde_json::Value = serde_json::from_slice(response.body().as_ref()).expect("JSON");
        (response.status().as_u16(), body["error"]["code"].as_str().unwrap_or_default().to_owned())
    }

    #[test]
    fn registration_bodies() {
        let ok = parse_now(&put(r#"{"amount":"10.00","currency":"AZN","expires_at":"2026-11-24T10:00:00+04:00"}"#))
            .expect("valid");
        assert_eq!(ok.amount.as_ref().map(Amount::as_str), Some("10.00"));
        assert_eq!(ok.currency.as_deref(), Some("AZN"));
        assert_eq!(ok.expires_at, Some(time::macros::datetime!(2026-11-24 06:00 UTC)));
        assert_eq!(parse_now(&put("")).expect("empty"), Registration::default());
        for edge in ["2027-11-25T00:00:00Z", "2025-11-23T00:00:00Z"] {
            let body = format!(r#"{{"expires_at":"{edge}"}}"#);
            assert!(parse_now(&put(&body)).is_ok(), "{edge}: within 366 days");
        }
        assert_eq!(parse_now(&put("{}")).expect("nothing"), Registration::default());
        let cases = [
            (r#"{"amount":10.00}"#, (400, "malformed_json")),
            (r#"{"amount":"-1"}"#, (400, "invalid_field")),
            (r#"{"currency":"azn"}"#, (400, "invalid_field")),
            (r#"{"currency":"AZNX"}"#, (400, "invalid_field")),
            (r#"{"expires_at":"tomorrow"}"#, (400, "malformed_json")),
            (r#"{"ammount":"10.00"}"#, (400, "malformed_json")),
            // A year and a day either way at most; a time with no UTC form is far outside.
            (r#"{"expires_at":"9999-12-31T23:59:59-01:00"}"#, (400, "invalid_field")),
            (r#"{"expires_at":"2027-11-26T00:00:00Z"}"#, (400, "invalid_field")),
            (r#"{"expires_at":"2025-11-22T00:00:00Z"}"#, (400, "invalid_field")),
            (r#"["x"]"#, (400, "malformed_json")),
        ];
        for (body, expected) in cases {
            let (status, code) = code(parse_now(&put(body)).expect_err(body));
            assert_eq!((status, code.as_str()), expected, "{body}");
        }
        let text = Inbound::new(Method::PUT, "{}").with_header("content-type", "text/plain");
        assert_eq!(code(parse_now(&text).expect_err("text")).0, 415);
        assert_eq!(code(parse_now(&put(&" ".repeat(MAX_BODY_BYTES + 1))).expect_err("big")).0, 413);
    }
}
