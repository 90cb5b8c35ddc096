//! Creates the table, queues and secrets of template.yaml on the emulators
//! (DYNAMODB_ENDPOINT, SQS_ENDPOINT; moto's server also answers Secrets Manager) with
//! names starting with $LOCAL_RESOURCE_PREFIX, and prints them as environment lines
//! (TABLE_NAME, QUEUE_URL, DEAD_LETTER_QUEUE_URL, HINT_QUEUE_URL, and each `*_SECRET_ARN`, the secrets
//! holding the development values of local.env.example). Used by scripts/bench.

use std::path::Path;

use local_pipeline::{stack, DevEnv, Template};
use shared::runtime::config::Env;

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error + Send + Sync>> {
    let env = DevEnv::load(Path::new("local.env.example"))?;
    let prefix = env.optional("LOCAL_RESOURCE_PREFIX").unwrap_or_else(|| "bench-".into());
    let template = Template::load(Path::new("template.yaml"))?;
    let resources = stack::provision(&template, &env, &prefix).await?;
    println!("TABLE_NAME={}", resources.table_name);
    println!("QUEUE_URL={}", resources.queue_url);
    println!("DEAD_LETTER_QUEUE_URL={}", resources.dead_letter_queue_url);
    println!("HINT_QUEUE_URL={}", resources.hint_queue_url);
    for (variable, id) in template.secret_arn_variables() {
        if let Some(arn) = resources.secrets.get(&id) {
            println!("{variable}={arn}");
        }
    }
    Ok(())
}
