use lambda_runtime::{service_fn, LambdaEvent};
use reconciler::Reconciler;
use shared::runtime;
use shared::runtime::config::ProcessEnv;
use time::OffsetDateTime;

#[tokio::main]
async fn main() -> Result<(), lambda_runtime::Error> {
    runtime::init_tracing();
    let reconciler = runtime::or_exit(Reconciler::from_env(&ProcessEnv).await);
    let reconciler = &reconciler;
    // The scheduled event carries nothing we need; a failed run is reported to Lambda.
    lambda_runtime::run(service_fn(move |_: LambdaEvent<serde_json::Value>| async move {
        let sent = reconciler.run(OffsetDateTime::now_utc()).await?;
        Ok::<_, lambda_runtime::Error>(serde_json::json!({ "enqueued": sent }))
    }))
    .await
}
