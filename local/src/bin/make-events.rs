//! Writes `events/<provider>/*.json`: API Gateway HTTP API (payload 2.0) events for every
//! webhook, made by each provider's simulator (from the registry) with the dev secrets
//! and keys of `local.env.example` and `dev-keys/`, at a fixed time (`FIXTURE_TIME`).
//! Run from the workspace root: `cargo run -p local-pipeline --bin make-events`.

use std::path::Path;

use lambda_http::aws_lambda_events::apigw::{
    ApiGatewayRequestAuthorizer, ApiGatewayRequestAuthorizerIamDescription, ApiGatewayV2httpRequest,
    ApiGatewayV2httpRequestContext, ApiGatewayV2httpRequestContextHttpDescription,
};
use local_pipeline::{registry, DevEnv};
use serde_json::Value;
use shared::pipeline::Inbound;
use time::macros::datetime;
use time::OffsetDateTime;

type Error = Box<dyn std::error::Error + Send + Sync>;

/// When every fixture was "sent"; tests run them with the clock at this time.
const FIXTURE_TIME: OffsetDateTime = datetime!(2026-11-22 10:00:00 UTC);

/// Fields of `ApiGatewayV2httpRequest` that only Custom Authorizer v1 payloads carry (the
/// type marks them deprecated); API Gateway does not send them with a request, so a
/// fixture leaves them out.
const AUTHORIZER_V1_ONLY: [&str; 6] =
    ["type", "methodArn", "httpMethod", "identitySource", "authorizationToken", "resource"];

/// Who signed a request to an IAM-authorized route, as API Gateway's IAM authorizer tells
/// the function (`requestContext.authorizer.iam`).
fn iam_caller() -> ApiGatewayRequestAuthorizer {
    let mut iam = ApiGatewayRequestAuthorizerIamDescription::default();
    iam.account_id = Some("123456789012".into());
    iam.caller_id = Some("AIDAEXAMPLEOPERATOR01".into());
    iam.user_arn = Some("arn:aws:iam::123456789012:user/operator".into());
    iam.user_id = Some("AIDAEXAMPLEOPERATOR01".into());
    let mut authorizer = ApiGatewayRequestAuthorizer::default();
    authorizer.iam = Some(iam);
    authorizer
}

/// The API Gateway HTTP API (payload 2.0) event of `request` to the route `method route`,
/// as `aws_lambda_events` types it.
fn event_of(method: &str, route: &str, request: &Inbound) -> Result<Value, Error> {
    event_signed_by(method, route, request, None)
}

/// As [`event_of`], to an IAM-authorized route: signed by [`iam_caller`].
fn iam_event_of(method: &str, route: &str, request: &Inbound) -> Result<Value, Error> {
    event_signed_by(method, route, request, Some(iam_caller()))
}

/// As [`event_of`], with `authorizer` in its request context.
fn event_signed_by(
    method: &str,
    route: &str,
    request: &Inbound,
    authorizer: Option<ApiGatewayRequestAuthorizer>,
) -> Result<Value, Error> {
    let path = local_pipeline::registry::fill(route, request);
    let mut query: Vec<(&String, &String)> = request.query.iter().collect();
    query.sort();
    let raw_query = query.iter().map(|(k, v)| format!("{k}={v}")).collect::<Vec<_>>().join("&");
    let route_key = format!("{method} {route}");

    let mut http = ApiGatewayV2httpRequestContextHttpDescription::default();
    http.method = method.parse()?;
    http.path = Some(path.clone());
    http.protocol = Some("HTTP/1.1".into());
    http.source_ip = Some("203.0.113.10".into());
    http.user_agent = Some("provider".into());
    let mut context = ApiGatewayV2httpRequestContext::default();
    context.route_key = Some(route_key.clone());
    context.account_id = Some("123456789012".into());
    context.stage = Some("$default".into());
    context.request_id = Some("fixture".into());
    context.apiid = Some("abc123".into());
    context.domain_name = Some("abc123.execute-api.eu-central-1.amazonaws.com".into());
    context.domain_prefix = Some("abc123".into());
    context.time = Some("22/Nov/2026:10:00:00 +0000".into());
    context.time_epoch = FIXTURE_TIME.unix_timestamp() * 1000;
    context.http = http;
    context.authorizer = authorizer;

    let mut event = ApiGatewayV2httpRequest::default();
    event.version = Some("2.0".into());
    event.route_key = Some(route_key);
    event.raw_path = Some(path);
    event.raw_query_string = Some(raw_query);
    event.headers = request.headers.clone();
    event.headers.insert("host", http::HeaderValue::from_static("abc123.execute-api.eu-central-1.amazonaws.com"));
    event.query_string_parameters = request.query.clone().into();
    event.path_parameters = request.path_parameters.clone();
    event.request_context = context;
    event.body = (!request.body.is_empty()).then(|| String::from_utf8_lossy(&request.body).into_owned());
    event.is_base64_encoded = false;

    let mut value = serde_json::to_value(&event)?;
    if let Value::Object(fields) = &mut value {
        for field in AUTHORIZER_V1_ONLY {
            fields.remove(field);
        }
    }
    Ok(value)
}

