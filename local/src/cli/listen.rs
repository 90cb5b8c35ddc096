//! `payhooks listen --forward-to URL`: follows the events feed and forwards each event to
//! a developer's endpoint, signed per Standard Webhooks, as the stack delivers to the
//! merchant. Its cursor file keeps the signing secret and where it stands, so a restart
//! neither misses nor repeats an event.

use std::io::Write;
use std::path::{Path, PathBuf};
use std::time::Instant;

use serde::{Deserialize, Serialize};
use serde_json::Value;
use time::OffsetDateTime;

use super::feed::Feed;
use super::{Args, Stop, Target, REFUSED, USAGE};

/// What a listener keeps between runs.
#[derive(Debug, Serialize, Deserialize)]
struct Cursor {
    /// The secret its forwards are signed with (`whsec_` and base64).
    secret: String,
    feed: Feed,
}

/// A fresh `whsec_` secret: 24 random bytes, as the stack's `NotifySecret` is made.
fn new_secret() -> Result<String, Stop> {
    use base64::Engine as _;
    let mut bytes = [0_u8; 24];
    aws_lc_rs::rand::fill(&mut bytes)
        .map_err(|_| Stop { code: REFUSED, message: "no randomness for a secret".into() })?;
    Ok(format!("whsec_{}", base64::engine::general_purpose::STANDARD.encode(bytes)))
}

/// The default cursor file: one per target, in the working directory's `.payhooks/`.
fn default_cursor_path(target: &Target) -> PathBuf {
    let name: String = target.base.chars().map(|c| if c.is_ascii_alphanumeric() { c } else { '-' }).collect::<String>();
    Path::new(".payhooks").join(format!("listen-{}.json", name.trim_matches('-')))
}

fn load(path: &Path) -> Result<Option<Cursor>, Stop> {
    match std::fs::read(path) {
        Ok(bytes) => serde_json::from_slice(&bytes).map(Some).map_err(|e| Stop {
            code: USAGE,
            message: format!(
                "{} is not a cursor file of payhooks listen ({e}); remove it to start afresh",
                path.display()
            ),
        }),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
        Err(e) => Err(Stop { code: REFUSED, message: format!("cannot read {}: {e}", path.display()) }),
    }
}

/// Written whole to a temporary file (readable by its owner only: it holds the signing
/// secret), synced, then renamed over the cursor: a stop at any moment leaves the old
/// cursor or the new one.
fn save(path: &Path, cursor: &Cursor) -> Result<(), Stop> {
    use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt};
    let fail = |e: std::io::Error| Stop { code: REFUSED, message: format!("cannot write {}: {e}", path.display()) };
    if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty() && !d.exists()) {
        std::fs::DirBuilder::new().recursive(true).mode(0o700).create(dir).map_err(fail)?;
    }
    let temporary = path.with_extension("json.tmp");
    let text = serde_json::to_vec_pretty(cursor).map_err(|e| fail(std::io::Error::other(e)))?;
    let mut file = std::fs::OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .mode(0o600)
        .open(&temporary)
        .map_err(fail)?;
    file.write_all(&text).and_then(|()| file.sync_all()).map_err(fail)?;
    std::fs::rename(&temporary, path).map_err(fail)
}

/// The event's body as the stack delivers it: without the log's own fields.
fn delivered_body(event: &Value) -> Vec<u8> {
    let mut body = event.clone();
    if let Some(object) = body.as_object_mut() {
        object.remove("delivered_at");
        object.remove("attempt_count");
    }
    body.to_string().into_bytes()
}

