//! A stand-in for AZQR's status query on loopback, for the local pipeline and the tests:
//! `GET /qr/{rrn}/status` with the `apiKey` header, answering `{"status", "description"}`
//! from what was set (404 for an rrn it does not know). Settable while it runs, in
//! process or over HTTP: `PUT /qr/{rrn}/status` with the same header and
//! `{"status": "completed"}` (what AZQR itself would say next about the rrn).
// Test tooling behind the `simulator` feature, never on Lambda: a panic fails a test.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::indexing_slicing)]

use std::collections::HashMap;
use std::sync::{Arc, RwLock};

use axum::extract::{Path as UrlPath, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::{Json, Router};
use serde::Deserialize;

#[derive(Debug, Default)]
struct Shared {
    api_key: String,
    statuses: RwLock<HashMap<String, String>>,
}

/// A running stand-in: its base URL, and the status it answers per rrn.
#[derive(Debug, Clone)]
pub struct StandIn {
    pub url: String,
    shared: Arc<Shared>,
}

impl StandIn {
    /// AZQR now says `status` (a query word: `inprogress`, `completed`…) about `rrn`.
    pub fn set(&self, rrn: &str, status: &str) {
        let mut statuses = self.shared.statuses.write().unwrap_or_else(|poisoned| poisoned.into_inner());
        statuses.insert(rrn.to_owned(), status.to_owned());
    }
}

/// Serves the stand-in on a free loopback port, accepting `api_key`. It runs until the
/// runtime stops.
pub async fn start(api_key: &str) -> std::io::Result<StandIn> {
    let shared = Arc::new(Shared { api_key: api_key.to_owned(), statuses: RwLock::default() });
    let app = Router::new().route("/qr/{rrn}/status", get(status).put(set_status)).with_state(Arc::clone(&shared));
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
    let url = format!("http://{}", listener.local_addr()?);
    tokio::spawn(async move {
        if let Err(error) = axum::serve(listener, app).await {
            tracing::error!(%error, "AZQR stand-in stopped");
        }
    });
    Ok(StandIn { url, shared })
}

#[derive(Debug, Deserialize)]
struct SetStatus {
    status: String,
}

fn authorized(shared: &Shared, headers: &HeaderMap) -> bool {
    headers.get("apikey").map(|v| v.as_bytes()) == Some(shared.api_key.as_bytes())
}

async fn set_status(
    State(shared): State<Arc<Shared>>,
    UrlPath(rrn): UrlPath<String>,
    headers: HeaderMap,
    Json(body): Json<SetStatus>,
) -> StatusCode {
    if !authorized(&shared, &headers) {
        return StatusCode::UNAUTHORIZED;
    }
    let mut statuses = shared.statuses.write().unwrap_or_else(|poisoned| poisoned.into_inner());
    statuses.insert(rrn, body.status);
    StatusCode::NO_CONTENT
}

async fn status(State(shared): State<Arc<Shared>>, UrlPath(rrn): UrlPath<String>, headers: HeaderMap) -> Response {
    if !authorized(&shared, &headers) {
        return StatusCode::UNAUTHORIZED.into_response();
    }
    let status = shared.statuses.read().unwrap_or_else(|poisoned| poisoned.into_inner()).get(&rrn).cloned();
    match status {
        Some(status) => Json(serde_json::json!({ "status": status, "description": "stand-in" })).into_response(),
        None => StatusCode::NOT_FOUND.into_response(),
    }
}
