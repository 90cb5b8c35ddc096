//! `payhooks send` and `payhooks replay-dead-letters`, the development tools that were
//! scripts of their own (`scripts/send` and `scripts/replay-dead-letters` run these).

use std::io::Write;
use std::path::Path;

use serde_json::Value;
use time::OffsetDateTime;

use super::{print, Args, Stop, Target, REFUSED, UNREACHABLE, USAGE};
use crate::{fixtures, registry, DevEnv};

/// `send PROVIDER FIXTURE`: the fixture's method, path, query, headers and body, sent to
/// the target as the provider would. A QI Tech fixture signed by the dev key is signed
/// again with its timestamp moved forward by the time since it was made (its other claims
/// kept): a fresh fixture passes the 5-minute window, a stale one stays stale, and one bad
/// on purpose stays bad. Refused (exit 1) only when the target answers 5xx.
pub(super) async fn send(target: &Target, provider: &str, fixture: &Path, out: &mut dyn Write) -> Result<(), Stop> {
    let fail = |message: String| Stop { code: REFUSED, message };
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("..");
    let env = DevEnv::load(&root.join("local.env.example")).map_err(|e| fail(format!("local.env.example: {e}")))?;
    let text = std::fs::read_to_string(fixture).map_err(|e| Stop::usage(format!("{}: {e}", fixture.display())))?;
    let mut event: Value = serde_json::from_str(&text).map_err(|e| fail(format!("{}: {e}", fixture.display())))?;
    fixtures::resign_for(&mut event, &root, &env, OffsetDateTime::now_utc()).map_err(|e| fail(e.to_string()))?;
    let names: Vec<&str> = registry::routes().iter().map(|route| route.name).collect();
    let route = registry::routes().into_iter().find(|route| route.name == provider);
    let route =
        route.ok_or_else(|| Stop::usage(format!("no provider {provider}; the providers: {}", names.join(", "))))?;
    let path = event["rawPath"].as_str().ok_or_else(|| fail("the fixture has no rawPath".into()))?;
    if event["routeKey"].as_str() != Some(&route.key()) {
        return Err(Stop::usage(format!("{} is not a {provider} fixture (path {path})", fixture.display())));
    }
    let method = event["requestContext"]["http"]["method"].as_str().unwrap_or("POST");
    let query = event["rawQueryString"].as_str().unwrap_or_default();
    let url =
        if query.is_empty() { format!("{}{path}", target.base) } else { format!("{}{path}?{query}", target.base) };
    let method = reqwest::Method::from_bytes(method.as_bytes()).map_err(|e| fail(e.to_string()))?;
    let mut request = target.client.request(method.clone(), &url);
    for (name, value) in event["headers"].as_object().into_iter().flatten() {
        if !matches!(name.as_str(), "host" | "content-length") {
            request = request.header(name, value.as_str().unwrap_or_default());
        }
    }
    let body = event["body"].as_str().unwrap_or_default().to_owned();
    let response = request.body(body).send().await.map_err(|e| Stop {
        code: UNREACHABLE,
        message: format!("{} answered nothing ({e}); is it running (scripts/run-local)?", target.base),
    })?;
    let status = response.status().as_u16();
    let answer = response.text().await.unwrap_or_default();
    print(out, format!("{method} {path} -> {status} {answer}"))?;
    if status >= 500 {
        return Err(fail(format!("{path} answered {status}")));
    }
    Ok(())
}

/// `replay-dead-letters [DLQ_URL QUEUE_URL]`: moves the terminal events of the dead-letter
/// queue back to the main queue, after the merchant's outage is over; each keeps its id.
/// The queues: the URLs given (AWS, credentials and region from the environment); with
/// `--stack`, the stack's outputs; else the local pipeline's (its `SQS_ENDPOINT`).
pub(super) async fn replay(args: &Args, urls: &[&str], out: &mut dyn Write) -> Result<(), Stop> {
    use crate::template::{DEAD_LETTER_QUEUE, QUEUE};
    let fail = |message: String| Stop { code: REFUSED, message };
    let local = std::env::var("SQS_ENDPOINT").ok().filter(|e| !e.is_empty());
    let region = args.options.get("region").cloned();
    let aws = || async {
        let mut config = aws_config::defaults(aws_config::BehaviorVersion::latest());
        if let Some(region) = region.clone() {
            config = config.region(aws_config::Region::new(region));
        }
        aws_sdk_sqs::Client::new(&config.load().await)
    };
    let (sqs, dead_letters, queue) = match (urls, args.options.get("stack"), &local) {
        ([dlq, queue], None, Some(endpoint)) => (crate::sqs_client(endpoint), (*dlq).to_owned(), (*queue).to_owned()),
        ([dlq, queue], None, None) => (aws().await, (*dlq).to_owned(), (*queue).to_owned()),
        ([], Some(stack), _) => {
            let values = super::stack_values(args, stack, &reqwest::Client::new()).await?;
            let output = |name: &str| {
                values.get(name).cloned().ok_or_else(|| fail(format!("stack {stack} has no {name} output")))
            };
            (aws().await, output("TerminalEventsDeadLetterQueueUrl")?, output("TerminalEventsQueueUrl")?)
        }
        ([], None, Some(endpoint)) => {
            let sqs = crate::sqs_client(endpoint);
            let prefix = std::env::var("LOCAL_RESOURCE_PREFIX").unwrap_or_else(|_| "local-".into());
            let url = |name: String| {
                let sqs = sqs.clone();
                async move {
                    sqs.get_queue_url()
                        .queue_name(&name)
                        .send()
                        .await
                        .map(|o| o.queue_url.unwrap_or_default())
                        .map_err(|e| Stop { code: UNREACHABLE, message: format!("queue {name} at {endpoint}: {e}") })
                }
            };
            let dead_letters = url(format!("{prefix}{DEAD_LETTER_QUEUE}.fifo")).await?;
            let queue = url(format!("{prefix}{QUEUE}.fifo")).await?;
            (sqs, dead_letters, queue)
        }
        _ => {
            return Err(Stop {
                code: USAGE,
                message: "replay-dead-letters takes both queue URLs, or --stack, or the local pipeline's \
                          SQS_ENDPOINT (scripts/replay-dead-letters sets it)"
                    .into(),
            })
        }
    };
    let moved = notifier::replay::replay_dead_letters(&sqs, &dead_letters, &queue, OffsetDateTime::now_utc())
        .await
        .map_err(|e| fail(format!("replay failed: {e}")))?;
    print(out, format!("moved {moved} message(s) from the dead-letter queue back to the main queue"))
}
