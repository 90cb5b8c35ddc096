//! template.yaml, read: its resources, parameters and globals, each function as Lambda
//! would run it (Globals applied), the table's indexes, the queues' limits, the secrets.
//! A leaf: provisioning (`provision`), `scripts/invoke` (`invoke`), the capacity model and
//! the tests read the template through it.

use std::collections::BTreeMap;
use std::path::Path;

use serde::Deserialize;
use serde_yaml_ng::Value;

/// Logical ids in template.yaml.
pub const TABLE: &str = "TransactionsTable";
pub const QUEUE: &str = "TerminalEventsQueue";
pub const DEAD_LETTER_QUEUE: &str = "TerminalEventsDeadLetterQueue";
/// Pagstar's hints, queued by its webhook function for `pagstar-confirm`.
pub const HINT_QUEUE: &str = "PagstarHintQueue";

/// What is wrong with template.yaml, or missing from it.
#[derive(Debug, thiserror::Error)]
pub enum TemplateError {
    #[error("cannot read {path}")]
    Read { path: String, source: std::io::Error },
    #[error("template is not valid YAML")]
    Yaml(#[from] serde_yaml_ng::Error),
    #[error("template has no resource {0} of the expected type")]
    MissingResource(String),
    #[error("template.yaml has no function {0} (AWS::Serverless::Function)")]
    NoFunction(String),
    #[error("template.yaml: {0}")]
    Unsupported(String),
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
pub(crate) struct Resource {
    #[serde(rename = "Type")]
    pub(crate) kind: String,
    #[serde(default)]
    pub(crate) properties: Value,
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub(crate) struct TableProperties {
    pub(crate) attribute_definitions: Vec<AttributeProperty>,
    pub(crate) key_schema: Vec<KeyProperty>,
    pub(crate) billing_mode: String,
    #[serde(default)]
    pub(crate) global_secondary_indexes: Vec<IndexProperty>,
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub(crate) struct AttributeProperty {
    pub(crate) attribute_name: String,
    pub(crate) attribute_type: String,
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub(crate) struct KeyProperty {
    pub(crate) attribute_name: String,
    pub(crate) key_type: String,
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub(crate) struct IndexProperty {
    pub(crate) index_name: String,
    pub(crate) key_schema: Vec<KeyProperty>,
    pub(crate) projection: ProjectionProperty,
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub(crate) struct ProjectionProperty {
    pub(crate) projection_type: String,
    #[serde(default)]
    pub(crate) non_key_attributes: Vec<String>,
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub(crate) struct QueueProperties {
    #[serde(default)]
    pub(crate) fifo_queue: bool,
    pub(crate) content_based_deduplication: Option<bool>,
    pub(crate) visibility_timeout: Option<u32>,
    pub(crate) message_retention_period: Option<u32>,
    pub(crate) maximum_message_size: Option<u32>,
    pub(crate) deduplication_scope: Option<String>,
    pub(crate) fifo_throughput_limit: Option<String>,
    pub(crate) redrive_policy: Option<RedrivePolicy>,
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
pub(crate) struct RedrivePolicy {
    pub(crate) dead_letter_target_arn: Value,
    pub(crate) max_receive_count: u32,
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
    pub fn indexes(&self) -> Result<Vec<IndexSpec>, TemplateError> {
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
    pub fn queue_limits(&self, logical_id: &str) -> Result<(bool, Option<u32>), TemplateError> {
        let queue: QueueProperties = self.properties(logical_id, "AWS::SQS::Queue")?;
        let high_throughput = queue.deduplication_scope.as_deref() == Some("messageGroup")
            && queue.fifo_throughput_limit.as_deref() == Some("perMessageGroupId");
        Ok((high_throughput, queue.maximum_message_size))
    }

    /// The inputs of a function's scheduled events (`Schedule`, `ScheduleV2`), each
    /// parsed as JSON (`null` for an event without one).
    pub fn schedule_inputs(&self, logical_id: &str) -> Result<Vec<serde_json::Value>, TemplateError> {
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

    pub fn load(path: &Path) -> Result<Self, TemplateError> {
        let text = std::fs::read_to_string(path)
            .map_err(|source| TemplateError::Read { path: path.display().to_string(), source })?;
        Template::parse(&text)
    }

    pub fn parse(text: &str) -> Result<Self, TemplateError> {
        let document: Value = serde_yaml_ng::from_str(text)?;
        let resources = document
            .get("Resources")
            .and_then(Value::as_mapping)
            .cloned()
            .ok_or_else(|| TemplateError::MissingResource("Resources".into()))?;
        let parameters = document.get("Parameters").and_then(Value::as_mapping).cloned().unwrap_or_default();
        let globals = document.get("Globals").cloned().unwrap_or(Value::Null);
        Ok(Template { resources, parameters, globals })
    }

    /// Sets the terminal-events queue's `VisibilityTimeout` (how long a message received by
    /// a notifier that then died stays hidden), for runs that compress time.
    /// Sets the visibility timeout of the queues something consumes: the terminal events'
    /// and the hint queue (a message that failed waits this long before it is tried again).
    pub fn set_queue_visibility_timeout(&mut self, seconds: u32) {
        for queue in [QUEUE, HINT_QUEUE] {
            if let Some(properties) = self.resources.get_mut(queue).and_then(|queue| queue.get_mut("Properties")) {
                if let Some(properties) = properties.as_mapping_mut() {
                    properties.insert("VisibilityTimeout".into(), seconds.into());
                }
            }
        }
    }

    pub(crate) fn properties<T: serde::de::DeserializeOwned>(
        &self,
        logical_id: &str,
        kind: &str,
    ) -> Result<T, TemplateError> {
        let resource =
            self.resources.get(logical_id).cloned().ok_or_else(|| TemplateError::MissingResource(logical_id.into()))?;
        let resource: Resource = serde_yaml_ng::from_value(resource)?;
        if resource.kind != kind {
            return Err(TemplateError::MissingResource(format!("{logical_id} ({kind})")));
        }
        Ok(serde_yaml_ng::from_value(resource.properties)?)
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
                if let EnvValue::Ref(name) = value {
                    if secrets.contains_key(&name) {
                        variables.insert(variable, name);
                    }
                }
            }
        }
        variables
    }

    /// The function `logical_id`, with `Globals.Function` applied under its own properties.
    pub fn function(&self, logical_id: &str) -> Result<Function, TemplateError> {
        let resource = self
            .resources
            .get(logical_id)
            .filter(|r| r["Type"].as_str() == Some("AWS::Serverless::Function"))
            .ok_or_else(|| TemplateError::NoFunction(logical_id.to_owned()))?;
        let globals = &self.globals["Function"];
        let properties = &resource["Properties"];
        let property = |name: &str| if properties[name].is_null() { &globals[name] } else { &properties[name] };
        let number = |name: &str, default: u64| property(name).as_u64().unwrap_or(default);
        let binary = resource["Metadata"]["BuildProperties"]["Binary"].as_str().ok_or_else(|| {
            TemplateError::Unsupported(format!("{logical_id} has no Metadata.BuildProperties.Binary"))
        })?;
        let logging = property("LoggingConfig");
        let mut variables = BTreeMap::new();
        for source in [&globals["Environment"]["Variables"], &properties["Environment"]["Variables"]] {
            for (name, value) in source.as_mapping().into_iter().flatten() {
                let name =
                    name.as_str().ok_or_else(|| TemplateError::Unsupported(format!("{logical_id}: variable name")))?;
                variables.insert(name.to_owned(), env_value(value).map_err(TemplateError::Unsupported)?);
            }
        }
        Ok(Function {
            logical_id: logical_id.to_owned(),
            binary: binary.to_owned(),
            timeout_seconds: number("Timeout", 3),
            memory_mb: number("MemorySize", 128),
            log_format: logging["LogFormat"].as_str().map(str::to_owned),
            log_level: logging["ApplicationLogLevel"].as_str().map(str::to_owned),
            variables,
        })
    }

    /// The function API Gateway sends `route_key` ("METHOD /path", as an HTTP API event
    /// carries it in `routeKey`) to: the one with an HttpApi event of that method and path.
    pub fn function_for_route(&self, route_key: &str) -> Option<String> {
        self.function_ids().into_iter().find(|id| {
            let events = &self.resources[id.as_str()]["Properties"]["Events"];
            events.as_mapping().into_iter().flatten().any(|(_, event)| {
                let properties = &event["Properties"];
                event["Type"].as_str() == Some("HttpApi")
                    && properties["Method"]
                        .as_str()
                        .zip(properties["Path"].as_str())
                        .is_some_and(|(method, path)| route_key == format!("{method} {path}"))
            })
        })
    }

    /// The function an `SQS` event of which reads the queue `queue` (a logical id).
    pub fn function_for_queue(&self, queue: &str) -> Option<String> {
        self.function_ids().into_iter().find(|id| {
            let events = &self.resources[id.as_str()]["Properties"]["Events"];
            events.as_mapping().into_iter().flatten().any(|(_, event)| {
                event["Type"].as_str() == Some("SQS")
                    && get_att_arn(&event["Properties"]["Queue"]).is_ok_and(|q| q == queue)
            })
        })
    }

    /// The function the queue `queue` (a logical id) triggers, and its trigger's batch size.
    pub fn sqs_trigger(&self, queue: &str) -> Result<(String, u64), TemplateError> {
        let function = self
            .function_for_queue(queue)
            .ok_or_else(|| TemplateError::Unsupported(format!("no function is triggered by {queue}")))?;
        let events = &self.resources[function.as_str()]["Properties"]["Events"];
        let batch = events
            .as_mapping()
            .into_iter()
            .flatten()
            .find(|(_, event)| event["Type"].as_str() == Some("SQS"))
            .and_then(|(_, event)| event["Properties"]["BatchSize"].as_u64())
            .unwrap_or(10);
        Ok((function, batch))
    }

    /// Every function's logical id.
    pub fn function_ids(&self) -> Vec<String> {
        self.resources
            .iter()
            .filter(|(_, r)| r["Type"].as_str() == Some("AWS::Serverless::Function"))
            .filter_map(|(id, _)| id.as_str().map(str::to_owned))
            .collect()
    }
}

/// A value in a function's `Environment.Variables`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum EnvValue {
    Literal(String),
    /// `!Ref Name`: a parameter, or a resource of the template.
    Ref(String),
}

/// What template.yaml says about one function, Globals applied.
#[derive(Debug, Clone)]
pub struct Function {
    pub logical_id: String,
    /// `Metadata.BuildProperties.Binary`: the cargo binary `sam build` builds.
    pub binary: String,
    pub timeout_seconds: u64,
    pub memory_mb: u64,
    /// `LoggingConfig.LogFormat` and `ApplicationLogLevel`, which Lambda passes on as
    /// `AWS_LAMBDA_LOG_FORMAT` and `AWS_LAMBDA_LOG_LEVEL`.
    pub log_format: Option<String>,
    pub log_level: Option<String>,
    pub variables: BTreeMap<String, EnvValue>,
}

fn env_value(value: &Value) -> Result<EnvValue, String> {
    match value {
        Value::String(s) => Ok(EnvValue::Literal(s.clone())),
        Value::Number(n) => Ok(EnvValue::Literal(n.to_string())),
        Value::Bool(b) => Ok(EnvValue::Literal(b.to_string())),
        Value::Tagged(tagged) if tagged.tag == "Ref" => {
            tagged.value.as_str().map(|s| EnvValue::Ref(s.to_owned())).ok_or_else(|| format!("{value:?}"))
        }
        Value::Mapping(m) => m
            .get("Ref")
            .and_then(Value::as_str)
            .map(|s| EnvValue::Ref(s.to_owned()))
            .ok_or_else(|| format!("unsupported environment value {value:?}")),
        Value::Null | Value::Sequence(_) | Value::Tagged(_) => Err(format!("unsupported environment value {value:?}")),
    }
}

/// `!GetAtt Name.Arn` (or `Fn::GetAtt: [Name, Arn]`) → `Name`.
pub(crate) fn get_att_arn(value: &Value) -> Result<String, TemplateError> {
    let unsupported = || TemplateError::Unsupported(format!("expected !GetAtt <queue>.Arn, found {value:?}"));
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
