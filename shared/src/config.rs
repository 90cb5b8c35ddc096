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
    /// On Lambda, a secret holding a development value (`local.env.example`, `dev-keys/`).
    #[error("the secret {arn} names holds a development value in {key} (from local.env.example or dev-keys/, public and worthless): put the real one with `aws secretsmanager put-secret-value` (see docs/configuration.md, Secrets)")]
    DevelopmentSecret { arn: &'static str, key: &'static str },
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

/// One environment variable a function reads: its name, what it may be, and what it is
/// for. Each function's settings are the list of its variables (`settings()` or
/// `SETTINGS` in its crate, `Webhook::settings` for a provider's); template.yaml and the
/// documentation (docs/configuration.md, each provider's page) are checked against them.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Setting {
    pub name: &'static str,
    pub kind: SettingKind,
    /// What it is for, in a line.
    pub description: &'static str,
}

/// What a setting may be.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SettingKind {
    /// Must be set: the function does not start without it.
    Required,
    /// May be unset: then `default` applies (as text), or, with none, what the setting's
    /// description says.
    Optional { default: Option<&'static str> },
    /// A whole number from `min` to `max`, `default` when unset.
    Number { default: u64, min: u64, max: u64 },
}

impl Setting {
    pub const fn required(name: &'static str, description: &'static str) -> Self {
        Setting { name, kind: SettingKind::Required, description }
    }

    pub const fn optional(name: &'static str, default: Option<&'static str>, description: &'static str) -> Self {
        Setting { name, kind: SettingKind::Optional { default }, description }
    }

    pub(crate) const fn number(
        name: &'static str,
        default: u64,
        min: u64,
        max: u64,
        description: &'static str,
    ) -> Self {
        Setting { name, kind: SettingKind::Number { default, min, max }, description }
    }

    /// A whole number from 1 to a year of seconds (31,536,000), `default` when unset.
    pub const fn positive(name: &'static str, default: u64, description: &'static str) -> Self {
        Setting::number(name, default, 1, A_YEAR_OF_SECONDS, description)
    }

    /// A number setting's value: its default when unset (or empty), an error naming it
    /// when it is not a whole number within its bounds.
    pub fn number_from(&self, env: &impl Env) -> Result<u64, ConfigError> {
        let SettingKind::Number { default, min, max } = self.kind else {
            return Err(ConfigError::Invalid { name: self.name, reason: "is not read as a number".into() });
        };
        match env.optional(self.name) {
            None => Ok(default),
            Some(value) => match value.trim().parse::<u64>() {
                Ok(number) if (min..=max).contains(&number) => Ok(number),
                Ok(_) | Err(_) => Err(ConfigError::Invalid {
                    name: self.name,
                    reason: format!("must be a whole number from {min} to {max}"),
                }),
            },
        }
    }
}

/// The most a duration in seconds may be: a year.
const A_YEAR_OF_SECONDS: u64 = 31_536_000;

pub const TABLE_NAME: Setting = Setting::required("TABLE_NAME", "the DynamoDB table (set by the template)");
pub const QUEUE_URL: Setting =
    Setting::required("QUEUE_URL", "the SQS FIFO queue of terminal events (set by the template)");
pub const STATUS_SYNC_AFTER_SECONDS: Setting = Setting::positive(
    "STATUS_SYNC_AFTER_SECONDS",
    300,
    "seconds after a transaction's last change before the status sync first asks its provider",
);
pub const NOTIFY_EVENT_TYPES: Setting = Setting::optional(
    "NOTIFY_EVENT_TYPES",
    Some("every type but transaction.updated"),
    "the event types the merchant receives, a comma list",
);
pub(crate) const SECRET_PREVIOUS_GRACE_MINUTES: Setting = Setting::number(
    "SECRET_PREVIOUS_GRACE_MINUTES",
    60,
    0,
    10_080,
    "after a rotation, how long the previous version of a secret still verifies inbound requests",
);
pub(crate) const HINT_QUEUE_URL: Setting =
    Setting::required("HINT_QUEUE_URL", "the standard SQS queue a provider's hints are queued on");

