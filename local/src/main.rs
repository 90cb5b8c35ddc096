//! `scripts/run-local` starts the emulators and then this: it provisions the table and
//! queues from template.yaml and serves every webhook on http://127.0.0.1:$PORT.

use std::path::Path;
use std::time::Duration;

use local_pipeline::{
    dynamodb_client, merchant, secrets_client, sqs_client, DevEnv, LambdaEnv, LocalTiming, Routes, Template,
};
use notifier::NotifierConfig;
use reconciler::Reconciler;
use shared::pipeline::WritePath;
use shared::runtime::config::Env;
use shared::storage::{EventQueue, TransactionStore};
use tracing_subscriber::EnvFilter;

type Error = Box<dyn std::error::Error + Send + Sync>;

#[tokio::main]
async fn main() -> Result<(), Error> {
    let filter = EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new("info"));
    tracing_subscriber::fmt().with_env_filter(filter).init();

    let mut env = DevEnv::load(Path::new("local.env.example"))?;
    let (dynamodb_endpoint, sqs_endpoint) = (env.required("DYNAMODB_ENDPOINT")?, env.required("SQS_ENDPOINT")?);
    let dynamodb = dynamodb_client(&dynamodb_endpoint);
    let sqs = sqs_client(&sqs_endpoint);
    let prefix = env.optional("LOCAL_RESOURCE_PREFIX").unwrap_or_else(|| "local-".into());
    let timing = LocalTiming::from_env(&env)?;
    let mut template = Template::load(Path::new("template.yaml"))?;
    if let Some(seconds) = timing.queue_visibility {
        template.set_queue_visibility_timeout(seconds);
    }
    // moto's server answers Secrets Manager too: the secrets are created there from the
    // development values, and every function reads its own by ARN, as in AWS.
    let (resources, simulated) = local_pipeline::stack::bring_up(&template, &mut env, Path::new("."), &prefix).await?;
    let secrets = secrets_client(&sqs_endpoint);
    for (variable, value) in simulated {
        tracing::info!(variable, %value, "local stand-in started ({variable} is unset)");
    }

    if env.optional("NOTIFY_URL").is_none() {
        let status = env.optional("LOCAL_MERCHANT_STATUS").unwrap_or_else(|| "204".into()).parse::<u16>()?;
        let url = merchant::start(&env.required("NOTIFY_SECRET")?, http::StatusCode::from_u16(status)?).await?;
        tracing::info!(%url, answer = status, "local merchant endpoint started (NOTIFY_URL is unset)");
        env.set_default("NOTIFY_URL", url);
    }
    let store = TransactionStore::new(dynamodb, &resources.table_name);
    let queue = EventQueue::new(sqs.clone(), &resources.queue_url);

    // The notifier, as the SQS trigger would run it: long polling, batches of up to 10.
    env.set_default("TABLE_NAME", resources.table_name.clone());
    env.set_default("QUEUE_URL", resources.queue_url.clone());
    env.set_default("DEAD_LETTER_QUEUE_URL", resources.dead_letter_queue_url.clone());
    let lambda_env: std::sync::Arc<dyn Env + Send + Sync> =
        std::sync::Arc::new(LambdaEnv::new(env.clone(), &template, &resources));
    let now = time::OffsetDateTime::now_utc();
    let signers = notifier::signers_from_env(std::sync::Arc::clone(&lambda_env), &secrets, now).await?;
    // Each function below gets clients of its own, as on AWS: one's retries never use up
    // another's retry budget.
    let own_store = || TransactionStore::new(dynamodb_client(&dynamodb_endpoint), &resources.table_name);
    let own_queue = || EventQueue::new(sqs_client(&sqs_endpoint), &resources.queue_url);
    let notifier = notifier::Notifier::new(
        NotifierConfig::from_env(&env)?,
        signers,
        own_store(),
        sqs_client(&sqs_endpoint),
        timing.notify_timeout,
    )?
    .with_backoff(timing.notify_backoff.clone());
    let notifier = std::sync::Arc::new(notifier);
    for _ in 0..timing.notifier_pollers {
        let notifier = std::sync::Arc::clone(&notifier);
        let (sqs, queue_url) = (sqs_client(&sqs_endpoint), notifier.queue_url().to_owned());
        tokio::spawn(async move {
            loop {
                if let Err(error) = local_pipeline::triggers::poll_notifier(&notifier, &sqs, &queue_url, 5).await {
                    tracing::error!(error = %error, "notifier poll failed");
                    tokio::time::sleep(Duration::from_secs(2)).await;
                }
            }
        });
    }
    // The reconciler, on a short timer: by default stuck after 1 minute, re-enqueued every 10.
    let (grace, every, repeat) = timing.reconciler;
    let reconciler = Reconciler::new(own_store(), own_queue()).with_timing(grace, every, repeat);
    tokio::spawn(async move {
        let mut timer = tokio::time::interval(every);
        loop {
            timer.tick().await;
            if let Err(error) = reconciler.run(time::OffsetDateTime::now_utc()).await {
                tracing::error!(error = %error, "reconciler run failed");
            }
        }
    });

    // The status sync, every STATUS_SYNC_INTERVAL_SECONDS (default 30), through the same
    // write path as the webhooks.
    let queue_for_events = queue.clone();
    let write_path = WritePath::new(store.clone(), queue, shared::runtime::config::sync_policy(&env)?)
        .with_events(shared::runtime::config::event_types(&env)?);
    let interval = local_pipeline::settings::STATUS_SYNC_INTERVAL.number_from(&env)?;
    let batch = status_sync::BATCH_SETTING.number_from(&env)?;
    let synced = status_sync::providers(std::sync::Arc::clone(&lambda_env), &secrets, now).await?;
    let concurrency = status_sync::CONCURRENCY_SETTING.number_from(&env)?;
    // Runs follow one another in this loop: the lease only has to outlast the interval,
    // so that a killed process does not hold up the next run.
    let sync_recorder = WritePath::new(own_store(), own_queue(), shared::runtime::config::sync_policy(&env)?)
        .with_events(shared::runtime::config::event_types(&env)?);
    let sync = status_sync::StatusSync::new(sync_recorder, synced, batch)
        .with_concurrency(concurrency)
        .with_lease(Duration::from_secs(interval));
    tokio::spawn(async move {
        let mut timer = tokio::time::interval(Duration::from_secs(interval));
        timer.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            timer.tick().await;
            sync.run(time::OffsetDateTime::now_utc()).await;
        }
    });

    // Every provider of the registry at its template.yaml routes, the transactions API and
    // the events API.
    let events = events_api::EventsApi::new(store.event_log(Duration::from_secs(30 * 86_400)), queue_for_events);
    let tokens = provider_catalog::callback_tokens(std::sync::Arc::clone(&lambda_env), &secrets, now).await?;
    let transactions = std::sync::Arc::new(
        transactions_api::TransactionsApi::new(store, write_path.policy(), provider_catalog::all())
            .with_callback_tokens(tokens),
    );
    let hint_queue = shared::storage::HintQueue::new(sqs_client(&sqs_endpoint), &resources.hint_queue_url);
    let mut routes = Routes::new(write_path, hint_queue).mount_providers(lambda_env, &secrets).await?;
    for (method, path) in transactions_api::ROUTES {
        routes = routes.mount_handler(method, path, std::sync::Arc::clone(&transactions));
    }
    let (app, hint_consumers) = routes.mount_events(events).into_parts();
    // The hint queue's consumer (Pagstar's confirmations), as its SQS trigger would run it.
    for consumer in hint_consumers {
        tokio::spawn(async move {
            loop {
                if let Err(error) = consumer.poll_once(5).await {
                    tracing::error!(error = %error, "hint poll failed");
                    tokio::time::sleep(Duration::from_secs(2)).await;
                }
            }
        });
    }

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
