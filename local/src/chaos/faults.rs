//! The faults of a chaos run: which are injected, decided from the seed, and a proxy that
//! injects them on the wire in front of DynamoDB Local, the SQS server and the providers'
//! API stand-ins.
//!
//! A decision is a function of the seed, the request's identity and how many times that
//! identity was seen: for a webhook's own AWS calls the identity is the webhook request's
//! id (which the local pipeline passes on, see `serve::RequestTag`) and the operation, so
//! the same seed injects the same faults into the same webhook attempt. For calls no
//! webhook made (the notifier's, the sync's, the reconciler's) it is the operation and its
//! count, which follows the order the calls arrive in.

use std::collections::{BTreeMap, HashMap};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use http_body_util::{BodyExt, Full};
use hyper::body::{Bytes, Incoming};
use hyper::{Request, Response};

use crate::serve::REQUEST_ID_HEADER;

/// A number in [0, 1) from the seed, a key and a count: the same inputs, the same number.
pub fn roll(seed: u64, key: &str, n: u64) -> f64 {
    let mut hash: u64 = 0xcbf2_9ce4_8422_2325;
    for byte in key.bytes() {
        hash ^= u64::from(byte);
        hash = hash.wrapping_mul(0x0100_0000_01b3);
    }
    let mut x = hash ^ seed.wrapping_mul(0x9e37_79b9_7f4a_7c15) ^ n.wrapping_mul(0xbf58_476d_1ce4_e5b9);
    x = (x ^ (x >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    x = (x ^ (x >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    x ^= x >> 31;
    (x >> 11) as f64 / (1_u64 << 53) as f64
}

/// Every kind of fault a chaos run injects.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Fault {
    /// The connection to DynamoDB is dropped without an answer.
    DynamoDbReset,
    /// A DynamoDB request stalls past the SDK's attempt timeout (before or after DynamoDB applied it).
    DynamoDbStall,
    /// DynamoDB answers `ProvisionedThroughputExceededException`, in its own format.
    DynamoDbThrottle,
    /// SQS refuses a `SendMessage` (500 `InternalError`).
    SqsSendRefused,
    /// SQS accepts a `SendMessage`, and the answer comes after the SDK gave up.
    SqsSendTimeout,
    /// A provider's API answers 503.
    ApiError,
    /// A provider's API stalls past its client's timeout.
    ApiStall,
    /// The merchant answers 500.
    Merchant500,
    /// The merchant hangs past the notifier's timeout.
    MerchantHang,
    /// The merchant answers 429 with `Retry-After: 1`.
    Merchant429,
    /// The merchant answers 410 (a burst of them).
    Merchant410,
}

impl Fault {
    pub const ALL: [Fault; 11] = [
        Fault::DynamoDbReset,
        Fault::DynamoDbStall,
        Fault::DynamoDbThrottle,
        Fault::SqsSendRefused,
        Fault::SqsSendTimeout,
        Fault::ApiError,
        Fault::ApiStall,
        Fault::Merchant500,
        Fault::MerchantHang,
        Fault::Merchant429,
        Fault::Merchant410,
    ];

    pub fn name(self) -> &'static str {
        match self {
            Fault::DynamoDbReset => "dynamodb connection reset",
            Fault::DynamoDbStall => "dynamodb stall (4 s)",
            Fault::DynamoDbThrottle => "dynamodb throttled",
            Fault::SqsSendRefused => "sqs send refused",
            Fault::SqsSendTimeout => "sqs send accepted, answer after the timeout",
            Fault::ApiError => "provider api 503",
            Fault::ApiStall => "provider api stall (6 s)",
            Fault::Merchant500 => "merchant 500",
            Fault::MerchantHang => "merchant hangs past the timeout",
            Fault::Merchant429 => "merchant 429 with Retry-After",
            Fault::Merchant410 => "merchant 410 (burst)",
        }
    }
}

/// How long a stalled DynamoDB request or a held SQS answer waits: past the SDK's
/// attempt timeout.
pub const AWS_STALL: Duration = Duration::from_secs(4);
/// How long a stalled provider API waits: past its clients' 4 s timeout.
pub const API_STALL: Duration = Duration::from_secs(6);

/// Every fault injected, each with what it hit (a webhook request's id, or the path of a
/// provider API call); and whether faults are being injected at all.
#[derive(Debug)]
pub struct FaultLog {
    enabled: AtomicBool,
    injected: Mutex<Vec<(Fault, String)>>,
}

impl Default for FaultLog {
    fn default() -> Self {
        FaultLog { enabled: AtomicBool::new(true), injected: Mutex::new(Vec::new()) }
    }
}

impl FaultLog {
    pub fn enabled(&self) -> bool {
        self.enabled.load(Ordering::SeqCst)
    }

    /// From now on, nothing is injected: the run heals.
    pub fn stop(&self) {
        self.enabled.store(false, Ordering::SeqCst);
    }

    pub fn record(&self, fault: Fault, hit: &str) {
        self.injected.lock().unwrap_or_else(|p| p.into_inner()).push((fault, hit.to_owned()));
    }

    pub fn injected(&self) -> Vec<(Fault, String)> {
        self.injected.lock().unwrap_or_else(|p| p.into_inner()).clone()
    }

    /// How many of each kind.
    pub fn counts(&self) -> BTreeMap<Fault, usize> {
        let mut counts: BTreeMap<Fault, usize> = Fault::ALL.iter().map(|f| (*f, 0)).collect();
        for (fault, _) in self.injected.lock().unwrap_or_else(|p| p.into_inner()).iter() {
            *counts.entry(*fault).or_default() += 1;
        }
        counts
    }
}

/// Decides the fault (if any) for one request: its operation (`x-amz-target`, or the
/// path), its identity key, and how many times that key was seen before.
pub type Decide = dyn Fn(&str, &str, u64) -> Option<Fault> + Send + Sync;

/// DynamoDB's and SQS's faults. The emulators' set-up calls (creating the table and
/// queues, the secrets) meet none: they are the local stand-in for `sam deploy`.
pub fn aws(seed: u64) -> Box<Decide> {
    Box::new(move |operation: &str, key: &str, n: u64| {
        let r = roll(seed, key, n);
        if let Some(action) = operation.strip_prefix("DynamoDB_20120810.") {
            if matches!(action, "CreateTable" | "DescribeTable" | "UpdateTimeToLive" | "DescribeTimeToLive") {
                return None;
            }
            return match r {
                r if r < 0.02 => Some(Fault::DynamoDbReset),
                r if r < 0.03 => Some(Fault::DynamoDbStall),
                r if r < 0.06 => Some(Fault::DynamoDbThrottle),
                _ => None,
            };
        }
        match (operation, r) {
            ("AmazonSQS.SendMessage", r) if r < 0.06 => Some(Fault::SqsSendRefused),
            ("AmazonSQS.SendMessage", r) if r < 0.09 => Some(Fault::SqsSendTimeout),
            _ => None,
        }
    })
}

/// The providers' API faults (status queries and Pagstar's `GET /cob`; its token
/// endpoint meets none).
pub fn api(seed: u64) -> Box<Decide> {
    Box::new(move |operation: &str, key: &str, n: u64| {
        if operation.contains("/oauth/") {
            return None;
        }
        match roll(seed, key, n) {
            r if r < 0.05 => Some(Fault::ApiError),
            r if r < 0.08 => Some(Fault::ApiStall),
            _ => None,
        }
    })
}

struct Proxy {
    upstream: String,
    client: reqwest::Client,
    decide: Box<Decide>,
    log: Arc<FaultLog>,
    seen: Mutex<HashMap<String, u64>>,
}

/// The connection is dropped without an answer.
#[derive(Debug)]
struct Reset;

impl std::fmt::Display for Reset {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("connection reset by the chaos proxy")
    }
}

impl std::error::Error for Reset {}

/// Serves a proxy to `upstream` on a free loopback port, injecting what `decide` says
/// while `log` is enabled; returns its URL.
pub async fn start_proxy(upstream: &str, decide: Box<Decide>, log: Arc<FaultLog>) -> std::io::Result<String> {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
    let url = format!("http://{}", listener.local_addr()?);
    let client = reqwest::Client::builder()
        .timeout(Duration::from_secs(60))
        .build()
        .map_err(|e| std::io::Error::other(e.to_string()))?;
    let proxy = Arc::new(Proxy {
        upstream: upstream.trim_end_matches('/').to_owned(),
        client,
        decide,
        log,
        seen: Mutex::new(HashMap::new()),
    });
    tokio::spawn(async move {
        loop {
            let Ok((stream, _)) = listener.accept().await else { continue };
            let proxy = Arc::clone(&proxy);
            tokio::spawn(async move {
                let service = hyper::service::service_fn(move |request| {
                    let proxy = Arc::clone(&proxy);
                    async move { proxy.handle(request).await }
                });
                let _ = hyper::server::conn::http1::Builder::new()
                    .serve_connection(hyper_util::rt::TokioIo::new(stream), service)
                    .await;
            });
        }
    });
    Ok(url)
}

fn answer(status: u16, content_type: &str, body: String) -> Response<Full<Bytes>> {
    let mut response = Response::new(Full::new(Bytes::from(body)));
    *response.status_mut() = http::StatusCode::from_u16(status).unwrap_or(http::StatusCode::INTERNAL_SERVER_ERROR);
    if let Ok(value) = http::HeaderValue::from_str(content_type) {
        response.headers_mut().insert(http::header::CONTENT_TYPE, value);
    }
    response
}

impl Proxy {
    async fn handle(&self, request: Request<Incoming>) -> Result<Response<Full<Bytes>>, Reset> {
        let (parts, body) = request.into_parts();
        let body = body.collect().await.map_err(|_| Reset)?.to_bytes();
        let header = |name: &str| parts.headers.get(name).and_then(|v| v.to_str().ok()).map(str::to_owned);
        let operation = header("x-amz-target").unwrap_or_else(|| parts.uri.path().to_owned());
        let tag = header(REQUEST_ID_HEADER);
        let key = format!("{}|{operation}", tag.as_deref().unwrap_or_default());
        let n = {
            let mut seen = self.seen.lock().unwrap_or_else(|p| p.into_inner());
            let count = seen.entry(key.clone()).or_default();
            *count += 1;
            *count - 1
        };
        let fault = if self.log.enabled() { (self.decide)(&operation, &key, n) } else { None };
        if let Some(fault) = fault {
            self.log.record(fault, tag.as_deref().unwrap_or(parts.uri.path()));
        }
        let json = "application/x-amz-json-1.0";
        match fault {
            None => self.forward(&parts, body).await,
            Some(Fault::DynamoDbReset) => Err(Reset),
            Some(Fault::DynamoDbThrottle) => Ok(answer(
                400,
                json,
                serde_json::json!({
                    "__type": "com.amazonaws.dynamodb.v20120810#ProvisionedThroughputExceededException",
                    "message": "The level of configured provisioned throughput for the table was exceeded. Consider increasing your provisioning level with the UpdateTable API.",
                })
                .to_string(),
            )),
            Some(Fault::SqsSendRefused) => Ok(answer(
                500,
                json,
                serde_json::json!({ "__type": "com.amazonaws.sqs#InternalError", "message": "internal error" })
                    .to_string(),
            )),
            Some(Fault::ApiError) => Ok(answer(503, "application/json", r#"{"error":"unavailable"}"#.into())),
            Some(Fault::DynamoDbStall) if n % 2 == 0 => {
                tokio::time::sleep(AWS_STALL).await;
                self.forward(&parts, body).await
            }
            Some(Fault::DynamoDbStall | Fault::SqsSendTimeout) => {
                let answer = self.forward(&parts, body).await;
                tokio::time::sleep(AWS_STALL).await;
                answer
            }
            Some(Fault::ApiStall) => {
                tokio::time::sleep(API_STALL).await;
                self.forward(&parts, body).await
            }
            Some(
                Fault::Merchant500 | Fault::MerchantHang | Fault::Merchant429 | Fault::Merchant410,
            ) => self.forward(&parts, body).await,
        }
    }

    async fn forward(&self, parts: &http::request::Parts, body: Bytes) -> Result<Response<Full<Bytes>>, Reset> {
        let path = parts.uri.path_and_query().map(|p| p.as_str()).unwrap_or("/");
        let mut headers = parts.headers.clone();
        for name in [http::header::HOST, http::header::CONTENT_LENGTH, http::header::CONNECTION] {
            headers.remove(name);
        }
        let upstream = self
            .client
            .request(parts.method.clone(), format!("{}{path}", self.upstream))
            .headers(headers)
            .body(body)
            .send()
            .await
            .map_err(|_| Reset)?;
        let status = upstream.status();
        let mut headers = upstream.headers().clone();
        for name in [http::header::CONTENT_LENGTH, http::header::TRANSFER_ENCODING, http::header::CONNECTION] {
            headers.remove(name);
        }
        let bytes = upstream.bytes().await.map_err(|_| Reset)?;
        let mut response = Response::new(Full::new(bytes));
        *response.status_mut() = status;
        *response.headers_mut() = headers;
        Ok(response)
    }
}