/// The transactions API: the AZQR fixture's completed transaction, one that does not
/// exist, and a registration attached to the completed one.
fn transactions() -> Result<Vec<(&'static str, Value)>, Error> {
    let get_request = |reference: &str| {
        Inbound::new(http::Method::GET, "")
            .with_path_parameter("provider", "azqr")
            .with_path_parameter("reference", reference)
    };
    let get = |reference: &str| {
        let request = get_request(reference);
        iam_event_of(transactions_api::METHOD, transactions_api::PATH, &request)
    };
    let register = Inbound::new(http::Method::PUT, r#"{"amount":"10.00","currency":"AZN"}"#)
        .with_header("content-type", "application/json")
        .with_path_parameter("provider", "azqr")
        .with_path_parameter("reference", "100000000006");
    Ok(vec![
        ("get-completed", get("100000000006")?),
        ("get-unknown", get("999999999999")?),
        ("register-completed", iam_event_of(transactions_api::REGISTER_METHOD, transactions_api::PATH, &register)?),
        // The same read with no IAM identity (the route opened by mistake): refused.
        ("bad-get-unsigned", event_of(transactions_api::METHOD, transactions_api::PATH, &get_request("100000000006"))?),
    ])
}

/// The events API: the undelivered events (none are, with no notifier), and an unknown id.
fn events() -> Result<Vec<(&'static str, Value)>, Error> {
    let list = Inbound::new(http::Method::GET, "").with_query("delivered", "false").with_query("limit", "10");
    let unknown = Inbound::new(http::Method::GET, "").with_path_parameter("id", "evt_00000000000000000000000000000000");
    Ok(vec![
        ("list-undelivered", iam_event_of("GET", "/events", &list)?),
        ("get-unknown", iam_event_of("GET", "/events/{id}", &unknown)?),
        ("bad-list-unsigned", event_of("GET", "/events", &list)?),
    ])
}

/// Every provider's fixtures, from its simulator, by provider.
async fn providers(env: &DevEnv, root: &Path) -> Result<Vec<(&'static str, Vec<(&'static str, Value)>)>, Error> {
    let mut all: Vec<(&'static str, Vec<(&'static str, Value)>)> = Vec::new();
    for (_, route, fixture) in registry::fixtures(env, root, FIXTURE_TIME).await? {
        let event = (fixture.name, event_of(route.method, route.path, &fixture.request)?);
        match all.last_mut() {
            Some((provider, events)) if *provider == route.name => events.push(event),
            _ => all.push((route.name, vec![event])),
        }
    }
    Ok(all)
}

#[tokio::main(flavor = "current_thread")]
async fn main() -> Result<(), Error> {
    let root = Path::new(".");
    let env = DevEnv::load(&root.join("local.env.example"))?;
    let mut providers = providers(&env, root).await?;
    providers.push(("transactions", transactions()?));
    providers.push(("events", events()?));
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
