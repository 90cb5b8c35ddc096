//! What every function shares, as four public layers, each depending only on those above
//! it:
//!
//! - [`model`]: the canonical transaction, its statuses, the transition rule and the events
//!   for the merchant. No HTTP or AWS type.
//! - [`storage`]: the DynamoDB store, the event log and the SQS queues, translating the
//!   model's decisions into single requests.
//! - [`pipeline`]: a webhook's steps (verify, normalise, record, enqueue), the
//!   [`Provider`](pipeline::Provider) contract and the status sources.
//! - [`runtime`]: configuration, secrets, AWS clients, metrics and serving on Lambda.
//!
//! Every public item has one path, through its layer; the modules behind them are private.
#![warn(unreachable_pub)]

mod aws;
mod config;
mod edge;
mod error;
mod event_log;
mod hints;
mod inbound;
mod lambda;
mod metrics;
pub mod model;
mod queue;
mod secrets;
mod store;
mod sync;
mod webhook;

/// The DynamoDB store of transactions, the event log, and the SQS queues of events and
/// hints.
pub mod storage {
    pub use crate::event_log::{
        feed_values, is_position, Attempt, AttemptKind, AttemptWrites, EventLog, EventPage, EventQuery, Idempotent,
        StoredEvent, IDEMPOTENCY_RETENTION, MAX_RESPONSE_BYTES,
    };
    pub use crate::hints::HintQueue;
    pub use crate::queue::{EventQueue, QueueError, Resend, KIND_ATTRIBUTE};
    pub use crate::store::{
        apply_change, build_update, record_of, registered_record, AttentionEntry, AttentionPage, ItemEdit, ItemWrite,
        PendingPages, Registered, StoreError, TransactionStore,
    };
}

/// A webhook's steps, the contract each provider implements, and the providers' status
/// sources.
pub mod pipeline {
    pub use crate::error::WebhookError;
    pub use crate::hints::{HintRelay, QueuedHint, HINT_RECEIVE_COUNT_HEADER};
    pub use crate::inbound::{check_shared_secret, Inbound};
    pub use crate::sync::{
        path_segment, StatusFuture, StatusSource, SyncError, SyncScope, CONNECT_TIMEOUT, IDLE_CONNECTIONS,
        REQUEST_TIMEOUT,
    };
    pub use crate::webhook::{
        check_reference, parse_json, parse_status, reference_format, CallbackTokens, HintCheck, KnownProvider, Outcome,
        Provider, Webhook, WritePath,
    };
}

/// What a function needs to run: its configuration, its secrets, its AWS clients, its
/// metrics, and serving requests on Lambda.
pub mod runtime {
    pub use crate::aws::{long_poll_timeouts, secrets_client, storage_retries, storage_timeouts, AwsClients};
    /// Each function's settings, read once from its environment.
    pub mod config {
        pub use crate::config::*;
    }
    pub use crate::edge::{error_response, refuse_without_iam};
    pub use crate::lambda::{init_tracing, or_exit, serve, serve_hints, Error};
    /// CloudWatch metrics, written as embedded-metric log lines.
    pub mod metrics {
        pub use crate::metrics::*;
    }
    pub use crate::secrets::{BuildFromSecret, FromSecret, SecretEnv, SecretSpec, SecretVersions};
    /// The Secrets Manager client (built once per function, in [`AwsClients`]).
    pub use aws_sdk_secretsmanager::Client as SecretsClient;
}
