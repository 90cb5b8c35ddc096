//! Creates the table and queues on local emulators from their definitions in
//! template.yaml, so that local runs and tests use what AWS would get.

use std::collections::BTreeMap;

use crate::template::{
    get_att_arn, KeyProperty, QueueProperties, TableProperties, Template, TemplateError, DEAD_LETTER_QUEUE, HINT_QUEUE,
    QUEUE, TABLE,
};
use aws_sdk_dynamodb::types::{
    AttributeDefinition, BillingMode, GlobalSecondaryIndex, KeySchemaElement, KeyType, Projection, ProjectionType,
    ScalarAttributeType,
};
use aws_sdk_sqs::types::QueueAttributeName;

#[derive(Debug, thiserror::Error)]
pub enum ProvisionError {
    #[error(transparent)]
    Template(#[from] TemplateError),
    #[error("unsupported value in template: {0}")]
    Unsupported(String),
    #[error("emulator request failed: {0}")]
    Request(#[source] Box<dyn std::error::Error + Send + Sync>),
}

/// What was created.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Resources {
    pub table_name: String,
    pub queue_url: String,
    pub dead_letter_queue_url: String,
    pub hint_queue_url: String,
    /// Each `AWS::SecretsManager::Secret` of the template (logical id) → its ARN.
    pub secrets: BTreeMap<String, String>,
}

impl Template {
    /// Creates the table and the queues (with their dead-letter queues), with names
    /// starting with `prefix`.
    pub async fn provision(
        &self,
        dynamodb: &aws_sdk_dynamodb::Client,
        sqs: &aws_sdk_sqs::Client,
        prefix: &str,
    ) -> Result<Resources, ProvisionError> {
        let table_name = format!("{prefix}{TABLE}");
        self.create_table(dynamodb, TABLE, &table_name).await?;
        let queue_url = self.create_queue(sqs, QUEUE, prefix).await?;
        let dead_letter_queue_url = self.create_queue(sqs, DEAD_LETTER_QUEUE, prefix).await?;
        let hint_queue_url = self.create_queue(sqs, HINT_QUEUE, prefix).await?;
        Ok(Resources { table_name, queue_url, dead_letter_queue_url, hint_queue_url, secrets: BTreeMap::new() })
    }

    /// Creates the template's secrets in Secrets Manager (moto), named `prefix` + logical
    /// id, each key's value taken from `values` (the development values), and puts them
    /// in `resources`. A secret that exists already gets a new current version.
    pub async fn provision_secrets(
        &self,
        client: &aws_sdk_secretsmanager::Client,
        prefix: &str,
        values: &impl shared::runtime::config::Env,
        resources: &mut Resources,
    ) -> Result<(), ProvisionError> {
        for (id, keys) in self.secrets() {
            let object: BTreeMap<&str, String> =
                keys.iter().map(|key| (key.as_str(), values.var(key).unwrap_or_default())).collect();
            let text = serde_json::to_string(&object).map_err(request_error)?;
            let name = format!("{prefix}{id}");
            let arn = match client.create_secret().name(&name).secret_string(&text).send().await {
                Ok(output) => output.arn,
                Err(error) if error.as_service_error().is_some_and(|e| e.is_resource_exists_exception()) => {
                    client
                        .put_secret_value()
                        .secret_id(&name)
                        .secret_string(&text)
                        .send()
                        .await
                        .map_err(request_error)?
                        .arn
                }
                Err(error) => return Err(request_error(error)),
            };
            let arn = arn.ok_or_else(|| ProvisionError::Unsupported(format!("{name}: no ARN returned")))?;
            resources.secrets.insert(id, arn);
        }
        Ok(())
    }

