//! Secrets read from Secrets Manager (moto's server) exactly as each function reads them
//! at init and after: a rotated key accepted without a restart, the previous version
//! accepted until its grace window ends (the clock is a parameter), `GetSecretValue`
//! calls counted on the wire per cache period, and a function that cannot read its
//! secret refusing to start, naming it.

use std::sync::Arc;

use crate::request_count::Counter;
use crate::support::{closed_port_endpoint, unique_number, unique_rrn, Harness};
use aws_sdk_secretsmanager::Client as SecretsClient;
use azqr_webhook::Azqr;
use shared::pipeline::{Webhook, WritePath};
use shared::runtime::config::{ConfigError, Env};
use time::{Duration, OffsetDateTime};

const GET: &str = "secretsmanager.GetSecretValue";

/// A new secret named after `id` holding `value`; returns its ARN.
async fn create(secrets: &SecretsClient, id: &str, value: serde_json::Value) -> String {
    let name = format!("t{}-{id}", unique_number());
    let output = secrets.create_secret().name(name).secret_string(value.to_string()).send().await.expect("create");
    output.arn.expect("arn")
}

/// A new current version of the secret `arn` (the one before becomes `AWSPREVIOUS`).
async fn put(secrets: &SecretsClient, arn: &str, value: serde_json::Value) {
    secrets.put_secret_value().secret_id(arn).secret_string(value.to_string()).send().await.expect("put-secret-value");
}

/// A new secret holding `{"AZQR_API_KEY": key}`; returns its ARN.
async fn azqr_secret(secrets: &SecretsClient, key: &str) -> String {
    create(secrets, "AzqrSecret", serde_json::json!({ "AZQR_API_KEY": key })).await
}

async fn rotate(secrets: &SecretsClient, arn: &str, key: &str) {
    put(secrets, arn, serde_json::json!({ "AZQR_API_KEY": key })).await
}

/// The function's environment: the secret's ARN, and the grace window in minutes.
fn lambda_env(arn: &str, grace_minutes: &str) -> Arc<dyn Env + Send + Sync> {
    let mut env = local_pipeline::DevEnv::default();
    env.set_default("AZQR_SECRET_ARN", arn);
    env.set_default("SECRET_PREVIOUS_GRACE_MINUTES", grace_minutes);
    Arc::new(env)
}

/// `h.secrets`, every request counted.
fn counted(h: &Harness, counter: &Counter) -> SecretsClient {
    SecretsClient::from_conf(h.secrets.config().to_builder().interceptor(counter.clone()).build())
}

/// The AZQR webhook as its Lambda function builds it at `now`.
async fn azqr(
    h: &Harness,
    secrets: &SecretsClient,
    env: Arc<dyn Env + Send + Sync>,
    now: OffsetDateTime,
) -> Webhook<Azqr> {
    let provider = Webhook::<Azqr>::provider_from_env(env, secrets, now).await.expect("init");
    Webhook::rotating(provider, WritePath::new(h.store.clone(), h.queue.clone(), Default::default()))
}

