//! A stand-in for Pay3's order query on loopback, for the local pipeline and the tests:
//! `GET /v1/client/orders` and `/v1/client/crypto-orders` by `requestId` and `clientId`,
//! with the `access-token` header, answering `{"data": [...]}` from what was set.
// Test tooling behind the `simulator` feature, never on Lambda: a panic fails a test.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::indexing_slicing)]

use std::collections::HashMap;
use std::sync::{Arc, RwLock};

use axum::extract::{Query, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::{Json, Router};
use serde_json::Value;

#[derive(Debug, Default)]
struct Shared {
    client_id: String,
    access_token: String,
    /// Orders by requestId.
    orders: RwLock<HashMap<String, Value>>,
}

/// A running stand-in: its base URL, and the orders it answers.
#[derive(Debug, Clone)]
pub struct StandIn {
    pub url: String,
    shared: Arc<Shared>,
}

impl StandIn {
    /// Pay3 now says `status` about the order `reference` (`{orderId}:{orderType}`),
    /// created with `request_id`.
    pub fn set(&self, request_id: &str, reference: &str, status: &str) {
        let (order_id, order_type) = reference.rsplit_once(':').unwrap_or((reference, "CHECKOUT"));
        let order = serde_json::json!({
            "orderId": order_id, "orderType": order_type, "orderStatus": status, "requestId": request_id,
            "updatedTs": 1_795_000_000_000_u64,
        });
        let mut orders = self.shared.orders.write().unwrap_or_else(|poisoned| poisoned.into_inner());
        orders.insert(request_id.to_owned(), order);
    }
}

/// Serves the stand-in on a free loopback port. It runs until the runtime stops.
pub async fn start(client_id: &str, access_token: &str) -> std::io::Result<StandIn> {
    let shared = Arc::new(Shared {
        client_id: client_id.to_owned(),
        access_token: access_token.to_owned(),
        orders: RwLock::default(),
    });
    let app = Router::new()
        .route("/v1/client/orders", get(orders))
        .route("/v1/client/crypto-orders", get(orders))
        .with_state(Arc::clone(&shared));
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
    let url = format!("http://{}", listener.local_addr()?);
    tokio::spawn(async move {
        if let Err(error) = axum::serve(listener, app).await {
            tracing::error!(%error, "Pay3 stand-in stopped");
        }
    });
    Ok(StandIn { url, shared })
}

async fn orders(
    State(shared): State<Arc<Shared>>,
    Query(query): Query<HashMap<String, String>>,
    headers: HeaderMap,
) -> Response {
    let token = headers.get("access-token").map(|v| v.as_bytes());
    if token != Some(shared.access_token.as_bytes()) {
        return StatusCode::UNAUTHORIZED.into_response();
    }
    if query.get("clientId") != Some(&shared.client_id) {
        return StatusCode::BAD_REQUEST.into_response();
    }
    let orders = shared.orders.read().unwrap_or_else(|poisoned| poisoned.into_inner());
    let data: Vec<Value> = query.get("requestId").and_then(|id| orders.get(id)).cloned().into_iter().collect();
    Json(serde_json::json!({ "data": data, "total": data.len() })).into_response()
}
