//! Delivery health: whether the merchant's endpoint has failed every attempt for
//! `NOTIFY_FAILING_ALERT_MINUTES`. One item (`health#merchant`) in the transactions table
//! holds when the current run of failures began (`failing_since`) and when a delivery last
//! succeeded (`last_success`). A failed attempt updates it and reads it back in the same
//! write, at most once every 10 s per instance (between writes the instance goes by what it
//! read last), so a failing endpoint costs at most `NotifierMaxConcurrency` writes every
//! 10 s on this one item, far under a partition's 1,000 a second. A success is written at
//! most once a minute per instance, so a healthy endpoint costs almost nothing. While failing for long enough, each failed attempt counts the
//! `MerchantEndpointFailing` metric, which `MerchantEndpointFailingAlarm` watches.

use std::time::Duration;

use aws_sdk_dynamodb::types::AttributeValue;
use shared::storage::{ItemEdit, ItemWrite, StoreError};
use time::format_description::well_known::Rfc3339;
use time::OffsetDateTime;
use tokio::sync::Mutex;

/// The health item's key.
pub const HEALTH_KEY: &str = "health#merchant";
/// The metric counted while the endpoint has been failing for long enough.
pub const FAILING_METRIC: &str = "MerchantEndpointFailing";
/// How often one instance writes a success at most.
pub const SUCCESS_WRITE_INTERVAL: Duration = Duration::from_secs(60);
/// How often one instance writes a failure at most.
pub const FAILURE_WRITE_INTERVAL: Duration = Duration::from_secs(10);

#[derive(Debug)]
pub struct Health {
    client: aws_sdk_dynamodb::Client,
    table: String,
    alert_after: Duration,
    last_success_written: Mutex<Option<OffsetDateTime>>,
    /// When this instance last wrote a failure, and the `failing_since` it read back.
    last_failure_written: Mutex<Option<(OffsetDateTime, Option<OffsetDateTime>)>>,
}

impl Health {
    pub fn new(client: aws_sdk_dynamodb::Client, table: impl Into<String>, alert_after: Duration) -> Self {
        Health {
            client,
            table: table.into(),
            alert_after,
            last_success_written: Mutex::new(None),
            last_failure_written: Mutex::new(None),
        }
    }

    /// A delivery succeeded at `now`: the failing run, if any, is over.
    pub async fn success(&self, now: OffsetDateTime) -> Result<(), StoreError> {
        *self.last_failure_written.lock().await = None;
        let mut written = self.last_success_written.lock().await;
        if written.is_some_and(|at| now - at < SUCCESS_WRITE_INTERVAL) {
            return Ok(());
        }
        success_write(now)?.send(&self.client, &self.table).await?;
        *written = Some(now);
        Ok(())
    }

    /// An attempt failed at `now`. Returns how long every attempt has failed, when that is
    /// at least the alert threshold (the metric is then counted by the caller).
    pub async fn failure(&self, now: OffsetDateTime) -> Result<Option<Duration>, StoreError> {
        *self.last_success_written.lock().await = None;
        let mut written = self.last_failure_written.lock().await;
        let since = match *written {
            Some((at, since)) if now - at < FAILURE_WRITE_INTERVAL && now >= at => since,
            Some(_) | None => {
                let since = self.write_failure(now).await?;
                *written = Some((now, since));
                since
            }
        };
        let Some(since) = since else {
            return Ok(None);
        };
        let failing = (now - since).unsigned_abs();
        Ok((failing >= self.alert_after).then_some(failing))
    }

    /// Writes a failure at `now`; returns when the current run of failures began.
    async fn write_failure(&self, now: OffsetDateTime) -> Result<Option<OffsetDateTime>, StoreError> {
        let item = failure_write(now)?.send_returning(&self.client, &self.table).await?;
        let time = |name: &str| {
            item.get(name).and_then(|v| v.as_s().ok()).and_then(|text| OffsetDateTime::parse(text, &Rfc3339).ok())
        };
        Ok(time("failing_since"))
    }
}

/// What a success at `now` writes: the time, and the end of any failing run.
pub fn success_write(now: OffsetDateTime) -> Result<ItemWrite, StoreError> {
    Ok(ItemWrite {
        key: HEALTH_KEY.to_owned(),
        edits: vec![("last_success".to_owned(), ItemEdit::Set, AttributeValue::S(rfc3339(now)?))],
        removed: vec!["failing_since".to_owned()],
        replace: false,
    })
}

/// What a failure at `now` writes: the start of the failing run, unless one is under way.
pub fn failure_write(now: OffsetDateTime) -> Result<ItemWrite, StoreError> {
    Ok(ItemWrite {
        key: HEALTH_KEY.to_owned(),
        edits: vec![("failing_since".to_owned(), ItemEdit::SetIfAbsent, AttributeValue::S(rfc3339(now)?))],
        removed: Vec::new(),
        replace: false,
    })
}

fn rfc3339(at: OffsetDateTime) -> Result<String, StoreError> {
    at.format(&Rfc3339).map_err(StoreError::Timestamp)
}
