//! Alarm metrics, in CloudWatch's embedded metric format: one JSON line on stdout, which
//! Lambda's log delivery turns into a metric (no API call, no extra permission). The
//! template's alarms watch these. Outside Lambda the structured log line says the same.

use std::sync::OnceLock;

/// The namespace of every metric, as in template.yaml's alarms.
pub(crate) const NAMESPACE: &str = "PaymentWebhooks";
/// A final status contradicting the stored final status.
pub(crate) const CONFLICTS: &str = "TransactionConflicts";
/// A final status applied with an amount that differs from the one expected, or that
/// could not be read (`amount_mismatch`).
pub(crate) const AMOUNT_MISMATCHES: &str = "AmountMismatches";

fn on_lambda() -> bool {
    static ON_LAMBDA: OnceLock<bool> = OnceLock::new();
    *ON_LAMBDA.get_or_init(|| std::env::var_os("AWS_LAMBDA_FUNCTION_NAME").is_some())
}

fn now_millis() -> i64 {
    time::OffsetDateTime::now_utc().unix_timestamp() * 1000
}

/// Counts one `metric` for `provider`.
pub fn count(metric: &str, provider: &str) {
    if on_lambda() {
        println!("{}", line(metric, provider, now_millis()));
    }
}

/// Records `seconds` of `metric` for `provider`, as the metric on its own (what an alarm
/// watches, whichever provider) and per provider (dimension `provider`).
pub fn seconds(metric: &str, provider: &str, seconds: u64) {
    if on_lambda() {
        println!("{}", seconds_line(metric, provider, seconds, now_millis()));
    }
}

/// The embedded-metric-format line for one count of `metric`.
pub(crate) fn line(metric: &str, provider: &str, timestamp_millis: i64) -> String {
    emf(metric, provider, serde_json::json!(1), "Count", serde_json::json!([[]]), timestamp_millis)
}

/// The embedded-metric-format line for `seconds` of `metric`.
pub(crate) fn seconds_line(metric: &str, provider: &str, seconds: u64, timestamp_millis: i64) -> String {
    let dimensions = serde_json::json!([[], ["provider"]]);
    emf(metric, provider, serde_json::json!(seconds), "Seconds", dimensions, timestamp_millis)
}

fn emf(
    metric: &str,
    provider: &str,
    value: serde_json::Value,
    unit: &str,
    dimensions: serde_json::Value,
    timestamp_millis: i64,
) -> String {
    serde_json::json!({
        "_aws": {
            "Timestamp": timestamp_millis,
            "CloudWatchMetrics": [{
                "Namespace": NAMESPACE,
                "Dimensions": dimensions,
                "Metrics": [{ "Name": metric, "Unit": unit }],
            }],
        },
        "provider": provider,
        metric: value,
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
        let lag: serde_json::Value =
            serde_json::from_str(&super::seconds_line("StatusSyncLagSeconds", "pagstar", 420, 1)).expect("JSON");
        assert_eq!((lag["StatusSyncLagSeconds"].as_u64(), lag["provider"].as_str()), (Some(420), Some("pagstar")));
        let directive = &lag["_aws"]["CloudWatchMetrics"][0];
        assert_eq!(directive["Metrics"][0]["Unit"], "Seconds");
        assert_eq!(directive["Dimensions"], serde_json::json!([[], ["provider"]]));
    }
}
