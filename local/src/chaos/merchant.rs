//! The merchant of a chaos run: it verifies every delivery's signature, records what
//! arrived, and misbehaves while faults are on: 500s, hangs past the notifier's timeout,
//! 429 with `Retry-After`, and one burst of 410s; then it recovers.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::body::Bytes;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::post;
use axum::Router;

use super::faults::{roll, Fault, FaultLog};

/// One delivery as the merchant saw it.
#[derive(Debug, Clone)]
pub struct Received {
    pub webhook_id: String,
    /// The event, decoded; `None` when the body is not one.
    pub event: Option<shared::model::MerchantEvent>,
    pub verified: bool,
    /// What it answered; `None` when it hung past the notifier's timeout.
    pub answer: Option<u16>,
}

/// Where the 410 burst starts (after this many deliveries) and how many it refuses.
#[derive(Debug, Clone, Copy)]
pub struct Burst {
    pub after: usize,
    pub length: usize,
}

struct Merchant {
    verifier: standardwebhooks::Webhook,
    seed: u64,
    log: Arc<FaultLog>,
    hang: Duration,
    burst: Mutex<Burst>,
    received: Mutex<Vec<Received>>,
    seen: Mutex<HashMap<String, u64>>,
}

/// A running merchant endpoint.
#[derive(Clone)]
pub struct ChaosMerchant {
    pub url: String,
    state: Arc<Merchant>,
}

impl std::fmt::Debug for ChaosMerchant {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ChaosMerchant").field("url", &self.url).finish_non_exhaustive()
    }
}

impl ChaosMerchant {
    /// Serves it on a free loopback port; a hang lasts `hang`.
    pub async fn start(
        secret: &str,
        seed: u64,
        log: Arc<FaultLog>,
        hang: Duration,
        burst: Burst,
    ) -> std::io::Result<Self> {
        let verifier = standardwebhooks::Webhook::new(secret)
            .map_err(|_| std::io::Error::other("NOTIFY_SECRET is not whsec_<base64>"))?;
        let state = Arc::new(Merchant {
            verifier,
            seed,
            log,
            hang,
            burst: Mutex::new(burst),
            received: Mutex::new(Vec::new()),
            seen: Mutex::new(HashMap::new()),
        });
        let app = Router::new().route(crate::merchant::PATH, post(receive)).with_state(Arc::clone(&state));
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
        let url = format!("http://{}{}", listener.local_addr()?, crate::merchant::PATH);
        tokio::spawn(async move {
            let _ = axum::serve(listener, app).await;
        });
        Ok(ChaosMerchant { url, state })
    }

    /// Everything received so far, in order of arrival.
    pub fn received(&self) -> Vec<Received> {
        self.state.received.lock().unwrap_or_else(|p| p.into_inner()).clone()
    }
}

async fn receive(State(merchant): State<Arc<Merchant>>, headers: HeaderMap, body: Bytes) -> Response {
    let webhook_id = headers.get("webhook-id").and_then(|v| v.to_str().ok()).unwrap_or_default().to_owned();
    let verified = merchant.verifier.verify(&body, &headers).is_ok();
    let mut received = Received {
        webhook_id: webhook_id.clone(),
        event: serde_json::from_slice(&body).ok(),
        verified,
        answer: Some(204),
    };
    let n = {
        let mut seen = merchant.seen.lock().unwrap_or_else(|p| p.into_inner());
        let count = seen.entry(webhook_id.clone()).or_default();
        *count += 1;
        *count - 1
    };
    let fault = if !verified {
        received.answer = Some(401);
        None
    } else if merchant.log.enabled() {
        decide(&merchant, &webhook_id, n)
    } else {
        None
    };
    if let Some(fault) = fault {
        merchant.log.record(fault, &webhook_id);
    }
    let response = match fault {
        Some(Fault::Merchant410) => {
            received.answer = Some(410);
            StatusCode::GONE.into_response()
        }
        Some(Fault::Merchant500) => {
            received.answer = Some(500);
            StatusCode::INTERNAL_SERVER_ERROR.into_response()
        }
        Some(Fault::Merchant429) => {
            received.answer = Some(429);
            (StatusCode::TOO_MANY_REQUESTS, [("retry-after", "1")]).into_response()
        }
        Some(Fault::MerchantHang) => {
            received.answer = None;
            merchant.received.lock().unwrap_or_else(|p| p.into_inner()).push(received);
            tokio::time::sleep(merchant.hang).await;
            return StatusCode::NO_CONTENT.into_response();
        }
        Some(
            Fault::DynamoDbReset
            | Fault::DynamoDbStall
            | Fault::DynamoDbThrottle
            | Fault::SqsSendRefused
            | Fault::SqsSendTimeout
            | Fault::ApiError
            | Fault::ApiStall,
        )
        | None => match received.answer {
            Some(401) => StatusCode::UNAUTHORIZED.into_response(),
            _ => StatusCode::NO_CONTENT.into_response(),
        },
    };
    merchant.received.lock().unwrap_or_else(|p| p.into_inner()).push(received);
    response
}

/// The burst first (once it starts, every delivery until it is spent), then by roll.
fn decide(merchant: &Merchant, webhook_id: &str, n: u64) -> Option<Fault> {
    let arrived = merchant.received.lock().unwrap_or_else(|p| p.into_inner()).len();
    {
        let mut burst = merchant.burst.lock().unwrap_or_else(|p| p.into_inner());
        if arrived >= burst.after && burst.length > 0 {
            burst.length -= 1;
            return Some(Fault::Merchant410);
        }
    }
    match roll(merchant.seed, &format!("merchant|{webhook_id}"), n) {
        r if r < 0.08 => Some(Fault::Merchant500),
        r if r < 0.11 => Some(Fault::MerchantHang),
        r if r < 0.15 => Some(Fault::Merchant429),
        _ => None,
    }
}
