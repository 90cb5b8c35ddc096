//! Writes `events/<provider>/*.json`: API Gateway HTTP API (payload 2.0) events for every
//! webhook, made by each provider's simulator (from the registry) with the dev secrets
//! and keys of `local.env.example` and `dev-keys/`, at a fixed time (`FIXTURE_TIME`).
//! Run from the workspace root: `cargo run -p local-pipeline --bin make-events`.

use std::path::Path;

use local_pipeline::registry::{self, EachProvider};
use local_pipeline::DevEnv;
use serde_json::{json, Value};
use shared::{Inbound, Provider, Simulator};
use time::macros::datetime;
use time::OffsetDateTime;

type Error = Box<dyn std::error::Error + Send + Sync>;

/// When every fixture was "sent"; tests run them with the clock at this time.
const FIXTURE_TIME: OffsetDateTime = datetime!(2026-11-22 10:00:00 UTC);

/// The API Gateway event of `request` to the route `method route`.
fn event_of(method: &str, route: &str, request: &Inbound) -> Value {
    let path = route
        .split('/')
        .map(|part| match part.strip_prefix('{').and_then(|p| p.strip_suffix('}')) {
            Some(name) => request.path_parameter(name).unwrap_or_default(),
            None => part,
        })
        .collect::<Vec<_>>()
        .join("/");
    let mut query: Vec<(&String, &String)> = request.query.iter().collect();
    query.sort();
    let query = query.iter().map(|(k, v)| format!("{k}={v}")).collect::<Vec<_>>().join("&");
    let headers: Vec<(&str, &str)> =
        request.headers.iter().map(|(name, value)| (name.as_str(), value.to_str().unwrap_or_default())).collect();
    event(method, route, &path, &query, &headers, &String::from_utf8_lossy(&request.body))
}

/// One API Gateway HTTP API event.
fn event(method: &str, route: &str, path: &str, query: &str, headers: &[(&str, &str)], body: &str) -> Value {
    let mut header_map = serde_json::Map::new();
    header_map.insert("host".into(), json!("abc123.execute-api.eu-central-1.amazonaws.com"));
    for (name, value) in headers {
        header_map.insert(name.to_ascii_lowercase(), json!(value));
    }
    let mut path_parameters = serde_json::Map::new();
    for (template, actual) in route.split('/').zip(path.split('/')) {
        if let Some(name) = template.strip_prefix('{').and_then(|t| t.strip_suffix('}')) {
            path_parameters.insert(name.into(), json!(actual));
        }
    }
    let query_parameters: serde_json::Map<String, Value> =
        query.split('&').filter_map(|pair| pair.split_once('=')).map(|(k, v)| (k.to_owned(), json!(v))).collect();
    let route_key = format!("{method} {route}");
    let mut event = json!({
        "version": "2.0",
        "routeKey": route_key,
        "rawPath": path,
        "rawQueryString": query,
        "headers": header_map,
        "requestContext": {
            "accountId": "123456789012", "apiId": "abc123",
            "domainName": "abc123.execute-api.eu-central-1.amazonaws.com", "domainPrefix": "abc123",
            "http": { "method": method, "path": path, "protocol": "HTTP/1.1", "sourceIp": "203.0.113.10", "userAgent": "provider" },
            "requestId": "fixture", "routeKey": route_key, "stage": "$default",
            "time": "22/Nov/2026:10:00:00 +0000", "timeEpoch": FIXTURE_TIME.unix_timestamp() * 1000
        },
        "body": body,
        "isBase64Encoded": false
    });
    if !path_parameters.is_empty() {
        event["pathParameters"] = Value::Object(path_parameters);
    }
    if !query_parameters.is_empty() {
        event["queryStringParameters"] = Value::Object(query_parameters);
    }
    event
}

/// The status API: the AZQR fixture's completed transaction, and one that does not exist.
fn transactions() -> Vec<(&'static str, Value)> {
    let route = transactions_api::PATH;
    let get = |path: &str| {
        let mut event = event("GET", route, path, "", &[], "");
        event["body"] = Value::Null;
        event
    };
    vec![
        ("get-completed", get("/transactions/azqr/100000000006")),
        ("get-unknown", get("/transactions/azqr/999999999999")),
    ]
}

/// Every provider's fixtures, from its simulator.
async fn providers(env: &DevEnv, root: &Path) -> Result<Vec<(&'static str, Vec<(&'static str, Value)>)>, Error> {
    type Made<'a> = std::pin::Pin<
        Box<dyn std::future::Future<Output = Result<(&'static str, Vec<(&'static str, Value)>), Error>> + 'a>,
    >;
    struct Make<'a> {
        env: &'a DevEnv,
        root: &'a Path,
        made: Vec<Made<'a>>,
    }
    impl EachProvider for Make<'_> {
        fn provider<S: Simulator>(&mut self) {
            let (env, root) = (self.env, self.root);
            self.made.push(Box::pin(async move {
                let (simulator, _) = S::start(env, root).await?;
                let (method, route) = (S::Provider::METHOD, S::Provider::PATH);
                let events = simulator.fixtures(FIXTURE_TIME)?;
                Ok((
                    S::Provider::NAME,
                    events.iter().map(|(name, request)| (*name, event_of(method, route, request))).collect(),
                ))
            }));
        }
    }
    let mut make = Make { env, root, made: Vec::new() };
    registry::for_each(&mut make);
    let mut all = Vec::new();
    for made in make.made {
        all.push(made.await?);
    }
    Ok(all)
}

#[tokio::main(flavor = "current_thread")]
async fn main() -> Result<(), Error> {
    let root = Path::new(".");
    let env = DevEnv::load(&root.join("local.env.example"))?;
    let mut providers = providers(&env, root).await?;
    providers.push(("transactions", transactions()));
    for (provider, events) in providers {
        let dir = root.join("events").join(provider);
        std::fs::create_dir_all(&dir)?;
        for entry in std::fs::read_dir(&dir)? {
            std::fs::remove_file(entry?.path())?;
        }
        for (name, event) in &events {
            std::fs::write(dir.join(format!("{name}.json")), serde_json::to_string_pretty(event)? + "\n")?;
        }
        println!("events/{provider}: {} fixtures", events.len());
    }
    Ok(())
}
