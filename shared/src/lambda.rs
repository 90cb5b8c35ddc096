//! Running a webhook on AWS Lambda.

use std::convert::Infallible;

use lambda_http::{service_fn, Request};
use time::OffsetDateTime;

use aws_lambda_events::sqs::{BatchItemFailure, SqsBatchResponse, SqsEvent};
use lambda_http::lambda_runtime;

use crate::hints::{HintRelay, QueuedHint};
use crate::webhook::{Provider, Webhook};

/// The error a function's `main` returns.
pub type Error = lambda_http::Error;

/// Serves `webhook` on the Lambda runtime until the runtime stops. The clock is read
/// here, once per request; everything below takes the time as a parameter.
pub(crate) async fn run<P: Provider>(webhook: Webhook<P>) -> Result<(), lambda_http::Error> {
    let webhook = &webhook;
    lambda_http::run(service_fn(move |request: Request| async move {
        Ok::<_, Infallible>(webhook.handle(request, OffsetDateTime::now_utc()).await)
    }))
    .await
}

/// A provider's webhook function, whole: logging, then at init its configuration, its
/// clients and its secret (an error ends init, naming what is missing), then serving. A
/// webhook that is a hint ([`Provider::HINT`]) is queued, by a function that holds no
/// secret: [`serve_hints`] is the function that takes the steps.
pub async fn serve<P: Provider>() -> Result<(), lambda_http::Error> {
    init_tracing();
    if P::HINT.is_some() {
        let relay = &or_exit(HintRelay::<P>::from_env(&crate::config::ProcessEnv).await);
        return lambda_http::run(service_fn(move |request: Request| async move {
            Ok::<_, Infallible>(relay.answer(&crate::inbound::Inbound::from_lambda(request)).await)
        }))
        .await;
    }
    let env = std::sync::Arc::new(crate::config::ProcessEnv);
    let webhook = or_exit(Webhook::<P>::from_env(env, OffsetDateTime::now_utc()).await);
    run(webhook).await
}

/// The hint queue's consumer of a provider whose webhook is a hint, whole: as [`serve`]
/// at init, then each batch of the queue's SQS trigger through
/// [`Webhook::confirm_hints`], reporting the messages to receive again.
pub async fn serve_hints<P: Provider>() -> Result<(), lambda_http::Error> {
    init_tracing();
    let env = std::sync::Arc::new(crate::config::ProcessEnv);
    let webhook = &or_exit(Webhook::<P>::from_env(env, OffsetDateTime::now_utc()).await);
    lambda_runtime::run(lambda_runtime::service_fn(move |event: lambda_runtime::LambdaEvent<SqsEvent>| async move {
        let hints: Vec<QueuedHint> = event
            .payload
            .records
            .into_iter()
            .map(|m| {
                if m.message_id.is_none() {
                    // Reported failed as "": Lambda then receives the whole batch again.
                    tracing::error!("hint without a message id");
                }
                let count = m.attributes.get("ApproximateReceiveCount").map(String::as_str);
                QueuedHint::new(m.message_id.clone().unwrap_or_default(), m.body.clone().unwrap_or_default(), count)
            })
            .collect();
        let failed = webhook.confirm_hints(&hints, OffsetDateTime::now_utc()).await;
        let mut response = SqsBatchResponse::default();
        response.batch_item_failures = failed
            .into_iter()
            .map(|id| {
                let mut failure = BatchItemFailure::default();
                failure.item_identifier = id;
                failure
            })
            .collect();
        Ok::<_, Infallible>(response)
    }))
    .await
}

/// Unwraps what a function builds at init (its configuration, its clients). A failure is
/// logged, as one JSON line on Lambda, naming what is missing or invalid, and the process
/// exits with status 1, which Lambda reports as an init error. Returning it from `main`
/// instead would print its `Debug` form as plain text.
pub fn or_exit<T, E: std::fmt::Display>(result: Result<T, E>) -> T {
    result.unwrap_or_else(|error| {
        tracing::error!(error = %error, "function could not start");
        std::process::exit(1)
    })
}

/// Logs as JSON when Lambda asks for it (`AWS_LAMBDA_LOG_FORMAT=JSON`), plain text otherwise.
pub fn init_tracing() {
    lambda_http::tracing::init_default_subscriber();
}
