//! Creates the table and queues on local emulators from their definitions in
//! template.yaml, so that local runs and tests use what AWS would get.

use std::collections::BTreeMap;
use std::path::Path;

use aws_sdk_dynamodb::types::{
    AttributeDefinition, BillingMode, GlobalSecondaryIndex, KeySchemaElement, KeyType, Projection, ProjectionType,
    ScalarAttributeType,
};
use aws_sdk_sqs::types::QueueAttributeName;
use serde::Deserialize;
use serde_yaml_ng::Value;

/// Logical ids in template.yaml.
pub const TABLE: &str = "TransactionsTable";
pub const QUEUE: &str = "TerminalEventsQueue";
pub const DEAD_LETTER_QUEUE: &str = "TerminalEventsDeadLetterQueue";
/// Pagstar's hints, queued by its webhook function for `pagstar-confirm`.
pub const HINT_QUEUE: &str = "PagstarHintQueue";

#[derive(Debug, thiserror::Error)]
pub enum ProvisionError {
    #[error("cannot read {path}")]
    Read { path: String, source: std::io::Error },
    #[error("template is not valid YAML")]
    Yaml(#[from] serde_yaml_ng::Error),
    #[error("template has no resource {0} of the expected type")]
    MissingResource(String),
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

/// The parsed template: its resources, and the parameters and globals a function's
/// environment is resolved from (see `invoke`).
#[derive(Debug, Clone)]
pub struct Template {
    pub(crate) resources: serde_yaml_ng::Mapping,
    pub(crate) parameters: serde_yaml_ng::Mapping,
    pub(crate) globals: Value,
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "PascalCase")]
struct Resource {
    #[serde(rename = "Type")]
    kind: String,
    #[serde(default)]
    properties: Value,
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "PascalCase")]
struct TableProperties {
    attribute_definitions: Vec<AttributeProperty>,
    key_schema: Vec<KeyProperty>,
    billing_mode: String,
    #[serde(default)]
    global_secondary_indexes: Vec<IndexProperty>,
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "PascalCase")]
struct AttributeProperty {
    attribute_name: String,
    attribute_type: String,
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "PascalCase")]
struct KeyProperty {
    attribute_name: String,
    key_type: String,
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "PascalCase")]
struct IndexProperty {
    index_name: String,
    key_schema: Vec<KeyProperty>,
    projection: ProjectionProperty,
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "PascalCase")]
struct ProjectionProperty {
    projection_type: String,
    #[serde(default)]
    non_key_attributes: Vec<String>,
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "PascalCase")]
struct QueueProperties {
    #[serde(default)]
    fifo_queue: bool,
    content_based_deduplication: Option<bool>,
    visibility_timeout: Option<u32>,
    message_retention_period: Option<u32>,
    maximum_message_size: Option<u32>,
    deduplication_scope: Option<String>,
    fifo_throughput_limit: Option<String>,
    redrive_policy: Option<RedrivePolicy>,
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
struct RedrivePolicy {
    dead_letter_target_arn: Value,
    max_receive_count: u32,
}

/// A global secondary index as template.yaml defines it (for `scripts/capacity`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct IndexSpec {
    pub name: String,
    pub partition_key: String,
    pub sort_key: Option<String>,
    /// `ALL`, `KEYS_ONLY` or `INCLUDE`.
    pub projection: String,
    pub non_key_attributes: Vec<String>,
}

impl Template {
    /// The table's global secondary indexes.
    pub fn indexes(&self) -> Result<Vec<IndexSpec>, ProvisionError> {
        let table: TableProperties = self.properties(TABLE, "AWS::DynamoDB::Table")?;
        Ok(table
            .global_secondary_indexes
            .into_iter()
            .map(|index| {
                let key =
                    |kind: &str| index.key_schema.iter().find(|k| k.key_type == kind).map(|k| k.attribute_name.clone());
                IndexSpec {
                    name: index.index_name.clone(),
                    partition_key: key("HASH").unwrap_or_default(),
                    sort_key: key("RANGE"),
                    projection: index.projection.projection_type.clone(),
                    non_key_attributes: index.projection.non_key_attributes.clone(),
                }
            })
            .collect())
    }

