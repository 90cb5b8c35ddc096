//! The AWS clients of a function, built once at init from the Lambda environment
//! (credentials, region, and any `AWS_ENDPOINT_URL_DYNAMODB` / `AWS_ENDPOINT_URL_SQS` /
//! `AWS_ENDPOINT_URL_SECRETS_MANAGER`).

use std::time::Duration;

/// How long one Secrets Manager call may take, retries included: a function that cannot
/// read its secrets fails its init well within Lambda's 10 s.
pub(crate) const SECRETS_TIMEOUT: Duration = Duration::from_secs(4);

/// How long one attempt of a DynamoDB or SQS request may take. A stalled connection is
/// given up and the request tried again (the SDK's standard retries), instead of holding
/// the function until Lambda's own timeout ends it.
pub(crate) const ATTEMPT_TIMEOUT: Duration = Duration::from_secs(3);
/// How long one DynamoDB or SQS request may take, retries included: within a webhook
/// function's 10 s, so that a failure is our 5xx and the provider retries.
pub(crate) const OPERATION_TIMEOUT: Duration = Duration::from_secs(8);

/// The time limits of the DynamoDB and SQS clients ([`ATTEMPT_TIMEOUT`], [`OPERATION_TIMEOUT`],
/// and a 1 s connect timeout).
pub fn storage_timeouts() -> aws_config::timeout::TimeoutConfig {
    aws_config::timeout::TimeoutConfig::builder()
        .connect_timeout(Duration::from_secs(1))
        .operation_attempt_timeout(ATTEMPT_TIMEOUT)
        .operation_timeout(OPERATION_TIMEOUT)
        .build()
}

/// The SQS client's time limits for one `ReceiveMessage` that waits up to `wait_seconds`
/// for a message (a long poll, the local triggers'): the wait plus the usual limits, which
/// are for requests that answer at once.
pub fn long_poll_timeouts(wait_seconds: i32) -> aws_sdk_sqs::config::Builder {
    let wait = Duration::from_secs(u64::try_from(wait_seconds).unwrap_or_default());
    let timeouts = aws_sdk_sqs::config::timeout::TimeoutConfig::builder()
        .operation_attempt_timeout(wait + ATTEMPT_TIMEOUT)
        .operation_timeout(wait + OPERATION_TIMEOUT)
        .build();
    aws_sdk_sqs::config::Builder::default().timeout_config(timeouts)
}

/// Retries of a DynamoDB or SQS request: the SDK's standard mode (3 attempts, a retry
/// token bucket), with backoffs from 50 ms up to 1 s. Under throttling a request gives up
/// within about 2 s of waiting, so a webhook answers its retryable 5xx (and the notifier
/// gives its message back) instead of holding its Lambda slot for the whole
/// [`OPERATION_TIMEOUT`], which is for stalled connections.
pub fn storage_retries() -> aws_config::retry::RetryConfig {
    aws_config::retry::RetryConfig::standard()
        .with_max_attempts(3)
        .with_initial_backoff(Duration::from_millis(50))
        .with_max_backoff(Duration::from_secs(1))
}

#[derive(Debug, Clone)]
pub struct AwsClients {
    pub dynamodb: aws_sdk_dynamodb::Client,
    pub sqs: aws_sdk_sqs::Client,
    pub secrets: aws_sdk_secretsmanager::Client,
}

impl AwsClients {
    pub async fn from_env() -> AwsClients {
        let config = aws_config::load_from_env().await;
        AwsClients {
            dynamodb: aws_sdk_dynamodb::Client::from_conf(
                aws_sdk_dynamodb::config::Builder::from(&config)
                    .timeout_config(storage_timeouts())
                    .retry_config(storage_retries())
                    .build(),
            ),
            sqs: aws_sdk_sqs::Client::from_conf(
                aws_sdk_sqs::config::Builder::from(&config)
                    .timeout_config(storage_timeouts())
                    .retry_config(storage_retries())
                    .build(),
            ),
            secrets: secrets_client(&config),
        }
    }
}

/// A Secrets Manager client from `config`, with [`SECRETS_TIMEOUT`].
pub fn secrets_client(config: &aws_config::SdkConfig) -> aws_sdk_secretsmanager::Client {
    let timeouts = aws_sdk_secretsmanager::config::timeout::TimeoutConfig::builder()
        .operation_timeout(SECRETS_TIMEOUT)
        .connect_timeout(Duration::from_secs(1))
        .build();
    let config = aws_sdk_secretsmanager::config::Builder::from(config).timeout_config(timeouts).build();
    aws_sdk_secretsmanager::Client::from_conf(config)
}
