use std::sync::Arc;

use lambda_http::{service_fn, Request};
use shared::runtime;
use shared::runtime::config::ProcessEnv;
use time::OffsetDateTime;
use transactions_api::TransactionsApi;

#[tokio::main]
async fn main() -> Result<(), lambda_http::Error> {
    runtime::init_tracing();
    let api = runtime::or_exit(TransactionsApi::from_env(Arc::new(ProcessEnv), OffsetDateTime::now_utc()).await);
    let api = &api;
    lambda_http::run(service_fn(move |request: Request| async move {
        Ok::<_, std::convert::Infallible>(api.handle(request).await)
    }))
    .await
}
