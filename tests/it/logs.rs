//! Nothing secret reaches the logs: every fixture (good and hostile), outages of
//! DynamoDB, SQS and Pagstar, and notifier deliveries (delivered, failed, refused) run
//! with every log line captured at DEBUG (production logs at INFO); then no API key,
//! token, client secret, JWT, signature or raw body may appear in what was captured.

use std::io::Write;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use crate::support::{fixture_files, root, DevWebhooks, Harness};
use shared::pipeline::{Provider, Webhook};
use shared::runtime::config::Env;
use wiremock::matchers::{header, method};
use wiremock::{Mock, MockServer, ResponseTemplate};

#[derive(Clone, Default)]
struct Captured(Arc<Mutex<Vec<u8>>>);

impl Write for Captured {
    fn write(&mut self, bytes: &[u8]) -> std::io::Result<usize> {
        self.0.lock().unwrap_or_else(|p| p.into_inner()).extend_from_slice(bytes);
        Ok(bytes.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

impl Captured {
    fn text(&self) -> String {
        String::from_utf8_lossy(&self.0.lock().unwrap_or_else(|p| p.into_inner())).into_owned()
    }
}

/// Everything in a fixture that must never be logged.
fn fixture_secrets(file: &str) -> Vec<(String, String)> {
    let text = std::fs::read_to_string(root().join("events").join(file)).expect("fixture");
    let event: serde_json::Value = serde_json::from_str(&text).expect("JSON");
    let mut secrets = Vec::new();
    for name in ["apikey", "authorization", "api-client-key"] {
        if let Some(value) = event["headers"][name].as_str() {
            secrets.push((format!("{file}: header {name}"), value.to_owned()));
        }
    }
    if let Some(query) = event["rawQueryString"].as_str().filter(|q| !q.is_empty()) {
        secrets.push((format!("{file}: query string"), query.to_owned()));
    }
    let body = event["body"].as_str().unwrap_or_default();
    if body.len() > 24 {
        secrets.push((format!("{file}: raw body"), body.to_owned()));
    }
    if let Ok(body) = serde_json::from_str::<serde_json::Value>(body) {
        if let Some(jwt) = body["payload"].as_str() {
            secrets.push((format!("{file}: JWT"), jwt.to_owned()));
            if let Some(signature) = jwt.rsplit('.').next().filter(|s| s.len() > 8) {
                secrets.push((format!("{file}: JWT signature"), signature.to_owned()));
            }
        }
    }
    secrets
}

// One thread: the capturing subscriber is this thread's default, so it sees every log
// line of this test and none of the tests running beside it in this binary.
#[tokio::test(flavor = "current_thread")]
async fn no_secret_token_signature_or_body_reaches_the_logs() {
    // With exactly one live `Dispatch` in the process, tracing-core asks the default of
    // whichever thread first reaches a callsite, and a test running beside this one (with
    // no subscriber) can make it cache "never" for the capture's events
    // (tokio-rs/tracing#3611). A second live dispatch takes the general path, which asks
    // every registered dispatch.
    let _second = tracing::Dispatch::new(tracing::subscriber::NoSubscriber::default());
    let captured = Captured::default();
    let writer = captured.clone();
    let subscriber = tracing_subscriber::fmt()
        .with_max_level(tracing::Level::DEBUG)
        .with_ansi(false)
        .with_writer(move || writer.clone())
        .finish();
    let _capture = tracing::subscriber::set_default(subscriber);

    let h = Harness::new().await;
    let webhooks = DevWebhooks::new(&h).await;
    let env = &webhooks.env;
    // Every key of template.yaml's secrets, with its dev value (PAGSTAR_CLIENT_KEY is
    // empty here: no mTLS in the dev setup). The webhooks read them from Secrets Manager.
    let template = local_pipeline::Template::load(&root().join("template.yaml")).expect("template.yaml");
    let secret_names: Vec<String> = template.secrets().into_values().flatten().collect();
    assert!(secret_names.len() >= 6, "{secret_names:?}");
    let mut secrets: Vec<(String, String)> = secret_names
        .into_iter()
        .filter_map(|name| env.var(&name).filter(|v| !v.is_empty()).map(|v| (name, v)))
        .collect();
    assert!(secrets.len() >= 6, "{} dev secrets have a value", secrets.len());
    secrets.push((
        "NOTIFY_SECRET key".into(),
        env.required("NOTIFY_SECRET").expect("secret").trim_start_matches("whsec_").to_owned(),
    ));
    secrets.push(("Pagstar access token".into(), "pagstar-standin-token".into()));

    // Every fixture, good and hostile.
    for file in fixture_files() {
        webhooks.run_fixture(&file).await;
        secrets.extend(fixture_secrets(&file));
    }

    // Our own outages, at a final transition.
    let azqr = || azqr_webhook::Azqr::from_env(env).expect("azqr");
    let completed = std::fs::read_to_string(root().join("events/azqr/completed.json")).expect("fixture");
    let request = || lambda_http::request::from_str(&completed).expect("event");
    let now = time::OffsetDateTime::now_utc();
    for broken in [
        Webhook::new(azqr(), h.unreachable_store(), h.queue.clone()),
        Webhook::new(azqr(), h.store.clone(), h.unreachable_queue()),
    ] {
        assert_eq!(broken.handle(request(), now).await.status().as_u16(), 500);
    }
    let mut down_env = local_pipeline::DevEnv::load(&root().join("local.env.example")).expect("env");
    down_env.set_default("PAGSTAR_API_URL", crate::support::closed_port_endpoint());
    let pagstar_down =
        Webhook::new(pagstar_webhook::Pagstar::from_env(&down_env).expect("pagstar"), h.store.clone(), h.queue.clone());
    let hint = std::fs::read_to_string(root().join("events/pagstar/concluida.json")).expect("fixture");
    assert_eq!(
        pagstar_down.handle(lambda_http::request::from_str(&hint).expect("event"), now).await.status().as_u16(),
        503
    );

    // Notifier deliveries: one refused (410), one failing (500), the rest delivered.
    let events = h.drain_events().await;
    for event in &events {
        let body = serde_json::to_string(event).expect("JSON");
        h.queue.send(event).await.expect("requeue");
        secrets.push((format!("delivery body {}", event.id), body));
    }
    let merchant = MockServer::start().await;
    Mock::given(header("webhook-id", events[0].id.as_str()))
        .respond_with(ResponseTemplate::new(410))
        .mount(&merchant)
        .await;
    // The merchant's answers, which the event log keeps, never reach a log line.
    let answer = |n: u32| format!("merchant-answer-body-{n}-must-not-be-logged");
    Mock::given(header("webhook-id", events[1].id.as_str()))
        .respond_with(ResponseTemplate::new(500).set_body_string(answer(500)))
        .mount(&merchant)
        .await;
    Mock::given(method("POST"))
        .respond_with(ResponseTemplate::new(200).set_body_string(answer(200)))
        .mount(&merchant)
        .await;
    secrets.push(("a merchant's 500 answer".into(), answer(500)));
    secrets.push(("a merchant's 200 answer".into(), answer(200)));
    let config = notifier::NotifierConfig {
        notify_url: merchant.uri(),
        table_name: h.resources.table_name.clone(),
        queue_url: h.resources.queue_url.clone(),
        dead_letter_queue_url: h.resources.dead_letter_queue_url.clone(),
        event_retention: Duration::from_secs(86_400),
        failing_alert: Duration::from_secs(30 * 60),
    };
    let signers = notifier::signers_from_env(webhooks.lambda_env.clone(), &h.secrets, now).await.expect("signers");
    let notifier = notifier::Notifier::new(config, signers, h.store.clone(), h.sqs.clone(), Duration::from_secs(5))
        .expect("notifier");
    while h.poll_notifier(&notifier, 0).await.expect("poll") > 0 {}
    let kept = h.store.event_log(Duration::from_secs(86_400)).get(&events[1].id).await.expect("get").expect("logged");
    assert_eq!(kept.attempts[0].response.as_deref(), Some(answer(500).as_str()), "kept in the event log");
    for request in merchant.received_requests().await.expect("recorded") {
        let signature = request.headers["webhook-signature"].to_str().expect("ascii").to_owned();
        secrets.push(("webhook-signature".into(), signature.trim_start_matches("v1,").to_owned()));
    }

    let log = captured.text();
    for expected in [
        "transition applied",
        "webhook rejected",
        "webhook failed",
        "delivery failed",
        "terminal event delivered",
        "refused",
    ] {
        assert!(log.contains(expected), "the capture works: no {expected:?} in the logs");
    }
    let leaks: Vec<&String> =
        secrets.iter().filter(|(_, secret)| log.contains(secret.as_str())).map(|(what, _)| what).collect();
    assert!(leaks.is_empty(), "found in the logs: {leaks:?}");
    println!("logs: {} lines captured, {} secret values checked, none found", log.lines().count(), secrets.len());
}
