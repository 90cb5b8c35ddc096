//! Pagstar for the status sync: `GET /cob/{txid}` with the client the webhook uses, and
//! the same reading of its answer (BACEN's expiry rule included).

use shared::model::{Observation, TransactionRecord};
use shared::pipeline::{StatusFuture, SyncError};
use shared::runtime::config::{ConfigError, Env};
use time::OffsetDateTime;

use crate::{Pagstar, PagstarApi, PagstarCharge, PagstarConfig, PagstarError};

#[derive(Debug)]
pub struct PagstarStatusApi {
    api: PagstarApi,
    /// As the webhook's ([`crate::EXPIRY_MARGIN`]).
    expiry_margin: time::Duration,
}

impl PagstarStatusApi {
    pub fn new(api: PagstarApi, expiry_margin: time::Duration) -> Self {
        PagstarStatusApi { api, expiry_margin }
    }

    /// Pagstar's configuration (`PAGSTAR_API_URL` unset: no sync for Pagstar).
    pub fn from_env(env: &impl Env) -> Result<Option<Self>, ConfigError> {
        if env.optional(crate::PAGSTAR_API_URL.name).is_none() {
            return Ok(None);
        }
        let api = PagstarApi::new(PagstarConfig::from_env(env)?)?;
        Ok(Some(PagstarStatusApi::new(api, crate::expiry_margin(env)?)))
    }

    async fn ask(&self, txid: &str, now: OffsetDateTime) -> Result<Option<Observation>, SyncError> {
        let cob = self.api.cob(txid).await.map_err(scoped)?;
        // An answer read but not usable (BACEN's rules broken) belongs to this charge.
        let charge = PagstarCharge { txid: txid.to_owned(), cob, checked_at: now };
        Pagstar::observe(charge, self.expiry_margin).map_err(SyncError::transaction)
    }
}

/// Whom a failed call concerns: the token endpoint and the transport are Pagstar's as a
/// whole; a charge query's client error or unreadable answer is that charge's.
fn scoped(error: PagstarError) -> SyncError {
    match error {
        PagstarError::Status { operation: "cob", status } => SyncError::status("Pagstar", status),
        PagstarError::Decode { operation: "cob", .. } => SyncError::transaction(error),
        PagstarError::Request(_)
        | PagstarError::Status { .. }
        | PagstarError::Decode { .. }
        | PagstarError::RateLimited => SyncError::new(error),
    }
}

impl shared::pipeline::StatusSource for PagstarStatusApi {
    fn status<'a>(&'a self, record: &'a TransactionRecord, now: OffsetDateTime) -> StatusFuture<'a> {
        Box::pin(self.ask(&record.reference, now))
    }
}
