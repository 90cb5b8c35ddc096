//! Secrets read from AWS Secrets Manager, rotated without a redeploy.
//!
//! Each provider (and the notifier) keeps its secrets in one Secrets Manager secret, a
//! JSON object with one key per value, named exactly like the environment variable it
//! replaces (`{"AZQR_API_KEY": "..."}`). A function finds it by ARN in the environment
//! (`AZQR_SECRET_ARN`): one `GetSecretValue` at init, then the values are cached for
//! [`CACHE_TTL`]. After a failed verification the secret may be read again early, at
//! most once per [`EARLY_REFRESH_EVERY`], so a key the provider rotated works within a
//! minute.
//!
//! While a secret is rotated, its previous version (`AWSPREVIOUS`) is also accepted for
//! inbound verification until `SECRET_PREVIOUS_GRACE_MINUTES` (default 60) after the
//! current version was created. It is read only within that window, so a secret not
//! rotated lately costs one call.
//!
//! Without an ARN the plain variables are read (a development fallback, logged as such);
//! setting both for one secret is a start-up error naming both.
//!
//! On Lambda a function refuses to start with a development secret (a value of
//! `local.env.example` or a key of `dev-keys/`), naming the secret and the key, never the
//! value; a rotation to one is refused as a failed read is. A secret's JSON may say
//! `"revoke_previous": true`: its previous version is then not accepted at all, whatever
//! the grace window (a leaked value, revoked at once).

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use aws_sdk_secretsmanager::error::DisplayErrorContext;
use sha2::{Digest, Sha256};
use time::OffsetDateTime;

use crate::config::{ConfigError, Env};

/// How long values read from Secrets Manager are used before they are read again.
pub(crate) const CACHE_TTL: Duration = Duration::from_secs(5 * 60);
/// The least time between two reads of a secret (an early one after a failed
/// verification, or a retry after a failed read).
pub(crate) const EARLY_REFRESH_EVERY: Duration = Duration::from_secs(60);

// DEVELOPMENT_DIGESTS, written by build.rs.
include!(concat!(env!("OUT_DIR"), "/development_secrets.rs"));

/// The key of a secret's JSON that ends its previous version's grace window at once.
const REVOKE_PREVIOUS: &str = "revoke_previous";

/// Lets a function under the Lambda emulator (`scripts/invoke`, the tests) start with the
/// development secrets; never set on AWS (template.yaml sets it on no function).
pub(crate) const ALLOW_DEVELOPMENT_SECRETS: &str = "ALLOW_DEVELOPMENT_SECRETS";

/// Whether `base` is a function on Lambda that must refuse the development secrets.
fn refuses_development_secrets(base: &(dyn Env + Send + Sync)) -> bool {
    base.var("AWS_LAMBDA_FUNCTION_NAME").is_some() && base.var(ALLOW_DEVELOPMENT_SECRETS).as_deref() != Some("true")
}

/// Whether `value` is a development secret: it says it is none (`not-a-secret`), or it,
/// or one of its whitespace-separated parts (the notify secret's list), is a value of
/// `local.env.example` or a file of `dev-keys/` (compared as build.rs normalizes them).
fn is_development_secret(value: &str) -> bool {
    if value.to_ascii_lowercase().contains("not-a-secret") {
        return true;
    }
    let normalized = |text: &str| -> String {
        text.replace("\\n", "").chars().filter(|c| !c.is_whitespace() && *c != '"' && *c != '\'').collect()
    };
    let known = |text: &str| {
        let digest: [u8; 32] = Sha256::digest(normalized(text).as_bytes()).into();
        DEVELOPMENT_DIGESTS.contains(&digest)
    };
    known(value) || value.split_whitespace().any(known)
}

/// One Secrets Manager secret: the variable holding its ARN, and the keys of its JSON
/// object (each also the name of its plain development variable).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SecretSpec {
    pub arn: &'static str,
    pub keys: &'static [&'static str],
}

/// `SECRET_PREVIOUS_GRACE_MINUTES` (default 60, 0 to accept no previous version): how
/// long after a rotation the previous version still verifies inbound requests.
pub(crate) fn previous_grace(env: &impl Env) -> Result<Duration, ConfigError> {
    let minutes = crate::config::SECRET_PREVIOUS_GRACE_MINUTES.number_from(env)?;
    Ok(Duration::from_secs(minutes * 60))
}

