//! A stand-in for Pagstar's API on loopback, for the local pipeline and the tests:
//! `POST /oauth/token` (client credentials) and `GET /cob/{txid}` answering from its
//! charges (`{"<txid>": {"status": "CONCLUIDA", "original": "100.00", "paid": "90.00",
//! "devolucoes": [{"id": "D1", "valor": "10.00", "status": "EM_PROCESSAMENTO"}]}}`; a
//! `CONCLUIDA` charge has one Pix payment of `paid`, or of `original`, with its returns),
//! which start as
//! `stand-in-charges.json` (what the fixtures in events/pagstar expect) and can be changed.
//! A charge is created when it is set (`calendario.criacao`) and payable for a day, unless
//! set otherwise.
// Test tooling behind the `simulator` feature, never on Lambda: a panic fails a test.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::indexing_slicing)]

use std::collections::HashMap;
use std::sync::{Arc, RwLock};

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
    /// What the payer paid, once the charge is `CONCLUIDA` (one Pix payment); the
    /// original amount if not given.
    #[serde(default)]
    pub paid: Option<String>,
    /// RFC 3339; when the stand-in started, if not given.
    #[serde(default)]
    pub criacao: Option<String>,
    #[serde(default = "a_day")]
    pub expiracao: u64,
    /// The returns of its Pix payment (BACEN's `devolucoes`), in the order made.
    #[serde(default)]
    pub devolucoes: Vec<Return>,
}

/// A return of a charge's Pix payment, as BACEN's `devolucao` says it.
#[derive(Debug, Clone, Deserialize, serde::Serialize)]
pub struct Return {
    pub id: String,
    pub valor: String,
    /// `EM_PROCESSAMENTO`, `DEVOLVIDO` or `NAO_REALIZADO`.
    pub status: String,
}

fn a_day() -> u64 {
    crate::client::DEFAULT_EXPIRACAO
}

fn rfc3339(at: time::OffsetDateTime) -> String {
    at.format(&time::format_description::well_known::Rfc3339).unwrap_or_default()
}

/// Charges by txid.
pub type Charges = HashMap<String, Charge>;

/// The charges the fixtures in events/pagstar expect.
pub fn fixture_charges() -> Charges {
    serde_json::from_str(include_str!("../stand-in-charges.json")).unwrap_or_default()
}

/// A running stand-in: its base URL, and its charges, which can be changed while it runs.
#[derive(Debug, Clone)]
pub struct StandIn {
    pub url: String,
    charges: Arc<RwLock<Charges>>,
}

impl StandIn {
    /// Sets (or adds) the charge `txid`, as when the payer pays or the charge is removed.
    pub fn set(&self, txid: &str, status: &str, original: &str) {
        let now = time::OffsetDateTime::now_utc();
        self.set_created(txid, status, original, now, a_day());
    }

    /// Sets the return `id` of the charge `txid`'s payment (adds it, or changes its status),
    /// as when the receiver returns a Pix or BACEN's MED does; `false` if there is no such
    /// charge.
    pub fn set_return(&self, txid: &str, id: &str, valor: &str, status: &str) -> bool {
        let mut charges = self.charges.write().unwrap_or_else(|poisoned| poisoned.into_inner());
        let Some(charge) = charges.get_mut(txid) else { return false };
        let made = Return { id: id.to_owned(), valor: valor.to_owned(), status: status.to_owned() };
        match charge.devolucoes.iter_mut().find(|r| r.id == id) {
            Some(existing) => *existing = made,
            None => charge.devolucoes.push(made),
        }
        true
    }

    /// Sets the charge `txid`, created at `criacao` and payable for `expiracao` seconds.
    pub fn set_created(&self, txid: &str, status: &str, original: &str, criacao: time::OffsetDateTime, expiracao: u64) {
        let charge = Charge {
            status: status.to_owned(),
            original: original.to_owned(),
            paid: None,
            criacao: Some(rfc3339(criacao)),
            expiracao,
            devolucoes: Vec::new(),
        };
        self.charges.write().unwrap_or_else(|poisoned| poisoned.into_inner()).insert(txid.to_owned(), charge);
    }
}

/// Serves the stand-in on a free loopback port. It runs until the runtime stops.
pub async fn start(mut charges: Charges) -> std::io::Result<StandIn> {
    let started = rfc3339(time::OffsetDateTime::now_utc());
    for charge in charges.values_mut() {
        charge.criacao.get_or_insert_with(|| started.clone());
    }
    let charges = Arc::new(RwLock::new(charges));
    let app = Router::new()
        .route("/oauth/token", post(token))
        .route("/cob/{txid}", get(cob))
        .with_state(Arc::clone(&charges));
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
    let url = format!("http://{}", listener.local_addr()?);
    tokio::spawn(async move {
        if let Err(error) = axum::serve(listener, app).await {
            tracing::error!(%error, "Pagstar stand-in stopped");
        }
    });
    Ok(StandIn { url, charges })
}

async fn token(headers: HeaderMap) -> Response {
    let basic = headers.get("authorization").and_then(|v| v.to_str().ok()).is_some_and(|v| v.starts_with("Basic "));
    if !basic {
        return StatusCode::UNAUTHORIZED.into_response();
    }
    Json(serde_json::json!({ "access_token": TOKEN, "token_type": "Bearer", "expires_in": 300 })).into_response()
}

async fn cob(
    State(charges): State<Arc<RwLock<Charges>>>,
    UrlPath(txid): UrlPath<String>,
    headers: HeaderMap,
) -> Response {
    let bearer = headers.get("authorization").and_then(|v| v.to_str().ok()) == Some(&format!("Bearer {TOKEN}"));
    if !bearer {
        return StatusCode::UNAUTHORIZED.into_response();
    }
    let charge = charges.read().unwrap_or_else(|poisoned| poisoned.into_inner()).get(&txid).cloned();
    match charge {
        Some(charge) => Json(serde_json::json!({
            "txid": txid,
            "status": charge.status,
            "calendario": { "criacao": charge.criacao, "expiracao": charge.expiracao },
            "valor": { "original": charge.original },
            "pix": if charge.status == "CONCLUIDA" {
                let paid = charge.paid.as_ref().unwrap_or(&charge.original);
                serde_json::json!([{
                    "endToEndId": "E18236120202611221000s0000000001", "txid": txid, "valor": paid,
                    "devolucoes": charge.devolucoes,
                }])
            } else {
                serde_json::json!([])
            },
        }))
        .into_response(),
        None => StatusCode::NOT_FOUND.into_response(),
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn the_fixture_charges_parse() {
        let charges = super::fixture_charges();
        assert_eq!(charges.len(), 7);
        assert_eq!(charges["pagstarconcluidadevolvida0001"].devolucoes.len(), 2);
        assert_eq!(charges["pagstarconcluida0000000000001"].status, "CONCLUIDA");
    }
}
