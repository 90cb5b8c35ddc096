use lambda_runtime::{service_fn, LambdaEvent};
use shared::{lambda, ProcessEnv};
use status_sync::StatusSync;
use time::OffsetDateTime;

#[tokio::main]
async fn main() -> Result<(), lambda_runtime::Error> {
    lambda::init_tracing();
    let env = std::sync::Arc::new(ProcessEnv);
    let sync = lambda::or_exit(StatusSync::from_env(env, OffsetDateTime::now_utc()).await);
    let sync = &sync;
    // The scheduled event carries nothing we need. One provider's failure is logged and
    // retried in a later run; it does not fail the others' run.
    lambda_runtime::run(service_fn(move |_: LambdaEvent<serde_json::Value>| async move {
        let runs = sync.run(OffsetDateTime::now_utc()).await;
        Ok::<_, lambda_runtime::Error>(serde_json::to_value(runs)?)
    }))
    .await
}
