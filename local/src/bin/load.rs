//! Handles N AZQR webhooks (default 1,000) in one process against the emulators, as one
//! warm Lambda instance would, and prints the mean handler time and the peak resident
//! memory. `scripts/bench` runs it in release mode; figures in BENCHMARKS.md.

use std::time::Instant;

use lambda_http::{Body, RequestExt};
use local_pipeline::{dynamodb_client, sqs_client, DevEnv};
use shared::pipeline::Webhook;
use shared::runtime::config::{Env, Secret};
use shared::storage::{EventQueue, TransactionStore};
use time::OffsetDateTime;

fn peak_rss_kib() -> Option<u64> {
    let status = std::fs::read_to_string("/proc/self/status").ok()?;
    let line = status.lines().find(|l| l.starts_with("VmHWM:"))?;
    line.split_whitespace().nth(1)?.parse().ok()
}

#[tokio::main(flavor = "current_thread")]
async fn main() -> Result<(), Box<dyn std::error::Error + Send + Sync>> {
    let env = DevEnv::default();
    let count: usize = env.optional("LOAD_WEBHOOKS").unwrap_or_else(|| "1000".into()).parse()?;
    let store =
        TransactionStore::new(dynamodb_client(&env.required("DYNAMODB_ENDPOINT")?), env.required("TABLE_NAME")?);
    let queue = EventQueue::new(sqs_client(&env.required("SQS_ENDPOINT")?), env.required("QUEUE_URL")?);
    let key = "load-test-azqr-key-0000";
    let webhook = Webhook::new(azqr_webhook::Azqr::new(Secret::new(key)), store, queue);
    let statuses = ["read", "paid", "read", "completed"];
    let base = std::process::id() as u64 * 1_000_000;
    let rss_before = peak_rss_kib().unwrap_or_default();
    let started = Instant::now();
    for i in 0..count {
        let rrn = format!("{:012}", base + (i / statuses.len()) as u64);
        let request = http::Request::builder()
            .method("PUT")
            .header("apiKey", key)
            .header("content-type", "application/json")
            .body(Body::Text(format!(r#"{{"status":"{}","description":"load"}}"#, statuses[i % statuses.len()])))?
            .with_path_parameters(std::collections::HashMap::from([("rrn".to_owned(), rrn)]));
        let status = webhook.handle(request, OffsetDateTime::now_utc()).await.status();
        assert_eq!(status.as_u16(), 204, "webhook {i}");
    }
    let elapsed = started.elapsed();
    println!(
        "load: {count} webhooks in {:.2} s, {:.2} ms mean per webhook (handler + emulator round trips), peak RSS {} KiB (before: {} KiB)",
        elapsed.as_secs_f64(),
        elapsed.as_secs_f64() * 1000.0 / count as f64,
        peak_rss_kib().unwrap_or_default(),
        rss_before
    );
    Ok(())
}
