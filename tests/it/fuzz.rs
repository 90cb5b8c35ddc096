//! Fuzzing of each provider's verify-and-parse entry point (`Provider::receive`) with
//! proptest: arbitrary bytes and mutations of the fixtures' bodies, signed as the
//! provider would where it signs, so the parsers behind verification are reached.
//! Nothing may panic or answer 5xx. `FUZZ_CASES` sets the cases per target (default 256).

use crate::support::root;
use aws_lc_rs::hmac;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine;
use lambda_http::{Body, Request, RequestExt};
use proptest::collection::vec;
use proptest::prelude::*;
use proptest::test_runner::{Config, TestRunner};
use shared::{Env, Provider};
use time::OffsetDateTime;

fn cases() -> u32 {
    std::env::var("FUZZ_CASES").ok().and_then(|c| c.parse().ok()).unwrap_or(256)
}

fn env() -> local_pipeline::DevEnv {
    local_pipeline::DevEnv::load(&root().join("local.env.example")).expect("env")
}

/// Fixture bodies of a provider, as seeds for mutation.
fn seeds(provider: &str) -> Vec<Vec<u8>> {
    crate::support::fixture_files()
        .into_iter()
        .filter(|f| f.starts_with(&format!("{provider}/")))
        .map(|f| {
            let text = std::fs::read_to_string(root().join("events").join(f)).expect("fixture");
            let event: serde_json::Value = serde_json::from_str(&text).expect("JSON");
            event["body"].as_str().unwrap_or_default().as_bytes().to_vec()
        })
        .collect()
}

/// Arbitrary bytes, or a seed with bytes flipped, cut or inserted.
fn body(seeds: Vec<Vec<u8>>) -> impl Strategy<Value = Vec<u8>> {
    let mutated = (proptest::sample::select(seeds), vec((any::<usize>(), any::<u8>(), 0u8..3), 1..8)).prop_map(
        |(mut seed, edits)| {
            for (at, byte, kind) in edits {
                let at = if seed.is_empty() { 0 } else { at % seed.len() };
                match kind {
                    0 if !seed.is_empty() => seed[at] = byte,
                    1 => seed.truncate(at),
                    _ => seed.insert(at, byte),
                }
            }
            seed
        },
    );
    prop_oneof![vec(any::<u8>(), 0..512), mutated]
}

fn fuzz<P: Provider>(
    name: &str,
    provider: &P,
    strategy: impl Strategy<Value = Vec<u8>>,
    request: impl Fn(Vec<u8>) -> Request,
) {
    let runtime = tokio::runtime::Runtime::new().expect("runtime");
    let now = OffsetDateTime::from_unix_timestamp(1_795_341_600).expect("time");
    let mut runner = TestRunner::new(Config { cases: cases(), failure_persistence: None, ..Config::default() });
    runner
        .run(&strategy, |bytes| {
            let result = runtime.block_on(provider.receive(&shared::Inbound::from_lambda(request(bytes)), now));
            if let Err(error) = result {
                prop_assert!(error.status().is_client_error(), "{name}: {} {error}", error.status());
            }
            Ok(())
        })
        .unwrap_or_else(|e| panic!("{name}: {e}"));
}

fn post() -> http::request::Builder {
    http::Request::builder().method("POST").header("content-type", "application/json")
}

#[test]
fn azqr() {
    let env = env();
    let key = env.required("AZQR_API_KEY").expect("key");
    fuzz("azqr", &azqr_webhook::Azqr::from_env(&env).expect("azqr"), body(seeds("azqr")), |bytes| {
        http::Request::builder()
            .method("PUT")
            .header("apikey", key.as_str())
            .body(Body::from(bytes))
            .expect("request")
            .with_path_parameters(std::collections::HashMap::from([("rrn".to_owned(), "100000000006".to_owned())]))
    });
}

#[test]
fn pay3_claims_behind_a_valid_signature() {
    let env = env();
    let key = hmac::Key::new(hmac::HMAC_SHA384, env.required("PAY3_JWT_SECRET").expect("secret").as_bytes());
    let claims: Vec<Vec<u8>> = seeds("pay3")
        .iter()
        .filter_map(|b| serde_json::from_slice::<serde_json::Value>(b).ok())
        .filter_map(|v| {
            v["payload"].as_str().and_then(|jwt| jwt.split('.').nth(1)).and_then(|c| URL_SAFE_NO_PAD.decode(c).ok())
        })
        .collect();
    fuzz("pay3", &pay3_webhook::Pay3::from_env(&env).expect("pay3"), body(claims), |claims| {
        let input =
            format!("{}.{}", URL_SAFE_NO_PAD.encode(br#"{"alg":"HS384","typ":"JWT"}"#), URL_SAFE_NO_PAD.encode(claims));
        let signature = URL_SAFE_NO_PAD.encode(hmac::sign(&key, input.as_bytes()));
        let body = serde_json::json!({ "payload": format!("{input}.{signature}") }).to_string();
        post().body(Body::Text(body)).expect("request")
    });
}

#[test]
fn pay3_envelope() {
    let env = env();
    fuzz("pay3 envelope", &pay3_webhook::Pay3::from_env(&env).expect("pay3"), body(seeds("pay3")), |bytes| {
        post().body(Body::from(bytes)).expect("request")
    });
}

#[test]
fn qitech_bodies_behind_a_valid_signature() {
    let env = env();
    let pem = std::fs::read_to_string(root().join("dev-keys/qitech-dev-private.pem")).expect("key");
    let signer = qitech_webhook::signing::QiTechSigner::from_pkcs8_pem(&pem).expect("signer");
    let client_key = env.required("QITECH_API_CLIENT_KEY").expect("client key");
    let now = OffsetDateTime::from_unix_timestamp(1_795_341_600).expect("time");
    fuzz("qitech", &qitech_webhook::QiTech::from_env(&env).expect("qitech"), body(seeds("qitech")), |bytes| {
        let jwt = signer.sign(&bytes, "POST", qitech_webhook::PATH, now);
        post()
            .header("authorization", jwt)
            .header("api-client-key", client_key.as_str())
            .body(Body::from(bytes))
            .expect("request")
    });
}

#[test]
fn key2pay() {
    let env = env();
    let token = env.required("KEY2PAY_WEBHOOK_TOKEN").expect("token");
    fuzz("key2pay", &key2pay_webhook::Key2Pay::from_env(&env).expect("key2pay"), body(seeds("key2pay")), |bytes| {
        post()
            .body(Body::from(bytes))
            .expect("request")
            .with_query_string_parameters(std::collections::HashMap::from([("token".to_owned(), token.clone())]))
    });
}

#[test]
fn pagstar() {
    let runtime = tokio::runtime::Runtime::new().expect("runtime");
    let mut env = env();
    let stand_in = runtime.block_on(local_pipeline::pagstar_standin::start(Default::default())).expect("stand-in");
    env.set_default("PAGSTAR_API_URL", stand_in.url.clone());
    let pagstar = pagstar_webhook::Pagstar::from_env(&env).expect("pagstar");
    // The stand-in must outlive the fuzzing: keep its runtime alive on another thread.
    let _keep = std::thread::spawn(move || runtime.block_on(std::future::pending::<()>()));
    fuzz("pagstar", &pagstar, body(seeds("pagstar")), |bytes| post().body(Body::from(bytes)).expect("request"));
}
