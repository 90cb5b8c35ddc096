//! Creates the table and queues of template.yaml on the emulators (DYNAMODB_ENDPOINT,
//! SQS_ENDPOINT) with names starting with $LOCAL_RESOURCE_PREFIX, and prints them as
//! environment lines (TABLE_NAME, QUEUE_URL, DEAD_LETTER_QUEUE_URL). Used by scripts/bench.

use std::path::Path;

use local_pipeline::{dynamodb_client, sqs_client, DevEnv, Template};
use shared::Env;

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error + Send + Sync>> {
    let env = DevEnv::default();
    let dynamodb = dynamodb_client(&env.required("DYNAMODB_ENDPOINT")?);
    let sqs = sqs_client(&env.required("SQS_ENDPOINT")?);
    let prefix = env.optional("LOCAL_RESOURCE_PREFIX").unwrap_or_else(|| "bench-".into());
    let resources = Template::load(Path::new("template.yaml"))?.provision(&dynamodb, &sqs, &prefix).await?;
    println!("TABLE_NAME={}", resources.table_name);
    println!("QUEUE_URL={}", resources.queue_url);
    println!("DEAD_LETTER_QUEUE_URL={}", resources.dead_letter_queue_url);
    Ok(())
}
