//! The local pipeline: emulator clients, provisioning from template.yaml, and serving
//! every webhook function on one HTTP port. Used by the run command and the tests.

pub mod fixtures;
pub mod invoke;
pub mod merchant;
pub mod provision;
pub mod registry;
pub mod serve;

use std::collections::HashMap;
use std::path::Path;

use aws_sdk_dynamodb::config::{BehaviorVersion, Credentials, Region};
use shared::Env;

pub use provision::{Resources, Template};
pub use serve::{mount, Routes};

/// A DynamoDB client for an emulator at `endpoint` (dummy credentials, us-east-1).
pub fn dynamodb_client(endpoint: &str) -> aws_sdk_dynamodb::Client {
    let config = aws_sdk_dynamodb::Config::builder()
        .behavior_version(BehaviorVersion::latest())
        .region(Region::new("us-east-1"))
        .credentials_provider(Credentials::new("local", "local", None, None, "local"))
        .endpoint_url(endpoint)
        .build();
    aws_sdk_dynamodb::Client::from_conf(config)
}

/// An SQS client for an emulator at `endpoint` (dummy credentials, us-east-1).
pub fn sqs_client(endpoint: &str) -> aws_sdk_sqs::Client {
    let config = aws_sdk_sqs::Config::builder()
        .behavior_version(aws_sdk_sqs::config::BehaviorVersion::latest())
        .region(aws_sdk_sqs::config::Region::new("us-east-1"))
        .credentials_provider(aws_sdk_sqs::config::Credentials::new("local", "local", None, None, "local"))
        .endpoint_url(endpoint)
        .build();
    aws_sdk_sqs::Client::from_conf(config)
}

/// The process environment over the defaults of a `KEY=value` file (the checked-in
/// example env): a variable set in the environment wins.
#[derive(Debug, Default)]
pub struct DevEnv {
    defaults: HashMap<String, String>,
}

impl DevEnv {
    pub fn load(path: &Path) -> std::io::Result<Self> {
        Ok(DevEnv::parse(&std::fs::read_to_string(path)?))
    }

    pub fn parse(text: &str) -> Self {
        let defaults = text
            .lines()
            .map(str::trim)
            .filter(|line| !line.is_empty() && !line.starts_with('#'))
            .filter_map(|line| line.split_once('='))
            .map(|(key, value)| (key.trim().to_owned(), value.trim().to_owned()))
            .collect();
        DevEnv { defaults }
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
        let env = DevEnv::parse("# comment\nLOCAL_TEST_ONLY_A = one\n\nLOCAL_TEST_ONLY_B=two=2\n");
        assert_eq!(env.var("LOCAL_TEST_ONLY_A").as_deref(), Some("one"));
        assert_eq!(env.var("LOCAL_TEST_ONLY_B").as_deref(), Some("two=2"));
        assert_eq!(env.var("LOCAL_TEST_ONLY_C"), None);
    }
}
