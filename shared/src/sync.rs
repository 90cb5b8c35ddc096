//! A provider's status API, as the status sync asks it. Each provider crate with one
//! implements [`StatusSource`] next to its webhook; the sync applies the answer through
//! the same `WritePath` as a webhook.

use std::future::Future;
use std::pin::Pin;
use std::time::Duration;

use time::OffsetDateTime;

use crate::model::{Observation, TransactionRecord};

/// Per-request limit for a call to a provider's status API.
pub const REQUEST_TIMEOUT: Duration = Duration::from_secs(4);
pub const CONNECT_TIMEOUT: Duration = Duration::from_secs(2);
/// Idle connections a provider's client keeps (`pool_max_idle_per_host`): with the status
/// sync's calls at once, within an instance's 1,024 file descriptors.
pub const IDLE_CONNECTIONS: usize = 32;

/// `value` as one URL path segment: every byte but a letter, a digit, `-` and `_`
/// percent-encoded, so that a reference cannot end the segment or start a query. (Dot
/// segments are kept out by each provider's reference format, which allows no `.` where a
/// reference goes into a path.)
pub fn path_segment(value: &str) -> String {
    const KEPT: &percent_encoding::AsciiSet = &percent_encoding::NON_ALPHANUMERIC.remove(b'-').remove(b'_');
    percent_encoding::utf8_percent_encode(value, KEPT).to_string()
}

/// Whom a failed status query concerns.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SyncScope {
    /// The provider as a whole (unreachable, too slow, 5xx, 429, our credentials refused):
    /// its run ends, nothing is written, and its transactions are asked again later.
    Provider,
    /// This one transaction (a 4xx for its reference, an answer that cannot be read): it is
    /// rescheduled along the backoff like an answer with nothing new, and the run goes on.
    Transaction,
}

/// A status query that failed, and whom the failure concerns.
#[derive(Debug, thiserror::Error)]
#[error("provider status query failed: {source}")]
pub struct SyncError {
    pub scope: SyncScope,
    #[source]
    source: Box<dyn std::error::Error + Send + Sync>,
}

impl SyncError {
    /// A failure of the provider as a whole.
    pub fn new(error: impl Into<Box<dyn std::error::Error + Send + Sync>>) -> Self {
        SyncError { scope: SyncScope::Provider, source: error.into() }
    }

    /// A failure that belongs to the transaction asked about.
    pub fn transaction(error: impl Into<Box<dyn std::error::Error + Send + Sync>>) -> Self {
        SyncError { scope: SyncScope::Transaction, source: error.into() }
    }

    /// An HTTP status other than the ones a source reads: a server error, a timeout, a
    /// rate limit or a refusal of our credentials concern the provider; any other client
    /// error concerns the transaction (the provider rejects this reference).
    pub fn status(provider: &str, status: u16) -> Self {
        let error = format!("{provider} answered {status}");
        match status {
            401 | 403 | 408 | 429 => SyncError::new(error),
            400..=499 => SyncError::transaction(error),
            _ => SyncError::new(error),
        }
    }
}

pub type StatusFuture<'a> = Pin<Box<dyn Future<Output = Result<Option<Observation>, SyncError>> + Send + 'a>>;

/// A provider's status API.
pub trait StatusSource: Send + Sync + std::fmt::Debug {
    /// What the provider says about `record` at `now`: an observation of its reference,
    /// or `None` when it has nothing to say (it does not know the transaction, or answers
    /// a status that never moves a transaction). Never a final status without the
    /// provider's word, except an expiry its own rules define.
    fn status<'a>(&'a self, record: &'a TransactionRecord, now: OffsetDateTime) -> StatusFuture<'a>;
}

#[cfg(test)]
mod tests {
    #[test]
    fn a_path_segment_cannot_leave_its_segment() {
        assert_eq!(super::path_segment("100000000001"), "100000000001");
        assert_eq!(super::path_segment("a/../b?x=1#f"), "a%2F%2E%2E%2Fb%3Fx%3D1%23f");
        assert_eq!(super::path_segment("ü %"), "%C3%BC%20%25");
    }
}
