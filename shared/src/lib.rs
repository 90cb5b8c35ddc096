//! What every webhook function shares: the canonical transaction model, the DynamoDB
//! store, the SQS terminal events, the error type and the common pipeline.

pub mod aws;
pub mod config;
pub mod error;
pub mod inbound;
pub mod lambda;
pub mod model;
pub mod pipeline;
pub mod queue;
pub mod simulator;
pub mod store;

pub use aws::AwsClients;
pub use config::{ConfigError, Env, ProcessEnv, Secret};
pub use error::WebhookError;
pub use inbound::{check_shared_secret, Inbound};
pub use model::{Amount, Decision, Observation, Status, TerminalEvent, TransactionRecord};
pub use pipeline::{parse_json, parse_status, Expected, Outcome, Provider, Webhook};
pub use queue::EventQueue;
pub use simulator::Simulator;
pub use store::{NotificationOutcome, TransactionStore, WriteOutcome};
