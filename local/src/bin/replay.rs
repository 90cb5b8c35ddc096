//! Moves terminal events from the dead-letter queue back to the main queue, after the
//! merchant's outage is over.
//!
//! `scripts/replay-dead-letters` — the local pipeline's queues (its SQS_ENDPOINT);
//! `scripts/replay-dead-letters <dead-letter-queue-url> <queue-url>` — with SQS_ENDPOINT
//! unset, against AWS, with credentials and region from the usual AWS environment.

use std::process::ExitCode;

use local_pipeline::template::{DEAD_LETTER_QUEUE, QUEUE};
use time::OffsetDateTime;

type Error = Box<dyn std::error::Error>;

async fn replay(args: &[String]) -> Result<usize, Error> {
    let local = std::env::var("SQS_ENDPOINT").ok().filter(|e| !e.is_empty());
    let sqs = match &local {
        Some(endpoint) => local_pipeline::sqs_client(endpoint),
        None => shared::runtime::AwsClients::from_env().await.sqs,
    };
    let (dead_letter_queue_url, queue_url) = match (args, &local) {
        ([dlq, queue], _) => (dlq.clone(), queue.clone()),
        ([], Some(_)) => {
            let prefix = std::env::var("LOCAL_RESOURCE_PREFIX").unwrap_or_else(|_| "local-".into());
            let url = |name: String| {
                let sqs = sqs.clone();
                async move { sqs.get_queue_url().queue_name(name).send().await.map(|o| o.queue_url.unwrap_or_default()) }
            };
            (url(format!("{prefix}{DEAD_LETTER_QUEUE}.fifo")).await?, url(format!("{prefix}{QUEUE}.fifo")).await?)
        }
        _ => return Err("usage: scripts/replay-dead-letters [<dead-letter-queue-url> <queue-url>]".into()),
    };
    Ok(notifier::replay::replay_dead_letters(&sqs, &dead_letter_queue_url, &queue_url, OffsetDateTime::now_utc())
        .await?)
}

#[tokio::main]
async fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    match replay(&args).await {
        Ok(moved) => {
            println!("moved {moved} message(s) from the dead-letter queue back to the main queue");
            ExitCode::SUCCESS
        }
        Err(error) => {
            eprintln!("replay failed: {error}");
            ExitCode::FAILURE
        }
    }
}
