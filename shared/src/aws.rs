//! The AWS clients of a function, built once at init from the Lambda environment
//! (credentials, region, and any `AWS_ENDPOINT_URL_DYNAMODB` / `AWS_ENDPOINT_URL_SQS`).

#[derive(Debug, Clone)]
pub struct AwsClients {
    pub dynamodb: aws_sdk_dynamodb::Client,
    pub sqs: aws_sdk_sqs::Client,
}

impl AwsClients {
    pub async fn from_env() -> AwsClients {
        let config = aws_config::load_from_env().await;
        AwsClients { dynamodb: aws_sdk_dynamodb::Client::new(&config), sqs: aws_sdk_sqs::Client::new(&config) }
    }
}
