//! `scripts/run-local` starts the emulators and then this: it provisions the table and
//! queues from template.yaml and serves every webhook on http://127.0.0.1:$PORT.

use std::path::Path;

use axum::Router;
use local_pipeline::{dynamodb_client, mount, sqs_client, DevEnv, Template};
use shared::{Env, EventQueue, TransactionStore, Webhook};
use tracing_subscriber::EnvFilter;

type Error = Box<dyn std::error::Error + Send + Sync>;

#[tokio::main]
async fn main() -> Result<(), Error> {
    let filter = EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new("info"));
    tracing_subscriber::fmt().with_env_filter(filter).init();

    let env = DevEnv::load(Path::new("local.env.example"))?;
    let dynamodb = dynamodb_client(&env.required("DYNAMODB_ENDPOINT")?);
    let sqs = sqs_client(&env.required("SQS_ENDPOINT")?);
    let prefix = env.optional("LOCAL_RESOURCE_PREFIX").unwrap_or_else(|| "local-".into());
    let resources = Template::load(Path::new("template.yaml"))?.provision(&dynamodb, &sqs, &prefix).await?;
    let store = TransactionStore::new(dynamodb, &resources.table_name);
    let queue = EventQueue::new(sqs, &resources.queue_url);

    // One line per webhook function, at its template.yaml route.
    let app = Router::new();
    let app = mount(
        app,
        azqr_webhook::METHOD,
        azqr_webhook::PATH,
        Webhook::new(azqr_webhook::Azqr::from_env(&env)?, store.clone(), queue.clone()),
    );

    let port: u16 = env.optional("PORT").unwrap_or_else(|| "3000".into()).parse()?;
    let listener = tokio::net::TcpListener::bind(("127.0.0.1", port)).await?;
    tracing::info!(
        table = %resources.table_name,
        queue_url = %resources.queue_url,
        dead_letter_queue_url = %resources.dead_letter_queue_url,
        "local pipeline listening on http://127.0.0.1:{port}"
    );
    axum::serve(listener, app)
        .with_graceful_shutdown(async {
            let _ = tokio::signal::ctrl_c().await;
        })
        .await?;
    Ok(())
}
