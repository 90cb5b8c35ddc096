//! The AWS clients of a function, built once at init from the Lambda environment
//! (credentials, region, and any `AWS_ENDPOINT_URL_DYNAMODB` / `AWS_ENDPOINT_URL_SQS` /
//! `AWS_ENDPOINT_URL_SECRETS_MANAGER`).

use std::time::Duration;

/// How long one Secrets Manager call may take, retries included: a function that cannot
/// read its secrets fails its init well within Lambda's 10 s.
pub const SECRETS_TIMEOUT: Duration = Duration::from_secs(4);

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
            dynamodb: aws_sdk_dynamodb::Client::new(&config),
            sqs: aws_sdk_sqs::Client::new(&config),
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
