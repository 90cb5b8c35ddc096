//! The one error type of the webhook pipeline. Its mapping to HTTP (status, stable code,
//! public message) is at the edge, in `edge.rs`.

use crate::model::InvalidAmount;
use crate::queue::QueueError;
use crate::store::StoreError;

/// Largest accepted request body.
pub(crate) const MAX_BODY_BYTES: usize = 256 * 1024;

#[derive(Debug, thiserror::Error)]
pub enum WebhookError {
    /// The parser's own message can quote the body, so only the position is shown.
    #[error("request body is not valid JSON of the expected shape (line {}, column {})", .0.line(), .0.column())]
    MalformedJson(#[source] serde_json::Error),

    #[error("invalid {field}: {reason}")]
    InvalidField { field: &'static str, reason: String },

    /// Verification failed. `reason` is for our logs only; the response says nothing
    /// about which check failed.
    #[error("request could not be verified ({reason})")]
    Unauthorized { reason: &'static str },

    #[error("request body is larger than {MAX_BODY_BYTES} bytes")]
    PayloadTooLarge,

    #[error("content type must be application/json")]
    UnsupportedMediaType,

    #[error("unsupported {field} {value:?}")]
    Unsupported { field: &'static str, value: String },

    /// A provider API we must ask before acting (e.g. Pagstar's `GET /cob`) is unreachable,
    /// too slow or failing: 503, so the provider delivers again.
    #[error("provider API unavailable")]
    Upstream(#[source] Box<dyn std::error::Error + Send + Sync>),

    /// Nothing failed: the request is to be received again later, by design (a Pagstar
    /// hint naming a txid looked up within its interval or one Pagstar does not know yet,
    /// or a call past the instance's rate). 503, so it is delivered again; logged at info.
    #[error("to be received again later: {reason}")]
    RetryLater { reason: &'static str },

    #[error("transaction store failed")]
    Store(#[from] StoreError),

    #[error("event queue failed")]
    Queue(#[from] QueueError),
}

impl From<InvalidAmount> for WebhookError {
    fn from(error: InvalidAmount) -> Self {
        WebhookError::InvalidField { field: "amount", reason: error.to_string() }
    }
}