/// What every function that writes a transaction reads (the pipeline's `WritePath`).
pub const WRITE_PATH: [Setting; 4] = [TABLE_NAME, QUEUE_URL, STATUS_SYNC_AFTER_SECONDS, NOTIFY_EVENT_TYPES];

/// Where the webhook functions keep state: read from `TABLE_NAME` and `QUEUE_URL`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StorageConfig {
    pub table_name: String,
    pub queue_url: String,
}

impl StorageConfig {
    pub fn from_env(env: &impl Env) -> Result<Self, ConfigError> {
        Ok(StorageConfig { table_name: env.required(TABLE_NAME.name)?, queue_url: env.required(QUEUE_URL.name)? })
    }
}

/// `STATUS_SYNC_AFTER_SECONDS` (default 300): how long after a transaction's last change
/// the status sync first asks its provider. Read by every function that writes a
/// non-final status, since that write schedules the sync.
pub fn sync_policy(env: &impl Env) -> Result<crate::model::SyncPolicy, ConfigError> {
    let seconds = STATUS_SYNC_AFTER_SECONDS.number_from(env)?;
    Ok(crate::model::SyncPolicy { after: std::time::Duration::from_secs(seconds) })
}

/// `NOTIFY_EVENT_TYPES`: the comma list of event types the merchant receives (default:
/// every type but `transaction.updated`, which is opt in).
pub fn event_types(env: &impl Env) -> Result<crate::model::notification::EventTypes, ConfigError> {
    match env.optional(NOTIFY_EVENT_TYPES.name) {
        None => Ok(Default::default()),
        Some(list) => crate::model::notification::EventTypes::parse(&list)
            .map_err(|e| ConfigError::Invalid { name: NOTIFY_EVENT_TYPES.name, reason: e.to_string() }),
    }
}

/// A provider API's base URL from `name`, without a trailing slash, parsed as a URL:
/// https, or plain http to a loopback host only (the local stand-ins); no user info, query
/// or fragment (`http://127.0.0.1:@evil.example` is evil.example's). `None` when unset.
pub fn api_url(env: &impl Env, name: &'static str) -> Result<Option<String>, ConfigError> {
    let Some(text) = env.optional(name) else {
        return Ok(None);
    };
    let invalid = |reason: &str| ConfigError::Invalid { name, reason: reason.to_owned() };
    let text = text.trim().trim_end_matches('/').to_owned();
    let url = url::Url::parse(&text).map_err(|_| invalid("not a URL"))?;
    if !url.username().is_empty() || url.password().is_some() {
        return Err(invalid("must not carry user info (user:password@)"));
    }
    if url.query().is_some() || url.fragment().is_some() {
        return Err(invalid("must not carry a query or a fragment"));
    }
    let loopback = match url.host() {
        Some(url::Host::Ipv4(ip)) => ip.is_loopback(),
        Some(url::Host::Ipv6(ip)) => ip.is_loopback(),
        Some(url::Host::Domain(domain)) => domain.eq_ignore_ascii_case("localhost"),
        None => false,
    };
    match (url.scheme(), url.host()) {
        ("https", Some(_)) => Ok(Some(text)),
        ("http", Some(_)) if loopback => Ok(Some(text)),
        _ => Err(invalid("must be https:// (plain http only to a loopback host, for local stand-ins)")),
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
        assert_eq!(api_url(&[("U", "http://localhost:9")], "U"), Ok(Some("http://localhost:9".into())));
        assert_eq!(api_url(&[("U", "http://[::1]:9/v1/")], "U"), Ok(Some("http://[::1]:9/v1".into())));
        for bad in [
            "http://api.example",
            "http://127.0.0.1.evil.example",
            "ftp://x",
            "http://127.0.0.1:@evil.example",
            "http://localhost:80@evil.example",
            "https://user:pass@api.example",
            "https://api.example/?x=1",
            "https://api.example/#x",
            "http://127.0.0.2.nip.io",
            "https://",
            "not a url",
        ] {
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
