//! A provider's status API, as the status sync asks it. Each provider crate with one
//! implements [`StatusSource`] next to its webhook; the sync applies the answer through
//! the same [`crate::Recorder`] as a webhook.

use std::future::Future;
use std::pin::Pin;
use std::time::Duration;

use time::OffsetDateTime;

use crate::model::{Observation, TransactionRecord};

/// Per-request limit for a call to a provider's status API.
pub const REQUEST_TIMEOUT: Duration = Duration::from_secs(4);
pub const CONNECT_TIMEOUT: Duration = Duration::from_secs(2);

/// The provider could not be asked (unreachable, too slow, failing, or an answer we
/// cannot read): nothing is written, and it is asked again in a later run.
#[derive(Debug, thiserror::Error)]
#[error("provider status API unavailable: {0}")]
pub struct SyncError(#[source] pub Box<dyn std::error::Error + Send + Sync>);

impl SyncError {
    pub fn new(error: impl Into<Box<dyn std::error::Error + Send + Sync>>) -> Self {
        SyncError(error.into())
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
