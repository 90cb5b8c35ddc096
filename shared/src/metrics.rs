//! Alarm metrics, in CloudWatch's embedded metric format: one JSON line on stdout, which
//! Lambda's log delivery turns into a metric (no API call, no extra permission). The
//! template's alarms watch these. Outside Lambda the structured log line says the same.

use std::sync::OnceLock;

/// The namespace of every metric, as in template.yaml's alarms.
pub const NAMESPACE: &str = "PaymentWebhooks";
/// A final status contradicting the stored final status.
pub const CONFLICTS: &str = "TransactionConflicts";
/// A transaction the status sync gave up on, left non-final.
pub const SYNC_GAVE_UP: &str = "StatusSyncGaveUp";

/// Counts one `metric` for `provider`.
pub fn count(metric: &str, provider: &str) {
    static ON_LAMBDA: OnceLock<bool> = OnceLock::new();
    if *ON_LAMBDA.get_or_init(|| std::env::var_os("AWS_LAMBDA_FUNCTION_NAME").is_some()) {
        let millis = time::OffsetDateTime::now_utc().unix_timestamp() * 1000;
        println!("{}", line(metric, provider, millis));
    }
}

/// The embedded-metric-format line for one count of `metric`.
pub fn line(metric: &str, provider: &str, timestamp_millis: i64) -> String {
    serde_json::json!({
        "_aws": {
            "Timestamp": timestamp_millis,
            "CloudWatchMetrics": [{
                "Namespace": NAMESPACE,
                "Dimensions": [[]],
                "Metrics": [{ "Name": metric, "Unit": "Count" }],
            }],
        },
        "provider": provider,
        metric: 1,
    })
    .to_string()
}

#[cfg(test)]
mod tests {
    #[test]
    fn a_count_is_one_embedded_metric_line() {
        let line = super::line(super::CONFLICTS, "azqr", 1_795_000_000_000);
        let value: serde_json::Value = serde_json::from_str(&line).expect("JSON");
        assert!(!line.contains('\n'));
        assert_eq!(value["TransactionConflicts"], 1);
        assert_eq!(value["provider"], "azqr");
        let directive = &value["_aws"]["CloudWatchMetrics"][0];
        assert_eq!(directive["Namespace"], "PaymentWebhooks");
        assert_eq!(directive["Metrics"][0]["Name"], "TransactionConflicts");
        assert_eq!(value["_aws"]["Timestamp"], 1_795_000_000_000_i64);
    }
}
