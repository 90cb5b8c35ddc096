//! Configuration read once from the environment into typed values.

use sha2::{Digest, Sha256};
use subtle::ConstantTimeEq;

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum ConfigError {
    #[error("missing environment variable {0}")]
    Missing(&'static str),
    #[error("environment variable {name} is invalid: {reason}")]
    Invalid { name: &'static str, reason: String },
    /// A secret given both ways.
    #[error("{value} and {arn} are both set: set only {arn} (the plain {value} is a development fallback)")]
    SecretTwice { value: &'static str, arn: &'static str },
    /// Secrets Manager could not be asked, or refused: the function does not start.
    #[error("could not read the secret {name} names ({arn}): {reason}")]
    SecretUnreadable { name: &'static str, arn: String, reason: String },
    #[error("the secret {arn} names has no {key}: set it with `aws secretsmanager put-secret-value` (see docs/configuration.md, Secrets)")]
    SecretKeyMissing { arn: &'static str, key: &'static str },
    #[error("missing environment variable {arn} (or, for development only, {key})")]
    SecretMissing { arn: &'static str, key: &'static str },
}

/// Where configuration comes from: the process environment in production, a map in tests.
pub trait Env {
    fn var(&self, name: &str) -> Option<String>;

    /// A variable that must be set and non-empty.
    fn required(&self, name: &'static str) -> Result<String, ConfigError> {
        match self.var(name) {
            Some(value) if !value.trim().is_empty() => Ok(value),
            Some(_) | None => Err(ConfigError::Missing(name)),
        }
    }

    /// A variable that may be unset; set but empty counts as unset.
    fn optional(&self, name: &'static str) -> Option<String> {
        self.var(name).filter(|value| !value.trim().is_empty())
    }

    fn secret(&self, name: &'static str) -> Result<Secret, ConfigError> {
        self.required(name).map(Secret::new)
    }
}

/// A multi-line value (a PEM key or certificate) that may be written on one line with
/// literal `\n` sequences, as environment variables and env files need.
pub fn multiline(value: &str) -> String {
    value.replace("\\n", "\n")
}

/// The process environment.
#[derive(Debug, Clone, Copy, Default)]
pub struct ProcessEnv;

impl Env for ProcessEnv {
    fn var(&self, name: &str) -> Option<String> {
        std::env::var(name).ok()
    }
}

impl<E: Env + ?Sized> Env for std::sync::Arc<E> {
    fn var(&self, name: &str) -> Option<String> {
        self.as_ref().var(name)
    }
}

impl<const N: usize> Env for [(&str, &str); N] {
    fn var(&self, name: &str) -> Option<String> {
        self.iter().find(|(key, _)| *key == name).map(|(_, value)| (*value).to_owned())
    }
}

/// A secret value: never printed, compared in constant time.
#[derive(Clone)]
pub struct Secret {
    value: String,
    /// SHA-256 of `value`, computed once: `matches` hashes only the candidate.
    digest: [u8; 32],
}

impl Secret {
    pub fn new(value: impl Into<String>) -> Self {
        let value = value.into();
        let digest = Sha256::digest(value.as_bytes()).into();
        Secret { value, digest }
    }

    /// The secret itself, for the one place that must use it (signing, a request header).
    pub fn expose(&self) -> &str {
        &self.value
    }

    /// Whether `candidate` equals the secret. Both sides are compared as SHA-256 digests,
    /// in constant time, so the comparison takes the same time whatever the candidate's
    /// length or content.
    pub fn matches(&self, candidate: &[u8]) -> bool {
        let given: [u8; 32] = Sha256::digest(candidate).into();
        self.digest.ct_eq(&given).into()
    }
}

impl std::fmt::Debug for Secret {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("[redacted]")
    }
}

/// Where the webhook functions keep state: read from `TABLE_NAME` and `QUEUE_URL`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StorageConfig {
    pub table_name: String,
    pub queue_url: String,
}

impl StorageConfig {
    pub fn from_env(env: &impl Env) -> Result<Self, ConfigError> {
        Ok(StorageConfig { table_name: env.required("TABLE_NAME")?, queue_url: env.required("QUEUE_URL")? })
    }
}

/// `STATUS_SYNC_AFTER_SECONDS` (default 300): how long after a transaction's last change
/// the status sync first asks its provider. Read by every function that writes a
/// non-final status, since that write schedules the sync.
pub fn sync_policy(env: &impl Env) -> Result<crate::model::SyncPolicy, ConfigError> {
    let seconds = positive_integer(env, "STATUS_SYNC_AFTER_SECONDS", 300)?;
    Ok(crate::model::SyncPolicy { after: std::time::Duration::from_secs(seconds) })
}

/// `NOTIFY_EVENT_TYPES`: the comma list of event types the merchant receives (default:
/// every outcome and `transaction.conflict`; `transaction.updated` is opt in).
pub fn event_types(env: &impl Env) -> Result<crate::model::notification::EventTypes, ConfigError> {
    match env.optional("NOTIFY_EVENT_TYPES") {
        None => Ok(Default::default()),
        Some(list) => crate::model::notification::EventTypes::parse(&list)
            .map_err(|e| ConfigError::Invalid { name: "NOTIFY_EVENT_TYPES", reason: e.to_string() }),
    }
}

/// A provider API's base URL from `name`, without a trailing slash: https, or plain
/// http on loopback only (the local stand-ins). `None` when unset.
pub fn api_url(env: &impl Env, name: &'static str) -> Result<Option<String>, ConfigError> {
    let Some(url) = env.optional(name) else {
        return Ok(None);
    };
    let url = url.trim().trim_end_matches('/').to_owned();
    let loopback = ["http://127.0.0.1:", "http://localhost:"].iter().any(|p| url.starts_with(p))
        || url == "http://127.0.0.1"
        || url == "http://localhost";
    if url.starts_with("https://") || loopback {
        Ok(Some(url))
    } else {
        Err(ConfigError::Invalid {
            name,
            reason: "must be https:// (plain http only on loopback, for local stand-ins)".into(),
        })
    }
}

/// A whole number from 1 to 31536000 (a year of seconds): `default` when unset.
pub fn positive_integer(env: &impl Env, name: &'static str, default: u64) -> Result<u64, ConfigError> {
    match env.optional(name) {
        None => Ok(default),
        Some(value) => match value.trim().parse::<u64>() {
            Ok(seconds) if (1..=31_536_000).contains(&seconds) => Ok(seconds),
            Ok(_) | Err(_) => {
                Err(ConfigError::Invalid { name, reason: "must be a whole number from 1 to 31536000".into() })
            }
        },
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn multiline_values_may_use_escaped_newlines() {
        assert_eq!(multiline("-----BEGIN X-----\\nAAAA\\n-----END X-----"), "-----BEGIN X-----\nAAAA\n-----END X-----");
        assert_eq!(multiline("line one\nline two"), "line one\nline two");
    }

    #[test]
    fn secret_debug_is_redacted() {
        let secret = Secret::new("hunter2");
        assert_eq!(format!("{secret:?}"), "[redacted]");
        assert!(!format!("{:?}", Some(&secret)).contains("hunter2"));
    }

    #[test]
    fn secret_matches_only_itself() {
        let secret = Secret::new("dev-azqr-key");
        assert!(secret.matches(b"dev-azqr-key"));
        assert!(!secret.matches(b"dev-azqr-kez"));
        assert!(!secret.matches(b"dev-azqr-key "));
        assert!(!secret.matches(b""));
    }

    #[test]
    fn api_urls_are_https_or_loopback() {
        assert_eq!(api_url(&[("U", "https://api.example/")], "U"), Ok(Some("https://api.example".into())));
        assert_eq!(api_url(&[("U", "http://127.0.0.1:8080")], "U"), Ok(Some("http://127.0.0.1:8080".into())));
        assert_eq!(api_url(&[("X", "y")], "U"), Ok(None));
        for bad in ["http://api.example", "http://127.0.0.1.evil.example", "ftp://x"] {
            assert!(matches!(api_url(&[("U", bad)], "U"), Err(ConfigError::Invalid { name: "U", .. })), "{bad}");
        }
    }

    #[test]
    fn durations_are_whole_seconds_with_a_default() {
        assert_eq!(sync_policy(&[("X", "y")]).map(|p| p.after.as_secs()), Ok(300));
        assert_eq!(sync_policy(&[("STATUS_SYNC_AFTER_SECONDS", "1")]).map(|p| p.after.as_secs()), Ok(1));
        for bad in ["0", "-5", "1.5", "soon"] {
            let error = sync_policy(&[("STATUS_SYNC_AFTER_SECONDS", bad)]).expect_err(bad);
            assert!(matches!(error, ConfigError::Invalid { name: "STATUS_SYNC_AFTER_SECONDS", .. }), "{bad}");
        }
    }

    #[test]
    fn missing_or_empty_variables_are_named() {
        let env = [("TABLE_NAME", "transactions"), ("QUEUE_URL", "  ")];
        assert_eq!(StorageConfig::from_env(&env), Err(ConfigError::Missing("QUEUE_URL")));
        let env = [("QUEUE_URL", "http://q")];
        let error = StorageConfig::from_env(&env).expect_err("TABLE_NAME is missing");
        assert_eq!(error.to_string(), "missing environment variable TABLE_NAME");
        let env = [("TABLE_NAME", "t"), ("QUEUE_URL", "http://q")];
        assert_eq!(
            StorageConfig::from_env(&env),
            Ok(StorageConfig { table_name: "t".into(), queue_url: "http://q".into() })
        );
    }
}
