//! A local merchant endpoint for the run command (when `NOTIFY_URL` is unset): verifies
//! each delivery's Standard Webhooks signature and prints what arrived.
//! `LOCAL_MERCHANT_STATUS` (default 204) sets its answer, e.g. 500 to watch retries.

use axum::body::Bytes;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use axum::routing::post;
use axum::Router;
use std::sync::Arc;

pub const PATH: &str = "/merchant/webhooks";

struct Merchant {
    verifier: standardwebhooks::Webhook,
    status: StatusCode,
}

/// Serves the endpoint on a free loopback port; returns its URL.
pub async fn start(secret: &str, status: StatusCode) -> std::io::Result<String> {
    let verifier = standardwebhooks::Webhook::new(secret)
        .map_err(|_| std::io::Error::other("NOTIFY_SECRET is not whsec_<base64>"))?;
    let app = Router::new().route(PATH, post(receive)).with_state(Arc::new(Merchant { verifier, status }));
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
    let url = format!("http://{}{PATH}", listener.local_addr()?);
    tokio::spawn(async move {
        if let Err(error) = axum::serve(listener, app).await {
            tracing::error!(%error, "local merchant endpoint stopped");
        }
    });
    Ok(url)
}

async fn receive(State(merchant): State<Arc<Merchant>>, headers: HeaderMap, body: Bytes) -> StatusCode {
    let id = headers.get("webhook-id").and_then(|v| v.to_str().ok()).unwrap_or_default().to_owned();
    if merchant.verifier.verify(&body, &headers).is_err() {
        tracing::warn!(webhook_id = %id, "merchant: signature INVALID, rejected");
        return StatusCode::UNAUTHORIZED;
    }
    let event: serde_json::Value = serde_json::from_slice(&body).unwrap_or_default();
    tracing::info!(
        webhook_id = %id,
        event_type = %event["type"].as_str().unwrap_or_default(),
        transaction = %format!("{}/{}", event["data"]["provider"].as_str().unwrap_or_default(), event["data"]["reference"].as_str().unwrap_or_default()),
        answer = merchant.status.as_u16(),
        "merchant: delivery received, signature verified"
    );
    merchant.status
}
