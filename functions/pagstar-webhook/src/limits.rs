//! What an unsigned hint can make us do to Pagstar, bounded per function instance (the
//! hint consumer's `MaximumConcurrency` bounds the instances): calls at a steady rate
//! ([`CallRate`]), and one lookup of a txid per interval however many hints name it
//! ([`RecentLookups`]; a hint within the interval is received again later).

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::Duration;

use time::OffsetDateTime;
use tokio::time::Instant;

/// The longest a call waits for its turn; past it the hint is received again later.
pub const MAX_WAIT: Duration = Duration::from_secs(5);

/// A token bucket: `per_second` calls a second, up to a second's worth at once.
#[derive(Debug)]
pub struct CallRate {
    per_second: f64,
    bucket: Mutex<(f64, Instant)>,
}

impl CallRate {
    pub fn new(per_second: u32) -> Self {
        let per_second = f64::from(per_second.max(1));
        CallRate { per_second, bucket: Mutex::new((per_second, Instant::now())) }
    }

    /// Takes a call's turn, waiting for it up to [`MAX_WAIT`]; `false` when it would
    /// wait longer (nothing taken).
    pub async fn take(&self) -> bool {
        let waited_from = Instant::now();
        loop {
            let wait = {
                let Ok(mut bucket) = self.bucket.lock() else { return false };
                let (tokens, at) = *bucket;
                let now = Instant::now();
                let tokens = (tokens + now.duration_since(at).as_secs_f64() * self.per_second).min(self.per_second);
                if tokens >= 1.0 {
                    *bucket = (tokens - 1.0, now);
                    return true;
                }
                *bucket = (tokens, now);
                Duration::from_secs_f64((1.0 - tokens) / self.per_second)
            };
            if waited_from.elapsed() + wait > MAX_WAIT {
                return false;
            }
            tokio::time::sleep(wait).await;
        }
    }
}

/// The txids looked up lately, each for `interval` after its lookup (the clock is the
/// caller's: the time the hint is taken at).
#[derive(Debug)]
pub struct RecentLookups {
    interval: time::Duration,
    looked: Mutex<HashMap<String, OffsetDateTime>>,
}

impl RecentLookups {
    pub fn new(interval: Duration) -> Self {
        let interval = time::Duration::try_from(interval).unwrap_or(time::Duration::MAX);
        RecentLookups { interval, looked: Mutex::new(HashMap::new()) }
    }

    /// Claims `txid`'s lookup at `now`: `false` when it was claimed within the interval
    /// before (another hint's lookup answered, or is answering, for it).
    pub fn claim(&self, txid: &str, now: OffsetDateTime) -> bool {
        let Ok(mut looked) = self.looked.lock() else { return true };
        let recent = |at: &OffsetDateTime| now - *at < self.interval && now >= *at;
        if looked.get(txid).is_some_and(recent) {
            return false;
        }
        // Lookups are rate-bounded, so this holds at most rate × interval entries.
        looked.retain(|_, at| recent(at));
        looked.insert(txid.to_owned(), now);
        true
    }

    /// Gives back a claim whose lookup did not happen (its call found no turn, or failed).
    pub fn release(&self, txid: &str) {
        if let Ok(mut looked) = self.looked.lock() {
            looked.remove(txid);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test(start_paused = true)]
    async fn a_burst_beyond_the_rate_waits_and_then_gives_up() {
        let rate = CallRate::new(2);
        // Two at once (a second's worth), then the third waits about half a second.
        assert!(rate.take().await && rate.take().await);
        assert!(rate.take().await, "within MAX_WAIT");
        // Eleven more need about 5.5 s of turns: some are refused rather than waiting.
        let started = Instant::now();
        let taken = futures_util::future::join_all((0..11).map(|_| rate.take())).await;
        let refused = taken.iter().filter(|t| !**t).count();
        assert!(refused >= 1, "{taken:?}");
        // What was taken kept to the rate: at most 2 a second, plus the bucket's second.
        let granted = taken.len() - refused;
        assert!(granted as f64 <= 2.0 * started.elapsed().as_secs_f64() + 1.0, "{granted} in {:?}", started.elapsed());
    }

    #[test]
    fn one_lookup_per_txid_per_interval() {
        let t0 = OffsetDateTime::UNIX_EPOCH;
        let recent = RecentLookups::new(Duration::from_secs(5));
        assert!(recent.claim("a", t0));
        assert!(!recent.claim("a", t0 + time::Duration::seconds(4)), "claimed within the interval");
        assert!(recent.claim("b", t0));
        assert!(recent.claim("a", t0 + time::Duration::seconds(5)), "the interval has passed");
        recent.release("a");
        assert!(recent.claim("a", t0 + time::Duration::seconds(6)), "given back");
        let none = RecentLookups::new(Duration::ZERO);
        assert!(none.claim("a", t0) && none.claim("a", t0));
    }
}
