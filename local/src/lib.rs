//! The local pipeline: emulator clients, provisioning from template.yaml, and serving
//! every webhook function on one HTTP port. Used by the run command and the tests.

pub mod attack;
pub mod capacity;
pub mod chaos;
pub mod cli;
pub mod fixtures;
pub mod fuzzing;
pub mod invoke;
pub mod merchant;
pub mod provision;
pub mod registry;
pub mod serve;
pub mod settings;
pub mod sqs_rules;
pub mod stack;
pub mod template;
pub mod timing;
pub mod triggers;

use std::collections::HashMap;
use std::path::Path;

use aws_sdk_dynamodb::config::{BehaviorVersion, Credentials, Region};
use shared::runtime::config::Env;

pub use provision::Resources;
pub use serve::{mount, Routes};
pub use template::Template;
pub use timing::LocalTiming;

/// A retry partition of its own for each client: on AWS each function is a process with
/// its own retry token bucket, so one function's failures never use up another's
/// retries; the SDK shares a bucket by service name within a process, which the local
/// pipeline (every function in one process) must not.
fn own_retry_partition(service: &str) -> aws_sdk_dynamodb::config::retry::RetryPartition {
    static CLIENTS: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);
    let n = CLIENTS.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    aws_sdk_dynamodb::config::retry::RetryPartition::new(format!("{service}-{n}"))
}

/// A DynamoDB client for an emulator at `endpoint` (dummy credentials, us-east-1), with
/// the functions' time limits and a retry partition of its own; each request carries the
/// id of the webhook request being served, if any ([`serve::RequestTag`]).
pub fn dynamodb_client(endpoint: &str) -> aws_sdk_dynamodb::Client {
    let config = aws_sdk_dynamodb::Config::builder()
        .behavior_version(BehaviorVersion::latest())
        .region(Region::new("us-east-1"))
        .credentials_provider(Credentials::new("local", "local", None, None, "local"))
        .endpoint_url(endpoint)
        .timeout_config(shared::runtime::storage_timeouts())
        .retry_config(shared::runtime::storage_retries())
        .retry_partition(own_retry_partition("dynamodb"))
        .interceptor(serve::RequestTag)
        .build();
    aws_sdk_dynamodb::Client::from_conf(config)
}

/// An SQS client for an emulator at `endpoint` (dummy credentials, us-east-1), as
/// [`dynamodb_client`], that refuses what real SQS refuses and moto takes
/// ([`sqs_rules::SqsRules`]).
pub fn sqs_client(endpoint: &str) -> aws_sdk_sqs::Client {
    let config = aws_sdk_sqs::Config::builder()
        .behavior_version(aws_sdk_sqs::config::BehaviorVersion::latest())
        .region(aws_sdk_sqs::config::Region::new("us-east-1"))
        .credentials_provider(aws_sdk_sqs::config::Credentials::new("local", "local", None, None, "local"))
        .endpoint_url(endpoint)
        .timeout_config(shared::runtime::storage_timeouts())
        .retry_config(shared::runtime::storage_retries())
        .retry_partition(own_retry_partition("sqs"))
        .interceptor(serve::RequestTag)
        .interceptor(sqs_rules::SqsRules)
        .build();
    aws_sdk_sqs::Client::from_conf(config)
}

/// A Secrets Manager client for moto at `endpoint` (dummy credentials, us-east-1), with
/// the functions' timeouts.
pub fn secrets_client(endpoint: &str) -> aws_sdk_secretsmanager::Client {
    let config = aws_config::SdkConfig::builder()
        .behavior_version(aws_config::BehaviorVersion::latest())
        .region(aws_config::Region::new("us-east-1"))
        .credentials_provider(aws_sdk_dynamodb::config::SharedCredentialsProvider::new(Credentials::new(
            "local", "local", None, None, "local",
        )))
        .endpoint_url(endpoint)
        .build();
    shared::runtime::secrets_client(&config)
}

/// The environment the functions get, as in AWS: the development environment, with each
/// secret's ARN (`*_SECRET_ARN`, the secrets provisioned in moto) and without the plain
/// secret values, so that every secret is read through the Lambda path.
#[derive(Debug, Clone)]
pub struct LambdaEnv {
    base: DevEnv,
    arns: HashMap<String, String>,
    hidden: std::collections::HashSet<String>,
}

impl LambdaEnv {
    /// Over `base`, with the ARNs `resources` holds for the template's secrets.
    pub fn new(base: DevEnv, template: &Template, resources: &Resources) -> Self {
        let arns = template
            .secret_arn_variables()
            .into_iter()
            .filter_map(|(variable, id)| resources.secrets.get(&id).map(|arn| (variable, arn.clone())))
            .collect();
        let hidden = template.secrets().into_values().flatten().collect();
        LambdaEnv { base, arns, hidden }
    }
}

impl Env for LambdaEnv {
    fn var(&self, name: &str) -> Option<String> {
        match (self.arns.get(name), self.hidden.contains(name)) {
            (Some(arn), _) => Some(arn.clone()),
            (None, true) => None,
            (None, false) => self.base.var(name),
        }
    }
}

/// The process environment over the defaults of a dotenv file (the checked-in example
/// env), read with `dotenvy`: a variable set in the environment wins.
#[derive(Debug, Default, Clone)]
pub struct DevEnv {
    defaults: HashMap<String, String>,
}

impl DevEnv {
    pub fn load(path: &Path) -> Result<Self, dotenvy::Error> {
        Self::from_pairs(dotenvy::from_path_iter(path)?)
    }

    pub fn parse(text: &str) -> Result<Self, dotenvy::Error> {
        Self::from_pairs(dotenvy::from_read_iter(text.as_bytes()))
    }

    fn from_pairs(pairs: impl Iterator<Item = dotenvy::Result<(String, String)>>) -> Result<Self, dotenvy::Error> {
        Ok(DevEnv { defaults: pairs.collect::<Result<_, _>>()? })
    }

    /// Sets a default (the environment still wins), e.g. the URL of a stand-in just started.
    pub fn set_default(&mut self, name: &str, value: impl Into<String>) {
        self.defaults.insert(name.to_owned(), value.into());
    }
}

impl Env for DevEnv {
    fn var(&self, name: &str) -> Option<String> {
        std::env::var(name).ok().or_else(|| self.defaults.get(name).cloned())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn dev_env_reads_defaults_and_skips_comments() {
        let text = "# comment\nLOCAL_TEST_ONLY_A=one\n\nLOCAL_TEST_ONLY_B=two=2\nLOCAL_TEST_ONLY_PEM=\"-----BEGIN X-----\\nAAAA\\n-----END X-----\"\n";
        let env = DevEnv::parse(text).expect("dotenv");
        assert_eq!(env.var("LOCAL_TEST_ONLY_A").as_deref(), Some("one"));
        assert_eq!(env.var("LOCAL_TEST_ONLY_B").as_deref(), Some("two=2"));
        assert_eq!(env.var("LOCAL_TEST_ONLY_PEM").as_deref(), Some("-----BEGIN X-----\nAAAA\n-----END X-----"));
        assert_eq!(env.var("LOCAL_TEST_ONLY_C"), None);
        assert!(DevEnv::parse("LOCAL_TEST_ONLY_D=two words\n").is_err(), "unquoted spaces are an error, not a cut");
    }
}