    /// A queue's settings that bound its throughput and messages: whether it is
    /// high-throughput FIFO, and its largest message.
    pub fn queue_limits(&self, logical_id: &str) -> Result<(bool, Option<u32>), ProvisionError> {
        let queue: QueueProperties = self.properties(logical_id, "AWS::SQS::Queue")?;
        let high_throughput = queue.deduplication_scope.as_deref() == Some("messageGroup")
            && queue.fifo_throughput_limit.as_deref() == Some("perMessageGroupId");
        Ok((high_throughput, queue.maximum_message_size))
    }

    /// The inputs of a function's scheduled events (`Schedule`, `ScheduleV2`), each
    /// parsed as JSON (`null` for an event without one).
    pub fn schedule_inputs(&self, logical_id: &str) -> Result<Vec<serde_json::Value>, ProvisionError> {
        let function: Value = self.properties(logical_id, "AWS::Serverless::Function")?;
        let events = function.get("Events").and_then(Value::as_mapping).cloned().unwrap_or_default();
        let scheduled = events
            .values()
            .filter(|event| matches!(event.get("Type").and_then(Value::as_str), Some("Schedule" | "ScheduleV2")));
        Ok(scheduled
            .map(|event| {
                let input = event.get("Properties").and_then(|p| p.get("Input")).and_then(Value::as_str);
                input.and_then(|text| serde_json::from_str(text).ok()).unwrap_or(serde_json::Value::Null)
            })
            .collect())
    }

    /// A parameter's default, as text.
    pub fn parameter_default(&self, name: &str) -> Option<String> {
        let value = self.parameters.get(name)?.get("Default")?;
        match value {
            Value::String(text) => Some(text.clone()),
            Value::Number(number) => Some(number.to_string()),
            Value::Null | Value::Bool(_) | Value::Sequence(_) | Value::Mapping(_) | Value::Tagged(_) => None,
        }
    }

    pub fn load(path: &Path) -> Result<Self, ProvisionError> {
        let text = std::fs::read_to_string(path)
            .map_err(|source| ProvisionError::Read { path: path.display().to_string(), source })?;
        Template::parse(&text)
    }

    pub fn parse(text: &str) -> Result<Self, ProvisionError> {
        let document: Value = serde_yaml_ng::from_str(text)?;
        let resources = document
            .get("Resources")
            .and_then(Value::as_mapping)
            .cloned()
            .ok_or_else(|| ProvisionError::MissingResource("Resources".into()))?;
        let parameters = document.get("Parameters").and_then(Value::as_mapping).cloned().unwrap_or_default();
        let globals = document.get("Globals").cloned().unwrap_or(Value::Null);
        Ok(Template { resources, parameters, globals })
    }

    /// Sets the terminal-events queue's `VisibilityTimeout` (how long a message received by
    /// a notifier that then died stays hidden), for runs that compress time.
    pub fn set_queue_visibility_timeout(&mut self, seconds: u32) {
        if let Some(properties) = self.resources.get_mut(QUEUE).and_then(|queue| queue.get_mut("Properties")) {
            if let Some(properties) = properties.as_mapping_mut() {
                properties.insert("VisibilityTimeout".into(), seconds.into());
            }
        }
    }

    fn properties<T: serde::de::DeserializeOwned>(&self, logical_id: &str, kind: &str) -> Result<T, ProvisionError> {
        let resource = self
            .resources
            .get(logical_id)
            .cloned()
            .ok_or_else(|| ProvisionError::MissingResource(logical_id.into()))?;
        let resource: Resource = serde_yaml_ng::from_value(resource)?;
        if resource.kind != kind {
            return Err(ProvisionError::MissingResource(format!("{logical_id} ({kind})")));
        }
        Ok(serde_yaml_ng::from_value(resource.properties)?)
    }

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

    /// The template's secrets (logical id → the keys of its JSON object: those of its
    /// `SecretString`, and its `GenerateStringKey`).
    pub fn secrets(&self) -> BTreeMap<String, Vec<String>> {
        let mut secrets = BTreeMap::new();
        for (id, resource) in &self.resources {
            let (Some(id), Some("AWS::SecretsManager::Secret")) = (id.as_str(), resource["Type"].as_str()) else {
                continue;
            };
            let properties = &resource["Properties"];
            let text = properties["SecretString"]
                .as_str()
                .or_else(|| properties["GenerateSecretString"]["SecretStringTemplate"].as_str())
                .unwrap_or("{}");
            let object: BTreeMap<String, serde_json::Value> = serde_json::from_str(text).unwrap_or_default();
            let mut keys: Vec<String> = object.into_keys().collect();
            keys.extend(properties["GenerateSecretString"]["GenerateStringKey"].as_str().map(str::to_owned));
            secrets.insert(id.to_owned(), keys);
        }
        secrets
    }