/// The HTTP status of a `read` webhook carrying `key`, at `at`.
async fn status_with(webhook: &Webhook<Azqr>, key: &str, at: OffsetDateTime) -> u16 {
    let request = azqr_webhook::simulator::put(&unique_rrn(), Some(key), r#"{"status":"read"}"#);
    webhook.answer(&request, at).await.status().as_u16()
}

#[tokio::test]
async fn a_rotated_key_works_without_a_restart_and_the_old_one_until_its_grace_ends() {
    let h = Harness::new().await;
    let counter = Counter::default();
    let secrets = counted(&h, &counter);
    let (old, new) = ("azqr-key-before-rotation", "azqr-key-after-rotation");
    let arn = azqr_secret(&h.secrets, old).await;
    let t0 = OffsetDateTime::now_utc();
    let webhook = azqr(&h, &secrets, lambda_env(&arn, "60"), t0).await;
    // A secret created a moment ago: its previous version is asked for too (there is none).
    assert_eq!(counter.take_target(GET), 2, "init: AWSCURRENT, and AWSPREVIOUS within the grace window");
    assert_eq!(status_with(&webhook, old, t0).await, 204);
    assert_eq!(counter.take_target(GET), 0, "cached");

    rotate(&h.secrets, &arn, new).await;
    let rotated_at = OffsetDateTime::now_utc();
    // Within a minute of the last read the cache stands, even after a failure.
    assert_eq!(status_with(&webhook, new, t0 + Duration::seconds(30)).await, 401);
    assert_eq!(counter.take_target(GET), 0, "no early read within a minute of the last");
    // A minute on, a failed verification reads the secret again: the new key works.
    assert_eq!(status_with(&webhook, new, t0 + Duration::seconds(61)).await, 204, "rotated key, no restart");
    assert_eq!(counter.take_target(GET), 2, "the early read: current and previous");
    assert_eq!(status_with(&webhook, old, t0 + Duration::seconds(62)).await, 204, "previous version, in grace");
    assert_eq!(status_with(&webhook, new, t0 + Duration::seconds(63)).await, 204);
    assert_eq!(counter.take_target(GET), 0);
    let forged = status_with(&webhook, "never-a-key-of-azqr", t0 + Duration::seconds(64)).await;
    assert_eq!(forged, 401, "neither version");

    // Near the end of the window (the cache expired meanwhile: read again), then past it.
    let almost = rotated_at + Duration::minutes(58);
    assert_eq!(status_with(&webhook, old, almost).await, 204, "58 minutes after the rotation");
    assert_eq!(counter.take_target(GET), 2, "the cache expired: read again, previous still in grace");
    let past = rotated_at + Duration::minutes(61);
    assert_eq!(status_with(&webhook, old, past).await, 401, "61 minutes after the rotation: refused");
    assert_eq!(counter.take_target(GET), 1, "an early read, past the window: AWSCURRENT alone");
    assert_eq!(status_with(&webhook, new, past).await, 204);
    assert_eq!(counter.take_target(GET), 0);
}

/// One `GetSecretValue` per 5-minute cache period however many requests arrive, and at
/// most one early read a minute however many fail verification (with no grace window,
/// each read is a single call).
#[tokio::test]
async fn get_secret_value_is_called_once_per_cache_period() {
    let h = Harness::new().await;
    let counter = Counter::default();
    let secrets = counted(&h, &counter);
    let key = "azqr-key-counted-on-the-wire";
    let arn = azqr_secret(&h.secrets, key).await;
    let t0 = OffsetDateTime::now_utc();
    let webhook = azqr(&h, &secrets, lambda_env(&arn, "0"), t0).await;
    assert_eq!(counter.take_target(GET), 1, "init");

    let mut table = Vec::new();
    for second in (0..300).step_by(15) {
        assert_eq!(status_with(&webhook, key, t0 + Duration::seconds(second)).await, 204);
    }
    table.push(("20 webhooks within the first 5 minutes", counter.take_target(GET)));
    assert_eq!(status_with(&webhook, key, t0 + Duration::seconds(300)).await, 204);
    table.push(("the first webhook after 5 minutes", counter.take_target(GET)));
    for second in (301..360).step_by(6) {
        assert_eq!(status_with(&webhook, "forged", t0 + Duration::seconds(second)).await, 401);
    }
    table.push(("10 forged webhooks within a minute of that read", counter.take_target(GET)));
    assert_eq!(status_with(&webhook, "forged", t0 + Duration::seconds(360)).await, 401);
    table.push(("a forged webhook a minute after the last read", counter.take_target(GET)));
    for (name, count) in &table {
        println!("GetSecretValue: {name:52} {count}");
    }
    assert_eq!(
        table,
        [
            ("20 webhooks within the first 5 minutes", 0),
            ("the first webhook after 5 minutes", 1),
            ("10 forged webhooks within a minute of that read", 0),
            ("a forged webhook a minute after the last read", 1),
        ]
    );
}

/// The notify secret is outbound: no grace window, read again when its cache expires, so
/// a merchant's new secret signs deliveries within 5 minutes, without a restart.
#[tokio::test]
async fn the_notifier_signs_with_a_rotated_secret_after_the_cache_period() {
    let h = Harness::new().await;
    let (old, new) = ("whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw", "whsec_c2Vjb25kLXNlY3JldC1mb3Itcm90YXRpb24=");
    let arn = create(&h.secrets, "NotifySecret", serde_json::json!({ "NOTIFY_SECRET": old })).await;
    let mut env = local_pipeline::DevEnv::default();
    env.set_default("NOTIFY_SECRET_ARN", &arn);
    let t0 = OffsetDateTime::now_utc();
    let signers = notifier::signers_from_env(Arc::new(env), &h.secrets, t0).await.expect("init");
    let config = notifier::NotifierConfig {
        notify_url: "https://merchant.example/webhooks".into(),
        table_name: h.resources.table_name.clone(),
        queue_url: h.resources.queue_url.clone(),
        dead_letter_queue_url: h.resources.dead_letter_queue_url.clone(),
        event_retention: std::time::Duration::from_secs(86_400),
        failing_alert: std::time::Duration::from_secs(1800),
    };
    let notifier = notifier::Notifier::new(config, signers, h.store.clone(), h.sqs.clone(), notifier::DELIVERY_TIMEOUT)
        .expect("notifier");
    // What a merchant holding `secret` expects for the event signed at `at`.
    let verifies_with = |secret: &str, at: OffsetDateTime, signature: &str| {
        let merchant = standardwebhooks::Webhook::new(secret).expect("secret");
        merchant.sign("evt_rotation", at.unix_timestamp(), b"{}").expect("sign") == signature
    };
    let sign = |at: OffsetDateTime| {
        let notifier = &notifier;
        async move { notifier.sign("evt_rotation", at.unix_timestamp(), "{}").await.expect("signature") }
    };
    put(&h.secrets, &arn, serde_json::json!({ "NOTIFY_SECRET": new })).await;
    let before = sign(t0 + Duration::seconds(240)).await;
    assert!(verifies_with(old, t0 + Duration::seconds(240), &before), "the cached secret, 4 minutes in");
    // (A signature's timestamp is in whole seconds: one second more than the 5 minutes.)
    let after = sign(t0 + Duration::seconds(301)).await;
    assert!(verifies_with(new, t0 + Duration::seconds(301), &after), "read again after 5 minutes: the new secret");
    assert!(!verifies_with(old, t0 + Duration::seconds(301), &after), "the old one no longer signs");
}

/// Secrets Manager unreachable at init: the function does not start, and the error names
/// the secret's variable and ARN. Nor does it start on an empty value, or with a secret
/// given both as a value and as an ARN.
#[tokio::test]
async fn a_function_that_cannot_read_its_secret_does_not_start() {
    let h = Harness::new().await;
    let arn = azqr_secret(&h.secrets, "azqr-key-for-an-outage").await;
    let down = local_pipeline::secrets_client(&closed_port_endpoint());
    let started = std::time::Instant::now();
    let error = Webhook::<Azqr>::provider_from_env(lambda_env(&arn, "60"), &down, OffsetDateTime::now_utc())
        .await
        .expect_err("Secrets Manager is down");
    assert!(
        started.elapsed() < std::time::Duration::from_secs(9),
        "within Lambda's 10 s init: {:?}",
        started.elapsed()
    );
    assert!(matches!(&error, ConfigError::SecretUnreadable { name: "AZQR_SECRET_ARN", .. }), "{error:?}");
    let message = error.to_string();
    assert!(message.contains("AZQR_SECRET_ARN") && message.contains(&arn), "{message}");

    let empty = azqr_secret(&h.secrets, "").await;
    let error = Webhook::<Azqr>::provider_from_env(lambda_env(&empty, "60"), &h.secrets, OffsetDateTime::now_utc())
        .await
        .expect_err("an empty key");
    assert_eq!(error, ConfigError::SecretKeyMissing { arn: "AZQR_SECRET_ARN", key: "AZQR_API_KEY" });
    assert!(error.to_string().contains("put-secret-value"), "{error}");

    let mut both = local_pipeline::DevEnv::default();
    both.set_default("AZQR_SECRET_ARN", &arn);
    both.set_default("AZQR_API_KEY", "a-plain-development-value");
    let error = Webhook::<Azqr>::provider_from_env(Arc::new(both), &h.secrets, OffsetDateTime::now_utc())
        .await
        .expect_err("both");
    assert_eq!(error, ConfigError::SecretTwice { value: "AZQR_API_KEY", arn: "AZQR_SECRET_ARN" });
    assert!(error.to_string().contains("AZQR_API_KEY and AZQR_SECRET_ARN"), "{error}");

    let error = Webhook::<Azqr>::provider_from_env(
        Arc::new(local_pipeline::DevEnv::default()),
        &h.secrets,
        OffsetDateTime::now_utc(),
    )
    .await
    .expect_err("neither");
    assert_eq!(error, ConfigError::SecretMissing { arn: "AZQR_SECRET_ARN", key: "AZQR_API_KEY" });
}

/// On Lambda a function refuses to start with a development secret, naming the secret
/// and its key and never the value: a value of local.env.example, a key of dev-keys/ (as
/// pasted, with other line breaks), or one that says it is none. A rotation to one is
/// refused as a failed read is: the values read before stay. Under the emulator
/// (`ALLOW_DEVELOPMENT_SECRETS=true`) and off Lambda they are taken.
#[tokio::test]
async fn on_lambda_a_development_secret_is_refused_by_name() {
    let h = Harness::new().await;
    let on_lambda = |arn: &str, allow: bool| {
        let mut env = local_pipeline::DevEnv::default();
        env.set_default("AZQR_SECRET_ARN", arn);
        env.set_default("AWS_LAMBDA_FUNCTION_NAME", "AzqrWebhookFunction");
        if allow {
            env.set_default("ALLOW_DEVELOPMENT_SECRETS", "true");
        }
        Arc::new(env) as Arc<dyn Env + Send + Sync>
    };
    let now = OffsetDateTime::now_utc();
    let dev_key = crate::support::dev_env().required("AZQR_API_KEY").expect("dev key");
    let pem = std::fs::read_to_string(crate::support::root().join("dev-keys/qitech-dev-public.pem")).expect("pem");
    let repasted = pem.replace('\n', "\r\n  ");
    for value in [dev_key.as_str(), "prod-key-not-a-secret", repasted.as_str()] {
        let arn = azqr_secret(&h.secrets, value).await;
        let error = Webhook::<Azqr>::provider_from_env(on_lambda(&arn, false), &h.secrets, now)
            .await
            .expect_err("a development value on Lambda");
        assert_eq!(error, ConfigError::DevelopmentSecret { arn: "AZQR_SECRET_ARN", key: "AZQR_API_KEY" });
        let message = error.to_string();
        assert!(message.contains("AZQR_SECRET_ARN") && message.contains("AZQR_API_KEY"), "{message}");
        assert!(!message.contains(value.trim()), "the value is never told: {message}");
        assert!(Webhook::<Azqr>::provider_from_env(on_lambda(&arn, true), &h.secrets, now).await.is_ok(), "emulator");
        assert!(
            Webhook::<Azqr>::provider_from_env(lambda_env(&arn, "60"), &h.secrets, now).await.is_ok(),
            "off Lambda"
        );
    }

    // A real key, then a rotation to a development one: refused, the real key kept.
    let arn = azqr_secret(&h.secrets, "azqr-production-key-7f3a9c").await;
    let webhook = azqr(&h, &h.secrets, on_lambda(&arn, false), now).await;
    rotate(&h.secrets, &arn, &dev_key).await;
    let later = now + Duration::minutes(6);
    assert_eq!(status_with(&webhook, &dev_key, later).await, 401, "the development key never verifies");
    assert_eq!(status_with(&webhook, "azqr-production-key-7f3a9c", later).await, 204, "the values read before stay");
}

/// `"revoke_previous": true` in a secret's JSON ends the previous version's grace window at
/// once: a leaked key stops verifying with the first read of the new version.
#[tokio::test]
async fn revoke_previous_ends_the_grace_window_at_once() {
    let h = Harness::new().await;
    let (leaked, new) = ("azqr-key-that-leaked", "azqr-key-after-the-leak");
    let arn = azqr_secret(&h.secrets, leaked).await;
    let t0 = OffsetDateTime::now_utc();
    let webhook = azqr(&h, &h.secrets, lambda_env(&arn, "60"), t0).await;
    assert_eq!(status_with(&webhook, leaked, t0).await, 204);
    put(&h.secrets, &arn, serde_json::json!({ "AZQR_API_KEY": new, "revoke_previous": true })).await;
    let after = t0 + Duration::seconds(61);
    assert_eq!(status_with(&webhook, new, after).await, 204, "the new key, read early");
    assert_eq!(
        status_with(&webhook, leaked, after + Duration::seconds(1)).await,
        401,
        "revoked, well within 60 minutes"
    );
    // Without it, the same rotation keeps the previous version for the window.
    let arn = azqr_secret(&h.secrets, leaked).await;
    let webhook = azqr(&h, &h.secrets, lambda_env(&arn, "60"), t0).await;
    put(&h.secrets, &arn, serde_json::json!({ "AZQR_API_KEY": new })).await;
    assert_eq!(status_with(&webhook, new, after).await, 204);
    assert_eq!(status_with(&webhook, leaked, after + Duration::seconds(1)).await, 204, "in grace");
}
