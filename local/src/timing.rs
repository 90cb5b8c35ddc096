//! The local pipeline's timings. On AWS the deployment fixes them (the SQS trigger's
//! concurrency, the notifier's delivery timeout and backoff, the reconciler's schedule,
//! the queue's visibility timeout); locally each is a variable, so that a run can compress
//! time (`scripts/chaos` does). Every one has the run command's default.

use std::time::Duration;

use shared::runtime::config::{ConfigError, Env, Setting};

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LocalTiming {
    /// Notifier loops receiving from the queue at once (`LOCAL_NOTIFIER_POLLERS`, default 1).
    pub notifier_pollers: u64,
    /// One delivery's limit (`LOCAL_NOTIFY_TIMEOUT_SECONDS`, default 10, the function's).
    pub notify_timeout: Duration,
    /// The retry delays (`LOCAL_NOTIFY_BACKOFF_SECONDS`, a comma list; default the function's).
    pub notify_backoff: Vec<Duration>,
    /// The reconciler's grace, run interval and repeat (`LOCAL_RECONCILER_GRACE_SECONDS`,
    /// `LOCAL_RECONCILER_INTERVAL_SECONDS`, `LOCAL_RECONCILER_REPEAT_SECONDS`; default 60, 30, 600).
    pub reconciler: (Duration, Duration, Duration),
    /// The queue's visibility timeout (`LOCAL_QUEUE_VISIBILITY_SECONDS`; default the template's).
    pub queue_visibility: Option<u32>,
}

pub const NOTIFIER_POLLERS: Setting =
    Setting::positive("LOCAL_NOTIFIER_POLLERS", 1, "notifier loops receiving at once (at most 64 run)");
pub const NOTIFY_TIMEOUT: Setting = Setting::positive(
    "LOCAL_NOTIFY_TIMEOUT_SECONDS",
    notifier::DELIVERY_TIMEOUT.as_secs(),
    "one local delivery's limit",
);
pub const NOTIFY_BACKOFF: Setting = Setting::optional(
    "LOCAL_NOTIFY_BACKOFF_SECONDS",
    Some("5,30,120,600,1800"),
    "the local retry delays, a comma list",
);
pub const RECONCILER_GRACE: Setting =
    Setting::positive("LOCAL_RECONCILER_GRACE_SECONDS", 60, "the local reconciler's grace");
pub const RECONCILER_INTERVAL: Setting =
    Setting::positive("LOCAL_RECONCILER_INTERVAL_SECONDS", 30, "how often the local reconciler runs");
pub const RECONCILER_REPEAT: Setting =
    Setting::positive("LOCAL_RECONCILER_REPEAT_SECONDS", 600, "the local reconciler's repeat");
pub const QUEUE_VISIBILITY: Setting = Setting::optional(
    "LOCAL_QUEUE_VISIBILITY_SECONDS",
    None,
    "the local queue's visibility timeout (default the template's)",
);

fn seconds(env: &impl Env, setting: Setting) -> Result<Duration, ConfigError> {
    setting.number_from(env).map(Duration::from_secs)
}

impl LocalTiming {
    pub fn from_env(env: &impl Env) -> Result<Self, ConfigError> {
        let notify_backoff = match env.optional(NOTIFY_BACKOFF.name) {
            None => notifier::BACKOFF.to_vec(),
            Some(list) => list
                .split(',')
                .map(|item| item.trim().parse::<u64>().ok().filter(|s| (1..=3600).contains(s)))
                .map(|item| item.map(Duration::from_secs))
                .collect::<Option<Vec<_>>>()
                .ok_or(ConfigError::Invalid {
                    name: NOTIFY_BACKOFF.name,
                    reason: "must be a comma list of seconds from 1 to 3600".into(),
                })?,
        };
        let queue_visibility = match env.optional(QUEUE_VISIBILITY.name) {
            None => None,
            Some(_) => Some(
                u32::try_from(
                    Setting::positive(QUEUE_VISIBILITY.name, 1, QUEUE_VISIBILITY.description)
                        .number_from(env)?
                        .min(43_200),
                )
                .unwrap_or(43_200),
            ),
        };
        Ok(LocalTiming {
            notifier_pollers: NOTIFIER_POLLERS.number_from(env)?.min(64),
            notify_timeout: seconds(env, NOTIFY_TIMEOUT)?,
            notify_backoff,
            reconciler: (
                seconds(env, RECONCILER_GRACE)?,
                seconds(env, RECONCILER_INTERVAL)?,
                seconds(env, RECONCILER_REPEAT)?,
            ),
            queue_visibility,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults_are_the_run_commands_and_each_variable_is_checked() {
        let none: [(&str, &str); 0] = [];
        let timing = LocalTiming::from_env(&none).expect("defaults");
        assert_eq!(timing.notifier_pollers, 1);
        assert_eq!(timing.notify_timeout, notifier::DELIVERY_TIMEOUT);
        assert_eq!(timing.notify_backoff, notifier::BACKOFF.to_vec());
        assert_eq!(timing.reconciler.0, Duration::from_secs(60));
        assert_eq!(timing.queue_visibility, None);
        let set = [
            ("LOCAL_NOTIFY_BACKOFF_SECONDS", "1, 2,4"),
            ("LOCAL_QUEUE_VISIBILITY_SECONDS", "15"),
            ("LOCAL_NOTIFIER_POLLERS", "4"),
        ];
        let timing = LocalTiming::from_env(&set).expect("set");
        assert_eq!(timing.notify_backoff, [1, 2, 4].map(Duration::from_secs).to_vec());
        assert_eq!((timing.queue_visibility, timing.notifier_pollers), (Some(15), 4));
        for (name, value) in [
            ("LOCAL_NOTIFY_BACKOFF_SECONDS", "1,,2"),
            ("LOCAL_NOTIFY_BACKOFF_SECONDS", "0"),
            ("LOCAL_NOTIFIER_POLLERS", "0"),
        ] {
            let error = LocalTiming::from_env(&[(name, value)]).expect_err(value);
            assert!(error.to_string().contains(name), "{error}");
        }
    }
}
