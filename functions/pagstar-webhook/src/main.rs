use shared::{lambda, ProcessEnv, Provider, Webhook};

#[tokio::main]
async fn main() -> Result<(), lambda::Error> {
    lambda::init_tracing();
    let provider = lambda::or_exit(pagstar_webhook::Pagstar::from_env(&ProcessEnv));
    let webhook = lambda::or_exit(Webhook::from_env(provider, &ProcessEnv).await);
    lambda::run(webhook).await
}