    /// Every function's variable holding a secret's ARN (`!Ref <secret>`) → the secret's
    /// logical id.
    pub fn secret_arn_variables(&self) -> BTreeMap<String, String> {
        let secrets = self.secrets();
        let mut variables = BTreeMap::new();
        for id in self.function_ids() {
            let Ok(function) = self.function(&id) else { continue };
            for (variable, value) in function.variables {
                if let crate::invoke::EnvValue::Ref(name) = value {
                    if secrets.contains_key(&name) {
                        variables.insert(variable, name);
                    }
                }
            }
        }
        variables
    }

    /// Creates the template's secrets in Secrets Manager (moto), named `prefix` + logical
    /// id, each key's value taken from `values` (the development values), and puts them
    /// in `resources`. A secret that exists already gets a new current version.
    pub async fn provision_secrets(
        &self,
        client: &aws_sdk_secretsmanager::Client,
        prefix: &str,
        values: &impl shared::Env,
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

/// `!GetAtt Name.Arn` (or `Fn::GetAtt: [Name, Arn]`) → `Name`.
pub(crate) fn get_att_arn(value: &Value) -> Result<String, ProvisionError> {
    let unsupported = || ProvisionError::Unsupported(format!("expected !GetAtt <queue>.Arn, found {value:?}"));
    let target = match value {
        Value::Tagged(tagged) if tagged.tag == "GetAtt" => {
            tagged.value.as_str().and_then(|s| s.strip_suffix(".Arn")).map(str::to_owned)
        }
        Value::Mapping(mapping) => mapping
            .get("Fn::GetAtt")
            .and_then(Value::as_sequence)
            .filter(|parts| parts.get(1).and_then(Value::as_str) == Some("Arn"))
            .and_then(|parts| parts.first())
            .and_then(Value::as_str)
            .map(str::to_owned),
        Value::Null | Value::Bool(_) | Value::Number(_) | Value::String(_) | Value::Sequence(_) | Value::Tagged(_) => {
            None
        }
    };
    target.ok_or_else(unsupported)
}

fn request_error(error: impl std::error::Error + Send + Sync + 'static) -> ProvisionError {
    ProvisionError::Request(Box::new(error))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_the_project_template() {
        let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("../template.yaml");
        let template = Template::load(&path).expect("template.yaml parses");
        let table: TableProperties = template.properties(TABLE, "AWS::DynamoDB::Table").expect("table");
        assert_eq!(table.billing_mode, "PAY_PER_REQUEST");
        assert_eq!(table.key_schema[0].attribute_name, "pk");
        let queue: QueueProperties = template.properties(QUEUE, "AWS::SQS::Queue").expect("queue");
        assert!(queue.fifo_queue);
        // High-throughput FIFO, as provisioned locally too.
        assert_eq!(queue.deduplication_scope.as_deref(), Some("messageGroup"));
        assert_eq!(queue.fifo_throughput_limit.as_deref(), Some("perMessageGroupId"));
        let policy = queue.redrive_policy.expect("redrive policy");
        assert_eq!(get_att_arn(&policy.dead_letter_target_arn).expect("GetAtt"), DEAD_LETTER_QUEUE);
        let dlq: QueueProperties = template.properties(DEAD_LETTER_QUEUE, "AWS::SQS::Queue").expect("dlq");
        assert!(dlq.fifo_queue);
    }

    #[test]
    fn get_att_in_both_syntaxes() {
        let short: Value = serde_yaml_ng::from_str("!GetAtt Dlq.Arn").expect("yaml");
        assert_eq!(get_att_arn(&short).expect("short form"), "Dlq");
        let long: Value = serde_yaml_ng::from_str("Fn::GetAtt: [Dlq, Arn]").expect("yaml");
        assert_eq!(get_att_arn(&long).expect("long form"), "Dlq");
        let other: Value = serde_yaml_ng::from_str("!Ref Dlq").expect("yaml");
        assert!(get_att_arn(&other).is_err());
    }
}
