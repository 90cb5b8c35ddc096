use events_api::EventsApi;
use lambda_http::{service_fn, Request};
use shared::runtime;
use shared::runtime::config::ProcessEnv;

#[tokio::main]
async fn main() -> Result<(), lambda_http::Error> {
    runtime::init_tracing();
    let api = runtime::or_exit(EventsApi::from_env(&ProcessEnv).await);
    let api = &api;
    lambda_http::run(service_fn(move |request: Request| async move {
        Ok::<_, std::convert::Infallible>(api.handle(request).await)
    }))
    .await
}