/// What a secret's values are applied to: the base environment, with the secret's keys
/// read from the secret (or, in the development fallback, from the base itself).
#[derive(Clone, Copy)]
pub struct SecretEnv<'a> {
    base: &'a (dyn Env + Send + Sync),
    spec: SecretSpec,
    values: Option<&'a BTreeMap<String, String>>,
}

impl Env for SecretEnv<'_> {
    fn var(&self, name: &str) -> Option<String> {
        match (self.spec.keys.contains(&name), self.values) {
            (true, Some(values)) => values.get(name).cloned(),
            (true, None) | (false, _) => self.base.var(name),
        }
    }
}

impl std::fmt::Debug for SecretEnv<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SecretEnv").field("secret", &self.spec.arn).finish_non_exhaustive()
    }
}

/// Builds what uses the secret (a provider's verifier, a signer, an API client) from its
/// environment. Called again whenever the secret changes.
pub type BuildFromSecret<T> = Box<dyn Fn(&SecretEnv<'_>) -> Result<T, ConfigError> + Send + Sync>;

/// What a request is verified with: the current version, and the previous one while its
/// grace window lasts.
#[derive(Debug)]
pub struct SecretVersions<T> {
    pub current: Arc<T>,
    pub previous: Option<Arc<T>>,
}

/// A value built from a secret, kept current as the secret rotates.
pub struct FromSecret<T> {
    reader: Reader<T>,
    state: tokio::sync::Mutex<State<T>>,
}

/// Where the secret comes from and what is built from it.
struct Reader<T> {
    spec: Option<SecretSpec>,
    origin: Origin,
    base: Arc<dyn Env + Send + Sync>,
    build: BuildFromSecret<T>,
    /// Inbound secrets: how long the previous version is accepted. `None`: never read.
    grace: Option<Duration>,
}

enum Origin {
    /// Built once by the caller (tests, benchmarks): never read again.
    Fixed,
    /// The plain development variables: never read again.
    Plain,
    Manager {
        client: aws_sdk_secretsmanager::Client,
        arn: String,
    },
}

struct State<T> {
    current: Arc<T>,
    /// The previous version, and until when it is accepted.
    previous: Option<(Arc<T>, OffsetDateTime)>,
    /// When the secret was last read (or a read was last tried).
    read_at: OffsetDateTime,
    next_read: OffsetDateTime,
}

impl<T> std::fmt::Debug for FromSecret<T> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let origin = match &self.reader.origin {
            Origin::Fixed => "fixed",
            Origin::Plain => "plain environment (development)",
            Origin::Manager { .. } => "Secrets Manager",
        };
        f.debug_struct("FromSecret").field("secret", &self.reader.spec.map(|s| s.arn)).field("origin", &origin).finish()
    }
}

/// One version of a secret as read.
struct Version {
    values: BTreeMap<String, String>,
    created: OffsetDateTime,
    /// Its `"revoke_previous": true`: the version before it is not accepted.
    revoke_previous: bool,
}

impl<T> FromSecret<T> {
    /// A value built by the caller, never refreshed.
    pub fn fixed(value: T) -> Self {
        let never = OffsetDateTime::UNIX_EPOCH;
        let state = State { current: Arc::new(value), previous: None, read_at: never, next_read: never };
        let none: [(&str, &str); 0] = [];
        let reader = Reader {
            spec: None,
            origin: Origin::Fixed,
            base: Arc::new(none),
            build: Box::new(|_| Err(ConfigError::Missing("a fixed value is never rebuilt"))),
            grace: None,
        };
        FromSecret { reader, state: tokio::sync::Mutex::new(state) }
    }

