//! The fixtures in events/: API Gateway HTTP API (payload 2.0) events, signed with the dev
//! secrets at a fixed time. Sending or invoking one later needs QI Tech's signature moved
//! to now; everything else in a fixture is sent as it is.

use std::path::Path;

use qitech_webhook::signing::QiTechSigner;
// QI Tech's TEST-ONLY signing key, as its simulator names it.
use qitech_webhook::simulator::DEV_KEY as QITECH_DEV_KEY;
use serde_json::Value;
use shared::runtime::config::Env;
use time::OffsetDateTime;

#[derive(Debug, thiserror::Error)]
pub enum FixtureError {
    #[error("fixture has no {0}")]
    Missing(&'static str),
    #[error("cannot read {QITECH_DEV_KEY}: {0}")]
    DevKey(#[source] std::io::Error),
    #[error("QI Tech dev key: {0}")]
    Key(String),
    #[error(transparent)]
    Config(#[from] shared::runtime::config::ConfigError),
    #[error("fixture time out of range: {0}")]
    Time(#[from] time::error::ComponentRange),
}

/// The time a fixture was made: its `requestContext.timeEpoch` (milliseconds).
pub fn made_at(event: &Value) -> Result<OffsetDateTime, FixtureError> {
    let epoch_ms = event["requestContext"]["timeEpoch"].as_i64().ok_or(FixtureError::Missing("timeEpoch"))?;
    Ok(OffsetDateTime::from_unix_timestamp(epoch_ms / 1000)?)
}

/// Signs QI Tech's `authorization` header of `event` again with its timestamp moved
/// forward by the time between the fixture's making and `now`, every other claim kept: a
/// fresh fixture passes the 5-minute window, a stale one stays stale, and one that is bad
/// on purpose (not signed by the dev key) is left as it is. Other fixtures are untouched.
/// `root` is the workspace root, where the dev key is.
pub fn resign_for(event: &mut Value, root: &Path, env: &impl Env, now: OffsetDateTime) -> Result<(), FixtureError> {
    if event["rawPath"].as_str() != Some(qitech_webhook::PATH) {
        return Ok(());
    }
    let Some(jwt) = event["headers"]["authorization"].as_str() else {
        return Ok(());
    };
    let shift = now - made_at(event)?;
    let pem = std::fs::read_to_string(root.join(QITECH_DEV_KEY)).map_err(FixtureError::DevKey)?;
    let signer = QiTechSigner::from_pkcs8_pem(&pem).map_err(FixtureError::Key)?;
    let public_key =
        qitech_webhook::parse_public_key(&env.required("QITECH_PUBLIC_KEY")?).map_err(FixtureError::Key)?;
    if let Some(fresh) = signer.refresh(jwt, &public_key, shift) {
        event["headers"]["authorization"] = Value::String(fresh);
    }
    Ok(())
}
