//! Following the events feed (`events list --follow`, `listen`): poll `GET /events` and
//! hand over each event once.
//!
//! An event enters the feed at its first delivery attempt but is placed by its creation
//! time, so an event can appear behind one already seen (queued behind another in its FIFO
//! group, or logged a little late). Each poll therefore reads again a look-back window
//! before the newest event seen and skips the ids it has seen; the ids are kept only as
//! long as the window, so the state stays small however long it runs.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};
use serde_json::Value;
use time::format_description::well_known::Rfc3339;
use time::{Duration, OffsetDateTime};

use super::{refused, Stop, Target};

/// Where a follower stands: what it has seen, and from when it shows events. Serialized
/// as `listen`'s cursor file.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub(super) struct Feed {
    /// Events created before this are not shown.
    #[serde(with = "time::serde::rfc3339")]
    start: OffsetDateTime,
    /// How far behind the newest event seen an event may still appear.
    window_seconds: i64,
    /// The ids seen within the window, with their creation times.
    seen: BTreeMap<String, String>,
    /// The newest creation time seen.
    #[serde(with = "time::serde::rfc3339::option")]
    newest: Option<OffsetDateTime>,
}

impl Feed {
    pub(super) fn new(start: OffsetDateTime, window: Duration) -> Self {
        Feed { start, window_seconds: window.whole_seconds().max(1), seen: BTreeMap::new(), newest: None }
    }

    fn window(&self) -> Duration {
        Duration::seconds(self.window_seconds)
    }

    /// Where the next poll reads from.
    fn since(&self) -> OffsetDateTime {
        self.newest.map_or(self.start, |newest| (newest - self.window()).max(self.start))
    }

    /// The events not seen yet, oldest first (every page from [`Self::since`]). They are
    /// not marked seen: call [`Self::mark`] once each is handled, so that one not handled
    /// when the follower stops is handed over by the next run.
    pub(super) async fn poll(&self, target: &Target) -> Result<Vec<Value>, Stop> {
        let since = self.since().format(&Rfc3339).map_err(|e| Stop { code: super::REFUSED, message: e.to_string() })?;
        let mut fresh = Vec::new();
        let mut after: Option<String> = None;
        loop {
            let mut query = url::form_urlencoded::Serializer::new(String::new());
            query.append_pair("since", &since).append_pair("limit", "100");
            if let Some(after) = &after {
                query.append_pair("after", after);
            }
            let (status, answer) = target.call("GET", &format!("/events?{}", query.finish()), None, None).await?;
            if status == 429 || status >= 500 {
                // A deploy or a throttle: passing, so a follower keeps trying.
                return Err(Stop {
                    code: super::UNREACHABLE,
                    message: format!("the events API answered {status} (after 3 tries)"),
                });
            }
            if status != 200 {
                return Err(refused(status, &answer, "reading the events feed"));
            }
            for event in answer["data"].as_array().into_iter().flatten() {
                let (Some(id), Some(created)) = (event["id"].as_str(), created_at(event)) else { continue };
                if created >= self.start && !self.seen.contains_key(id) {
                    fresh.push(event.clone());
                }
            }
            match answer["next"].as_str() {
                Some(next) => after = Some(next.to_owned()),
                None => return Ok(fresh),
            }
        }
    }

    /// Records `event` as handled, and forgets the ids that fell out of the window.
    pub(super) fn mark(&mut self, event: &Value) {
        let (Some(id), Some(created)) = (event["id"].as_str(), created_at(event)) else { return };
        self.seen.insert(id.to_owned(), event["created_at"].as_str().unwrap_or_default().to_owned());
        let newest = self.newest.map_or(created, |n| n.max(created));
        self.newest = Some(newest);
        // Kept a minute past the window: an id is forgotten only once no poll can read it.
        let horizon = newest - self.window() - Duration::minutes(1);
        self.seen.retain(|_, at| OffsetDateTime::parse(at, &Rfc3339).is_ok_and(|at| at >= horizon));
    }

    /// How many ids it holds (for its tests: the state stays bounded).
    #[cfg(test)]
    fn remembered(&self) -> usize {
        self.seen.len()
    }
}

fn created_at(event: &Value) -> Option<OffsetDateTime> {
    OffsetDateTime::parse(event["created_at"].as_str()?, &Rfc3339).ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn event(id: &str, at: &str) -> Value {
        serde_json::json!({ "id": id, "created_at": at })
    }

    #[test]
    fn the_feed_reads_a_window_behind_the_newest_event_and_forgets_older_ids() {
        let start = OffsetDateTime::parse("2026-12-01T10:00:00Z", &Rfc3339).unwrap();
        let mut feed = Feed::new(start, Duration::minutes(10));
        assert_eq!(feed.since(), start, "nothing seen: from the start");
        feed.mark(&event("evt_a", "2026-12-01T10:05:00Z"));
        assert_eq!(feed.since(), start, "never before the start");
        feed.mark(&event("evt_b", "2026-12-01T10:30:00Z"));
        assert_eq!(feed.since(), OffsetDateTime::parse("2026-12-01T10:20:00Z", &Rfc3339).unwrap());
        assert_eq!(feed.remembered(), 1, "evt_a is older than the window and a minute: forgotten");
        feed.mark(&event("evt_c", "2026-12-01T10:25:00Z"));
        assert_eq!(
            feed.since(),
            OffsetDateTime::parse("2026-12-01T10:20:00Z", &Rfc3339).unwrap(),
            "an older event moves nothing"
        );
        assert_eq!(feed.remembered(), 2);
        let kept: Feed = serde_json::from_str(&serde_json::to_string(&feed).unwrap()).unwrap();
        assert_eq!((kept.since(), kept.remembered()), (feed.since(), 2), "the cursor file round-trips");
    }
}