    /// Reads `spec`'s secret at init: from Secrets Manager when `base` sets its ARN
    /// variable, else from the plain variables (development). `grace`: for a secret that
    /// verifies inbound requests, how long its previous version stays accepted.
    pub async fn load(
        spec: SecretSpec,
        base: Arc<dyn Env + Send + Sync>,
        client: &aws_sdk_secretsmanager::Client,
        grace: Option<Duration>,
        now: OffsetDateTime,
        build: BuildFromSecret<T>,
    ) -> Result<Self, ConfigError> {
        let arn = base.optional(spec.arn);
        let plain: Vec<&'static str> = spec.keys.iter().copied().filter(|key| base.optional(key).is_some()).collect();
        if let (Some(_), Some(value)) = (&arn, plain.first()) {
            return Err(ConfigError::SecretTwice { value, arn: spec.arn });
        }
        let origin = match arn {
            Some(arn) => Origin::Manager { client: client.clone(), arn: arn.trim().to_owned() },
            None => {
                if !plain.is_empty() {
                    tracing::warn!(secret = spec.arn, variables = ?plain, "secret read from plain environment variables: a development fallback; in AWS set its ARN");
                }
                Origin::Plain
            }
        };
        let reader = Reader { spec: Some(spec), origin, base, build, grace };
        let (current, previous) = reader.read(now).await?;
        let state = State { current, previous, read_at: now, next_read: now + CACHE_TTL };
        Ok(FromSecret { reader, state: tokio::sync::Mutex::new(state) })
    }

    /// The keys to verify with at `now`, the secret read again first when its cache
    /// expired. A failed read keeps the values read before (logged) and is tried again
    /// a minute later.
    pub async fn get(&self, now: OffsetDateTime) -> SecretVersions<T> {
        let mut state = self.state.lock().await;
        if self.reader.refreshes() && now >= state.next_read {
            self.refresh(&mut state, now).await;
        }
        keys(&state, now)
    }

    /// After a failed verification: reads the secret again, unless it was read less than
    /// [`EARLY_REFRESH_EVERY`] ago (or never is). Returns the new keys when it did.
    pub(crate) async fn refresh_early(&self, now: OffsetDateTime) -> Option<SecretVersions<T>> {
        let mut state = self.state.lock().await;
        let since = now - state.read_at;
        if !self.reader.refreshes() || since < EARLY_REFRESH_EVERY {
            return None;
        }
        tracing::info!(secret = self.reader.spec.map(|s| s.arn), "verification failed: reading the secret again early");
        self.refresh(&mut state, now).await;
        Some(keys(&state, now))
    }

    async fn refresh(&self, state: &mut State<T>, now: OffsetDateTime) {
        state.read_at = now;
        match self.reader.read(now).await {
            Ok((current, previous)) => {
                state.current = current;
                state.previous = previous;
                state.next_read = now + CACHE_TTL;
            }
            Err(error) => {
                tracing::error!(secret = self.reader.spec.map(|s| s.arn), error = %error, "secret could not be read again: keeping the values read before");
                state.next_read = now + EARLY_REFRESH_EVERY;
            }
        }
    }
}

impl<T> Reader<T> {
    /// Whether the secret is read again as it ages (only from Secrets Manager).
    fn refreshes(&self) -> bool {
        matches!(self.origin, Origin::Manager { .. })
    }

    /// Reads the secret and builds from it: the current version, and the previous one
    /// while `grace` after the current version's creation lasts.
    #[allow(clippy::type_complexity)]
    async fn read(&self, now: OffsetDateTime) -> Result<(Arc<T>, Option<(Arc<T>, OffsetDateTime)>), ConfigError> {
        let Some(spec) = self.spec else {
            return Err(ConfigError::Missing("a fixed value is never read"));
        };
        let (client, arn) = match &self.origin {
            Origin::Manager { client, arn } => (client, arn),
            Origin::Fixed | Origin::Plain => return self.build_from(spec, None).map(|value| (Arc::new(value), None)),
        };
        let unreadable = |reason: String| ConfigError::SecretUnreadable { name: spec.arn, arn: arn.clone(), reason };
        let current = fetch(client, arn, "AWSCURRENT").await.map_err(unreadable)?.ok_or_else(|| {
            ConfigError::SecretUnreadable {
                name: spec.arn,
                arn: arn.clone(),
                reason: "it has no current version".into(),
            }
        })?;
        let built = Arc::new(self.build_from(spec, Some(&current.values))?);
        let until = self.grace.map(|grace| current.created + grace).filter(|until| now < *until);
        if until.is_some() && current.revoke_previous {
            tracing::warn!(
                secret = spec.arn,
                "the previous version is revoked (revoke_previous): only the current one is accepted"
            );
        }
        let until = until.filter(|_| !current.revoke_previous);
        let previous = match until {
            None => None,
            Some(until) => match fetch(client, arn, "AWSPREVIOUS").await {
                Ok(None) => None,
                Ok(Some(previous)) => match self.build_from(spec, Some(&previous.values)) {
                    Ok(value) => Some((Arc::new(value), until)),
                    Err(error) => {
                        tracing::warn!(secret = spec.arn, error = %error, "the previous version is not usable: only the current one is accepted");
                        None
                    }
                },
                Err(reason) => {
                    tracing::warn!(secret = spec.arn, error = %reason, "the previous version could not be read: only the current one is accepted");
                    None
                }
            },
        };
        tracing::info!(
            secret = spec.arn,
            created = %current.created,
            previous_accepted_until = ?previous.as_ref().map(|(_, until)| until.to_string()),
            "secret read from Secrets Manager"
        );
        Ok((built, previous))
    }

