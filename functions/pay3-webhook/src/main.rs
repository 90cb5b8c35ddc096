use shared::{lambda, ProcessEnv, Webhook};

#[tokio::main]
async fn main() -> Result<(), lambda_http::Error> {
    lambda::init_tracing();
    let provider = pay3_webhook::Pay3::from_env(&ProcessEnv)?;
    let webhook = Webhook::from_env(provider, &ProcessEnv).await?;
    lambda::run(webhook).await
}
