use std::convert::Infallible;

use aws_lambda_events::sqs::SqsEvent;
use lambda_runtime::{service_fn, LambdaEvent};
use notifier::Notifier;
use shared::runtime;
use shared::runtime::config::ProcessEnv;
use time::OffsetDateTime;

#[tokio::main]
async fn main() -> Result<(), lambda_runtime::Error> {
    runtime::init_tracing();
    let env = std::sync::Arc::new(ProcessEnv);
    let notifier = runtime::or_exit(Notifier::from_env(env, OffsetDateTime::now_utc()).await);
    let notifier = &notifier;
    lambda_runtime::run(service_fn(move |event: LambdaEvent<SqsEvent>| async move {
        Ok::<_, Infallible>(notifier.handle_batch(event.payload, OffsetDateTime::now_utc()).await)
    }))
    .await
}