    /// Builds from `values` (None: the plain variables). A key the build misses is named
    /// with where it should have come from.
    fn build_from(&self, spec: SecretSpec, values: Option<&BTreeMap<String, String>>) -> Result<T, ConfigError> {
        let env = SecretEnv { base: self.base.as_ref(), spec, values };
        if refuses_development_secrets(self.base.as_ref()) {
            for key in spec.keys {
                if env.var(key).is_some_and(|value| is_development_secret(&value)) {
                    return Err(ConfigError::DevelopmentSecret { arn: spec.arn, key });
                }
            }
        }
        (self.build)(&env).map_err(|error| match error {
            ConfigError::Missing(key) if spec.keys.contains(&key) => match values {
                Some(_) => ConfigError::SecretKeyMissing { arn: spec.arn, key },
                None => ConfigError::SecretMissing { arn: spec.arn, key },
            },
            ConfigError::Missing(_)
            | ConfigError::Invalid { .. }
            | ConfigError::SecretTwice { .. }
            | ConfigError::SecretUnreadable { .. }
            | ConfigError::SecretKeyMissing { .. }
            | ConfigError::SecretMissing { .. }
            | ConfigError::DevelopmentSecret { .. } => error,
        })
    }
}

fn keys<T>(state: &State<T>, now: OffsetDateTime) -> SecretVersions<T> {
    SecretVersions {
        current: Arc::clone(&state.current),
        previous: state.previous.as_ref().filter(|(_, until)| now < *until).map(|(value, _)| Arc::clone(value)),
    }
}

/// One `GetSecretValue` of `stage`. `Ok(None)`: the secret has no version at that stage.
async fn fetch(client: &aws_sdk_secretsmanager::Client, arn: &str, stage: &str) -> Result<Option<Version>, String> {
    let output = match client.get_secret_value().secret_id(arn).version_stage(stage).send().await {
        Ok(output) => output,
        Err(error) if error.as_service_error().is_some_and(|e| e.is_resource_not_found_exception()) => {
            return match stage {
                "AWSCURRENT" => Err("no such secret, or it has no current version".into()),
                _ => Ok(None),
            }
        }
        Err(error) => return Err(DisplayErrorContext(&error).to_string()),
    };
    let text = output.secret_string().ok_or("it holds no SecretString")?;
    let object: BTreeMap<String, serde_json::Value> =
        serde_json::from_str(text).map_err(|_| "its value is not a JSON object of strings".to_owned())?;
    let mut values = BTreeMap::new();
    let mut revoke_previous = false;
    for (key, value) in object {
        match value {
            serde_json::Value::String(text) => {
                values.insert(key, text);
            }
            serde_json::Value::Bool(revoke) if key == REVOKE_PREVIOUS => revoke_previous = revoke,
            serde_json::Value::Null
            | serde_json::Value::Bool(_)
            | serde_json::Value::Number(_)
            | serde_json::Value::Array(_)
            | serde_json::Value::Object(_) => return Err(format!("its value of {key} is not a string")),
        }
    }
    let created = output
        .created_date()
        .and_then(|date| OffsetDateTime::from_unix_timestamp(date.secs()).ok())
        .unwrap_or(OffsetDateTime::UNIX_EPOCH);
    Ok(Some(Version { values, created, revoke_previous }))
}

