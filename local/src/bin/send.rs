//! Sends a fixture to the local pipeline as the provider would:
//! `scripts/send qitech events/qitech/concluded.json`.
//!
//! The fixture's method, path, query, headers and body are sent to
//! `http://127.0.0.1:$PORT`. A QI Tech fixture signed by the dev key is signed again
//! with its timestamp moved forward by the time since the fixture was made (its other
//! claims kept): a fresh fixture passes the 5-minute window, a stale one stays stale,
//! and one that is bad on purpose stays bad.

use std::path::Path;
use std::process::ExitCode;

use local_pipeline::{fixtures, registry, DevEnv};
use serde_json::Value;
use shared::runtime::config::Env;
use time::OffsetDateTime;

type Error = Box<dyn std::error::Error>;

fn usage() -> String {
    let names: Vec<&str> = registry::routes().iter().map(|route| route.name).collect();
    format!("usage: scripts/send <{}> <events/provider/fixture.json>", names.join("|"))
}

async fn send(provider: &str, fixture: &Path) -> Result<u16, Error> {
    let env = DevEnv::load(Path::new("local.env.example"))?;
    let mut event: Value = serde_json::from_str(&std::fs::read_to_string(fixture)?)?;
    fixtures::resign_for(&mut event, Path::new("."), &env, OffsetDateTime::now_utc())?;
    let path = event["rawPath"].as_str().ok_or("fixture has no rawPath")?;
    let route = registry::routes().into_iter().find(|route| route.name == provider);
    let route = route.ok_or_else(|| format!("no provider named {provider}\n{}", usage()))?;
    if event["routeKey"].as_str() != Some(&route.key()) {
        return Err(format!("{} is not a {provider} fixture (path {path})", fixture.display()).into());
    }
    let method = event["requestContext"]["http"]["method"].as_str().ok_or("fixture has no method")?;
    let query = event["rawQueryString"].as_str().unwrap_or_default();
    let body = event["body"].as_str().unwrap_or_default().to_owned();
    let port = env.optional("PORT").unwrap_or_else(|| "3000".into());
    let url = if query.is_empty() {
        format!("http://127.0.0.1:{port}{path}")
    } else {
        format!("http://127.0.0.1:{port}{path}?{query}")
    };

    let mut request = reqwest::Client::new().request(method.parse()?, &url);
    for (name, value) in event["headers"].as_object().into_iter().flatten() {
        let value = value.as_str().unwrap_or_default();
        if !matches!(name.as_str(), "host" | "content-length") {
            request = request.header(name, value);
        }
    }
    let response = request.body(body).send().await?;
    let status = response.status().as_u16();
    let text = response.text().await?;
    println!("{method} {path} -> {status} {text}");
    Ok(status)
}

#[tokio::main]
async fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let [provider, fixture] = args.as_slice() else {
        eprintln!("{}", usage());
        return ExitCode::from(2);
    };
    match send(provider, Path::new(fixture)).await {
        Ok(status) if status < 500 => ExitCode::SUCCESS,
        Ok(_) => ExitCode::FAILURE,
        Err(error) => {
            eprintln!("send: {error}");
            ExitCode::FAILURE
        }
    }
}