/// Forwards one event; a line saying how it went.
async fn forward(client: &reqwest::Client, url: &str, signer: &standardwebhooks::Webhook, event: &Value) -> String {
    let id = event["id"].as_str().unwrap_or_default();
    let body = delivered_body(event);
    let now = OffsetDateTime::now_utc().unix_timestamp();
    let summary = format!(
        "{id}  {}  {}/{}",
        super::text(&event["type"]),
        super::text(&event["data"]["provider"]),
        super::text(&event["data"]["reference"])
    );
    let signature = match signer.sign(id, now, &body) {
        Ok(signature) => signature,
        Err(e) => return format!("{summary}  -> not sent: cannot sign ({e})"),
    };
    let started = Instant::now();
    let sent = client
        .post(url)
        .header("content-type", "application/json")
        .header("webhook-id", id)
        .header("webhook-timestamp", now.to_string())
        .header("webhook-signature", signature)
        .body(body)
        .send()
        .await;
    let elapsed = started.elapsed().as_millis();
    match sent {
        Ok(response) => {
            let status = response.status();
            let answer: String = response.text().await.unwrap_or_default().chars().take(80).collect();
            let verdict = if status.is_success() { "" } else { "  FAILED" };
            format!("{summary}  -> {} ({elapsed} ms){verdict} {}", status.as_u16(), answer.trim())
        }
        Err(e) => format!("{summary}  -> FAILED, no answer ({elapsed} ms): {e}"),
    }
}

/// `listen`: until interrupted (Ctrl-C or SIGTERM, between two forwards).
pub(super) async fn run(args: &Args, target: &Target, out: &mut dyn Write, err: &mut dyn Write) -> Result<(), Stop> {
    let path = args.options.get("cursor").map(PathBuf::from).unwrap_or_else(|| default_cursor_path(target));
    let mut cursor = match load(&path)? {
        Some(cursor) => cursor,
        None => {
            let start = match args.options.get("since") {
                Some(since) => super::time_option("since", since)?,
                None => OffsetDateTime::now_utc(),
            };
            Cursor { secret: new_secret()?, feed: Feed::new(start, super::window(args)?) }
        }
    };
    // A secret given (--secret, or PAYHOOKS_LISTEN_SECRET, which no process list shows)
    // is used, never written to the cursor file.
    let given = args.options.get("secret").cloned().or_else(|| std::env::var("PAYHOOKS_LISTEN_SECRET").ok());
    let signing = given.as_ref().unwrap_or(&cursor.secret);
    let signer = standardwebhooks::Webhook::new(signing)
        .map_err(|_| Stop::usage("--secret must be whsec_ followed by base64"))?;
    save(&path, &cursor)?;
    if args.print_secret {
        return super::print(out, cursor.secret.clone());
    }
    let Some(url) = args.options.get("forward-to") else {
        return Err(Stop::usage("listen needs --forward-to URL (or --print-secret)"));
    };
    let url = url::Url::parse(url).map_err(|e| Stop::usage(format!("--forward-to {url}: {e}")))?.to_string();
    let types = super::types_option(args)?;
    let client = reqwest::Client::builder()
        .timeout(std::time::Duration::from_secs(10))
        .build()
        .map_err(|e| Stop { code: REFUSED, message: e.to_string() })?;
    // A secret listen made is the developer's own and shown, as `stripe listen` shows its
    // own; one given (perhaps the stack's) is not.
    let secret = if given.is_some() { "the one given (--secret or PAYHOOKS_LISTEN_SECRET)" } else { &cursor.secret };
    let _ = writeln!(
        err,
        "Forwarding events from {} to {url}\nSigning secret: {secret} (Standard Webhooks)\nCursor: {} (Ctrl-C stops; a restart resumes)",
        target.base,
        path.display()
    );
    let mut stopper = super::Stopper::start();
    loop {
        let fresh = match stopper.or(cursor.feed.poll(target)).await {
            None => break,
            Some(polled) => super::keep_going(polled, err)?,
        };
        for event in fresh {
            if stopper.stopped() {
                break;
            }
            if types.as_ref().is_none_or(|t| t.iter().any(|t| event["type"] == t.as_str())) {
                super::print(out, forward(&client, &url, &signer, &event).await)?;
            }
            cursor.feed.mark(&event);
            save(&path, &cursor)?;
        }
        if stopper.or(tokio::time::sleep(super::POLL_INTERVAL)).await.is_none() {
            break;
        }
    }
    let _ = writeln!(err, "Stopped; the cursor is kept in {}", path.display());
    Ok(())
}