#[cfg(test)]
mod tests {
    use super::*;

    const SPEC: SecretSpec = SecretSpec { arn: "X_SECRET_ARN", keys: &["X_KEY", "X_CERT"] };

    #[test]
    fn a_secret_key_comes_from_the_secret_alone_and_the_rest_from_the_environment() {
        let base = [("X_KEY", "plain"), ("X_URL", "https://x.example"), ("X_CERT", "plain-cert")];
        let values = BTreeMap::from([("X_KEY".to_owned(), "from-the-secret".to_owned())]);
        let env = SecretEnv { base: &base, spec: SPEC, values: Some(&values) };
        assert_eq!(env.var("X_KEY").as_deref(), Some("from-the-secret"));
        assert_eq!(env.var("X_CERT"), None, "a key the secret lacks is not taken from the environment");
        assert_eq!(env.var("X_URL").as_deref(), Some("https://x.example"));
        let plain = SecretEnv { base: &base, spec: SPEC, values: None };
        assert_eq!(plain.var("X_KEY").as_deref(), Some("plain"), "the development fallback");
        assert!(!format!("{env:?}").contains("from-the-secret"));
    }

    #[test]
    fn the_grace_window_is_whole_minutes_up_to_a_week() {
        assert_eq!(previous_grace(&[("X", "y")]), Ok(Duration::from_secs(3600)));
        assert_eq!(previous_grace(&[("SECRET_PREVIOUS_GRACE_MINUTES", "0")]), Ok(Duration::ZERO));
        assert_eq!(previous_grace(&[("SECRET_PREVIOUS_GRACE_MINUTES", "15")]), Ok(Duration::from_secs(900)));
        for bad in ["-1", "1.5", "10081", "soon"] {
            let error = previous_grace(&[("SECRET_PREVIOUS_GRACE_MINUTES", bad)]).expect_err(bad);
            assert!(matches!(error, ConfigError::Invalid { name: "SECRET_PREVIOUS_GRACE_MINUTES", .. }), "{bad}");
        }
    }

    /// Every development secret is known for one, as written or pasted otherwise; a value
    /// of ours is not.
    #[test]
    fn the_development_secrets_are_known() {
        let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("..");
        let env = std::fs::read_to_string(root.join("local.env.example")).expect("local.env.example");
        let mut checked = 0;
        for (key, value) in env.lines().filter(|l| !l.starts_with('#')).filter_map(|l| l.split_once('=')) {
            let secret = ["_KEY", "_SECRET", "_TOKEN"].iter().any(|end| key.ends_with(end));
            if secret {
                let value = value.trim_matches('"').replace("\\n", "\n");
                assert!(is_development_secret(&value), "{key}");
                if !value.contains(char::is_whitespace) {
                    assert!(is_development_secret(&format!("whsec_real {value}")), "{key}, in a list");
                }
                checked += 1;
            }
        }
        for file in
            ["qitech-dev-private.pem", "qitech-dev-public.pem", "pagstar-dev-client.crt", "pagstar-dev-client.key"]
        {
            let text = std::fs::read_to_string(root.join("dev-keys").join(file)).expect(file);
            assert!(is_development_secret(&text), "{file}");
            assert!(is_development_secret(&text.replace('\n', "\r\n")), "{file}, other line breaks");
            checked += 1;
        }
        assert!(checked >= 12, "{checked}");
        for ours in
            ["azqr-production-key-7f3a9c", "whsec_cHJvZHVjdGlvbi1zZWNyZXQ=", "-----BEGIN PUBLIC KEY-----\nAAAA\n"]
        {
            assert!(!is_development_secret(ours), "{ours}");
        }
    }

    #[tokio::test]
    async fn a_fixed_value_is_never_read_again() {
        let rotating = FromSecret::fixed(7);
        let now = OffsetDateTime::now_utc();
        assert_eq!(*rotating.get(now + CACHE_TTL * 2).await.current, 7);
        assert!(rotating.refresh_early(now + CACHE_TTL * 2).await.is_none());
    }
}
