use lambda_runtime::{service_fn, LambdaEvent};
use shared::runtime;
use shared::runtime::config::ProcessEnv;
use status_sync::StatusSync;
use time::OffsetDateTime;

#[tokio::main]
async fn main() -> Result<(), lambda_runtime::Error> {
    runtime::init_tracing();
    let env = std::sync::Arc::new(ProcessEnv);
    let sync = runtime::or_exit(StatusSync::from_env(env, OffsetDateTime::now_utc()).await);
    let sync = &sync;
    // The scheduled event names a shard group (or none: every group). One provider's
    // failure is logged and retried in a later run; it does not fail the others' run.
    lambda_runtime::run(service_fn(move |event: LambdaEvent<serde_json::Value>| async move {
        let group = status_sync::shard_group(&event.payload)?;
        let runs = sync.run_group(OffsetDateTime::now_utc(), group).await;
        Ok::<_, lambda_runtime::Error>(serde_json::to_value(runs)?)
    }))
    .await
}
