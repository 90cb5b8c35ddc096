//! A stand-in for Pagstar's API on loopback, for the local pipeline and the fixture
//! tests: `POST /oauth/token` (client credentials) and `GET /cob/{txid}` answering from a
//! JSON file of charges (`{"<txid>": {"status": "CONCLUIDA", "original": "100.00"}}`).

use std::collections::HashMap;
use std::path::Path;
use std::sync::Arc;

use axum::extract::{Path as UrlPath, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use serde::Deserialize;

/// The token the stand-in issues.
const TOKEN: &str = "pagstar-standin-token";

#[derive(Debug, Clone, Deserialize)]
pub struct Charge {
    pub status: String,
    pub original: String,
}

/// Charges by txid.
pub type Charges = HashMap<String, Charge>;

pub fn load_charges(path: &Path) -> std::io::Result<Charges> {
    let text = std::fs::read_to_string(path)?;
    serde_json::from_str(&text).map_err(std::io::Error::other)
}

/// Serves the stand-in on a free loopback port; returns its base URL. It runs until the
/// runtime stops.
pub async fn start(charges: Charges) -> std::io::Result<String> {
    let app =
        Router::new().route("/oauth/token", post(token)).route("/cob/{txid}", get(cob)).with_state(Arc::new(charges));
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
    let url = format!("http://{}", listener.local_addr()?);
    tokio::spawn(async move {
        if let Err(error) = axum::serve(listener, app).await {
            tracing::error!(%error, "Pagstar stand-in stopped");
        }
    });
    Ok(url)
}

async fn token(headers: HeaderMap) -> Response {
    let basic = headers.get("authorization").and_then(|v| v.to_str().ok()).is_some_and(|v| v.starts_with("Basic "));
    if !basic {
        return StatusCode::UNAUTHORIZED.into_response();
    }
    Json(serde_json::json!({ "access_token": TOKEN, "token_type": "Bearer", "expires_in": 300 })).into_response()
}

async fn cob(State(charges): State<Arc<Charges>>, UrlPath(txid): UrlPath<String>, headers: HeaderMap) -> Response {
    let bearer = headers.get("authorization").and_then(|v| v.to_str().ok()) == Some(&format!("Bearer {TOKEN}"));
    if !bearer {
        return StatusCode::UNAUTHORIZED.into_response();
    }
    match charges.get(&txid) {
        Some(charge) => Json(serde_json::json!({
            "txid": txid,
            "status": charge.status,
            "calendario": { "criacao": "2026-11-22T10:00:00Z", "expiracao": 3600 },
            "valor": { "original": charge.original },
        }))
        .into_response(),
        None => StatusCode::NOT_FOUND.into_response(),
    }
}
