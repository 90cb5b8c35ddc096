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

use aws_sdk_dynamodb::types::{AttributeValue, ReturnValue};
use shared::store::{StoreError, KEY_ATTRIBUTE};
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
        self.client
            .update_item()
            .table_name(&self.table)
            .key(KEY_ATTRIBUTE, AttributeValue::S(HEALTH_KEY.to_owned()))
            .update_expression("SET #last_success = :now REMOVE #failing_since")
            .expression_attribute_names("#last_success", "last_success")
            .expression_attribute_names("#failing_since", "failing_since")
            .expression_attribute_values(":now", AttributeValue::S(rfc3339(now)?))
            .send()
            .await
            .map_err(|e| StoreError::Request(Box::new(e)))?;
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
        let output = self
            .client
            .update_item()
            .table_name(&self.table)
            .key(KEY_ATTRIBUTE, AttributeValue::S(HEALTH_KEY.to_owned()))
            .update_expression("SET #failing_since = if_not_exists(#failing_since, :now)")
            .expression_attribute_names("#failing_since", "failing_since")
            .expression_attribute_values(":now", AttributeValue::S(rfc3339(now)?))
            .return_values(ReturnValue::AllNew)
            .send()
            .await
            .map_err(|e| StoreError::Request(Box::new(e)))?;
        let item = output.attributes.unwrap_or_default();
        let time = |name: &str| {
            item.get(name).and_then(|v| v.as_s().ok()).and_then(|text| OffsetDateTime::parse(text, &Rfc3339).ok())
        };
        Ok(time("failing_since"))
    }
}

fn rfc3339(at: OffsetDateTime) -> Result<String, StoreError> {
    at.format(&Rfc3339).map_err(StoreError::Timestamp)
}
