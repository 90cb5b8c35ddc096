//! What every webhook function shares, in layers: the canonical transaction model
//! (`model`, no HTTP or AWS type) ← the DynamoDB store and the SQS queue ← the common
//! pipeline ← the HTTP edge (`edge`, `inbound`, `lambda`).

pub mod aws;
pub mod config;
pub mod edge;
pub mod error;
pub mod event_log;
pub mod hints;
pub mod inbound;
pub mod lambda;
pub mod metrics;
pub mod model;
pub mod pipeline;
pub mod queue;
pub mod secrets;
pub mod store;
pub mod sync;

pub use aws::AwsClients;
pub use config::{ConfigError, Env, ProcessEnv, Secret};
pub use error::WebhookError;
pub use event_log::EventLog;
pub use inbound::{check_shared_secret, Inbound};
pub use model::notification::NotificationOutcome;
pub use model::{Amount, Decision, MerchantEvent, Observation, Status, TransactionRecord};
pub use pipeline::{parse_json, parse_status, KnownProvider, Provider, Recorder, Webhook};
pub use queue::EventQueue;
pub use secrets::{Rotating, SecretSpec};
pub use store::{TransactionStore, WriteOutcome};
pub use sync::{StatusSource, SyncError, SyncScope};