    async fn create_table(
        &self,
        client: &aws_sdk_dynamodb::Client,
        logical_id: &str,
        name: &str,
    ) -> Result<(), ProvisionError> {
        let properties: TableProperties = self.properties(logical_id, "AWS::DynamoDB::Table")?;
        let mut request =
            client.create_table().table_name(name).billing_mode(BillingMode::from(properties.billing_mode.as_str()));
        for attribute in properties.attribute_definitions {
            request = request.attribute_definitions(
                AttributeDefinition::builder()
                    .attribute_name(attribute.attribute_name)
                    .attribute_type(ScalarAttributeType::from(attribute.attribute_type.as_str()))
                    .build()
                    .map_err(request_error)?,
            );
        }
        request = request.set_key_schema(Some(key_schema(properties.key_schema)?));
        for index in properties.global_secondary_indexes {
            let projection = Projection::builder()
                .projection_type(ProjectionType::from(index.projection.projection_type.as_str()))
                .set_non_key_attributes(
                    (!index.projection.non_key_attributes.is_empty()).then_some(index.projection.non_key_attributes),
                )
                .build();
            request = request.global_secondary_indexes(
                GlobalSecondaryIndex::builder()
                    .index_name(index.index_name)
                    .set_key_schema(Some(key_schema(index.key_schema)?))
                    .projection(projection)
                    .build()
                    .map_err(request_error)?,
            );
        }
        match request.send().await {
            Ok(_) => Ok(()),
            Err(error) if error.as_service_error().is_some_and(|e| e.is_resource_in_use_exception()) => Ok(()),
            Err(error) => Err(request_error(error)),
        }
    }

    /// Creates the queue (and first any queue its redrive policy names); returns its URL.
    async fn create_queue(
        &self,
        client: &aws_sdk_sqs::Client,
        logical_id: &str,
        prefix: &str,
    ) -> Result<String, ProvisionError> {
        let properties: QueueProperties = self.properties(logical_id, "AWS::SQS::Queue")?;
        let suffix = if properties.fifo_queue { ".fifo" } else { "" };
        let mut attributes = std::collections::HashMap::new();
        if properties.fifo_queue {
            attributes.insert(QueueAttributeName::FifoQueue, "true".to_owned());
        }
        if let Some(value) = properties.content_based_deduplication {
            attributes.insert(QueueAttributeName::ContentBasedDeduplication, value.to_string());
        }
        if let Some(value) = properties.visibility_timeout {
            attributes.insert(QueueAttributeName::VisibilityTimeout, value.to_string());
        }
        if let Some(value) = properties.message_retention_period {
            attributes.insert(QueueAttributeName::MessageRetentionPeriod, value.to_string());
        }
        if let Some(value) = properties.maximum_message_size {
            attributes.insert(QueueAttributeName::MaximumMessageSize, value.to_string());
        }
        if let Some(value) = properties.deduplication_scope {
            attributes.insert(QueueAttributeName::DeduplicationScope, value);
        }
        if let Some(value) = properties.fifo_throughput_limit {
            attributes.insert(QueueAttributeName::FifoThroughputLimit, value);
        }
        if let Some(policy) = properties.redrive_policy {
            let target = get_att_arn(&policy.dead_letter_target_arn)?;
            let target_url = Box::pin(self.create_queue(client, &target, prefix)).await?;
            let arn = client
                .get_queue_attributes()
                .queue_url(target_url)
                .attribute_names(QueueAttributeName::QueueArn)
                .send()
                .await
                .map_err(request_error)?
                .attributes
                .and_then(|mut a| a.remove(&QueueAttributeName::QueueArn))
                .ok_or_else(|| ProvisionError::Unsupported(format!("no ARN for queue {target}")))?;
            let policy = serde_json::json!({ "deadLetterTargetArn": arn, "maxReceiveCount": policy.max_receive_count });
            attributes.insert(QueueAttributeName::RedrivePolicy, policy.to_string());
        }
        let request =
            client.create_queue().queue_name(format!("{prefix}{logical_id}{suffix}")).set_attributes(Some(attributes));
        let output = request.send().await.map_err(request_error)?;
        output.queue_url.ok_or_else(|| ProvisionError::Unsupported(format!("no URL for queue {logical_id}")))
    }
}

fn key_schema(keys: Vec<KeyProperty>) -> Result<Vec<KeySchemaElement>, ProvisionError> {
    keys.into_iter()
        .map(|key| {
            KeySchemaElement::builder()
                .attribute_name(key.attribute_name)
                .key_type(KeyType::from(key.key_type.as_str()))
                .build()
                .map_err(request_error)
        })
        .collect()
}

fn request_error(error: impl std::error::Error + Send + Sync + 'static) -> ProvisionError {
    ProvisionError::Request(Box::new(error))
}
