//! `payhooks`, the command line of the people who run the stack (issue 27): find a
//! payment, register one, follow and resend the events, against the local pipeline or a
//! deployed stack's API (signed with SigV4 from the standard AWS credential chain).
//!
//! ```text
//! payhooks [--api URL] [--region R] [--json] tx get PROVIDER REFERENCE
//! payhooks tx register PROVIDER REFERENCE [--amount A] [--currency C] [--expires-at T]
//! payhooks events list [--type T] [--delivered true|false] [--since T] [--limit N] [--all]
//! payhooks events get ID | events attempts ID
//! payhooks events resend ID [--idempotency-key K]
//! payhooks events recover --since T [--until T]
//! ```
//!
//! Exit codes: 0 done; 1 the API refused or failed (its code and message are printed);
//! 2 a usage error; 3 not found; 4 the API could not be reached or no credentials.
//! Not built yet: `--stack`, `tx attention`, `events --follow`, `listen`, `trigger`,
//! `console`.

pub mod sigv4;

use std::collections::BTreeMap;
use std::io::Write;
use std::time::{Duration, SystemTime};

use serde_json::Value;

/// The exit codes.
pub const OK: u8 = 0;
pub const REFUSED: u8 = 1;
pub const USAGE: u8 = 2;
pub const NOT_FOUND: u8 = 3;
pub const UNREACHABLE: u8 = 4;

const USAGE_TEXT: &str = "usage: payhooks [--api URL] [--region R] [--json] COMMAND
  tx get PROVIDER REFERENCE
  tx register PROVIDER REFERENCE [--amount A] [--currency C] [--expires-at RFC3339]
  events list [--type T] [--delivered true|false] [--since RFC3339] [--limit N] [--all]
  events get ID
  events attempts ID
  events resend ID [--idempotency-key K]
  events recover --since RFC3339 [--until RFC3339]
The API is the local pipeline's (http://127.0.0.1:$PORT, 3000 by default) unless --api
names a deployed stack's (its WebhookApiUrl output); requests to it are signed with SigV4.";

/// Why a command stopped, and its exit code.
#[derive(Debug)]
struct Stop {
    code: u8,
    message: String,
}

impl Stop {
    fn usage(message: impl Into<String>) -> Self {
        Stop { code: USAGE, message: format!("{}\n{USAGE_TEXT}", message.into()) }
    }
}

/// The command line, read.
#[derive(Debug, Default)]
struct Args {
    words: Vec<String>,
    options: BTreeMap<String, String>,
    json: bool,
    all: bool,
}

const VALUED: [&str; 11] = [
    "--api",
    "--region",
    "--amount",
    "--currency",
    "--expires-at",
    "--type",
    "--delivered",
    "--since",
    "--until",
    "--limit",
    "--idempotency-key",
];

fn parse(args: &[String]) -> Result<Args, Stop> {
    let mut parsed = Args::default();
    let mut args = args.iter();
    while let Some(arg) = args.next() {
        match arg.as_str() {
            "--json" => parsed.json = true,
            "--all" => parsed.all = true,
            "-h" | "--help" => return Err(Stop { code: OK, message: USAGE_TEXT.into() }),
            flag if VALUED.contains(&flag) => {
                let value = args.next().ok_or_else(|| Stop::usage(format!("{flag} needs a value")))?;
                parsed.options.insert(flag.trim_start_matches("--").to_owned(), value.clone());
            }
            flag if flag.starts_with("--") => return Err(Stop::usage(format!("unknown option {flag}"))),
            word => parsed.words.push(word.to_owned()),
        }
    }
    Ok(parsed)
}

/// Where requests go, and how they are signed.
struct Target {
    base: String,
    signer: Option<sigv4::Signer>,
    client: reqwest::Client,
}

impl Target {
    async fn new(args: &Args) -> Result<Self, Stop> {
        let client = reqwest::Client::builder()
            .timeout(Duration::from_secs(40))
            .build()
            .map_err(|e| Stop { code: UNREACHABLE, message: format!("cannot make an HTTP client: {e}") })?;
        let Some(api) = args.options.get("api") else {
            let port = std::env::var("PORT").unwrap_or_else(|_| "3000".into());
            return Ok(Target { base: format!("http://127.0.0.1:{port}"), signer: None, client });
        };
        let url = url::Url::parse(api).map_err(|e| Stop::usage(format!("--api {api}: {e}")))?;
        let loopback = url.host_str().is_some_and(|h| h == "localhost" || h == "127.0.0.1" || h == "[::1]");
        if url.scheme() != "https" && !loopback {
            return Err(Stop::usage(format!("--api {api}: a deployed stack's API is https")));
        }
        let base = api.trim_end_matches('/').to_owned();
        if loopback {
            return Ok(Target { base, signer: None, client });
        }
        let region = args
            .options
            .get("region")
            .cloned()
            .or_else(|| std::env::var("AWS_REGION").ok())
            .or_else(|| std::env::var("AWS_DEFAULT_REGION").ok())
            .or_else(|| region_of(url.host_str().unwrap_or_default()))
            .ok_or_else(|| Stop::usage("give --region (or AWS_REGION): the API's host does not name it"))?;
        let signer = sigv4::from_environment(&region).await.map_err(|message| Stop { code: UNREACHABLE, message })?;
        Ok(Target { base, signer: Some(signer), client })
    }

    /// One request, signed when the target is a deployed stack; its status and JSON
    /// answer. Tried again, up to three times, when there is no answer or a 5xx (with
    /// the same idempotency key, so a retried resend sends once).
    async fn call(
        &self,
        method: &str,
        path: &str,
        body: Option<&Value>,
        key: Option<&str>,
    ) -> Result<(u16, Value), Stop> {
        let url = format!("{}{path}", self.base);
        let bytes = body.map(|b| b.to_string().into_bytes()).unwrap_or_default();
        let mut last = String::new();
        for attempt in 0..3 {
            if attempt > 0 {
                tokio::time::sleep(Duration::from_millis(500 << attempt)).await;
            }
            let mut headers: Vec<(String, String)> = Vec::new();
            if body.is_some() {
                headers.push(("content-type".into(), "application/json".into()));
            }
            if let Some(key) = key {
                headers.push(("idempotency-key".into(), key.to_owned()));
            }
            if let Some(signer) = &self.signer {
                let host = url::Url::parse(&url).ok().and_then(|u| u.host_str().map(str::to_owned)).unwrap_or_default();
                let mut signed: Vec<(&str, &str)> = headers.iter().map(|(n, v)| (n.as_str(), v.as_str())).collect();
                signed.push(("host", host.as_str()));
                let signature = sigv4::signature_headers(signer, method, &url, &signed, &bytes, SystemTime::now())
                    .map_err(|message| Stop { code: UNREACHABLE, message })?;
                headers.extend(signature);
            }
            let method = reqwest::Method::from_bytes(method.as_bytes()).unwrap_or(reqwest::Method::GET);
            let mut request = self.client.request(method, &url).body(bytes.clone());
            for (name, value) in &headers {
                request = request.header(name.as_str(), value.as_str());
            }
            match request.send().await {
                Ok(response) => {
                    let status = response.status().as_u16();
                    let text = response.text().await.unwrap_or_default();
                    if status >= 500 && attempt < 2 {
                        last = format!("{status} {text}");
                        continue;
                    }
                    let answer = serde_json::from_str(&text).unwrap_or(Value::String(text));
                    return Ok((status, answer));
                }
                Err(error) => last = error.to_string(),
            }
        }
        Err(Stop {
            code: UNREACHABLE,
            message: format!(
                "{} answered nothing usable after 3 tries ({last}); is it running (scripts/run-local), or is --api right?",
                self.base
            ),
        })
    }
}

/// The region in an execute-api host (`{id}.execute-api.{region}.amazonaws.com`).
fn region_of(host: &str) -> Option<String> {
    let mut parts = host.split('.');
    let _id = parts.next()?;
    (parts.next()? == "execute-api").then(|| parts.next().map(str::to_owned)).flatten()
}

/// An error answer as a stop: its code and message, and what to do.
fn refused(status: u16, answer: &Value, what: &str) -> Stop {
    let code = answer["error"]["code"].as_str().unwrap_or("unknown");
    let message = answer["error"]["message"].as_str().map(str::to_owned).unwrap_or_else(|| answer.to_string());
    let advice = match status {
        403 => " (on AWS: the credentials need execute-api:Invoke on the API)",
        404 => "",
        429 => " (try again later)",
        s if s >= 500 => " (the API failed; try again, and see its logs)",
        _ => "",
    };
    Stop {
        code: if status == 404 { NOT_FOUND } else { REFUSED },
        message: format!("{what}: {status} {code}: {message}{advice}"),
    }
}

/// A path segment, percent-encoded.
fn segment(text: &str) -> String {
    url::form_urlencoded::byte_serialize(text.as_bytes()).collect::<String>().replace('+', "%20")
}

/// Runs the command line `args` (without the program's name), writing to `out` and
/// `err`; returns the exit code.
pub async fn run(args: &[String], out: &mut dyn Write, err: &mut dyn Write) -> u8 {
    match execute(args, out, err).await {
        Ok(()) => OK,
        Err(stop) => {
            let _ = if stop.code == OK {
                writeln!(out, "{}", stop.message)
            } else {
                writeln!(err, "payhooks: {}", stop.message)
            };
            stop.code
        }
    }
}

async fn execute(args: &[String], out: &mut dyn Write, err: &mut dyn Write) -> Result<(), Stop> {
    let args = parse(args)?;
    let words: Vec<&str> = args.words.iter().map(String::as_str).collect();
    if words.is_empty() {
        return Err(Stop::usage("no command"));
    }
    let target = Target::new(&args).await?;
    let print = |out: &mut dyn Write, text: String| {
        writeln!(out, "{text}").map_err(|e| Stop { code: REFUSED, message: e.to_string() })
    };
    match words.as_slice() {
        ["tx", "get", provider, reference] => {
            let path = format!("/transactions/{}/{}", segment(provider), segment(reference));
            let (status, answer) = target.call("GET", &path, None, None).await?;
            if status != 200 {
                return Err(refused(status, &answer, &format!("{provider}/{reference}")));
            }
            print(out, if args.json { pretty(&answer) } else { transaction_text(&answer) })
        }
        ["tx", "register", provider, reference] => {
            let mut body = serde_json::Map::new();
            for (option, field) in [("amount", "amount"), ("currency", "currency"), ("expires-at", "expires_at")] {
                if let Some(value) = args.options.get(option) {
                    body.insert(field.into(), value.clone().into());
                }
            }
            let path = format!("/transactions/{}/{}", segment(provider), segment(reference));
            let (status, answer) = target.call("PUT", &path, Some(&Value::Object(body)), None).await?;
            if status != 200 && status != 201 {
                return Err(refused(status, &answer, &format!("registering {provider}/{reference}")));
            }
            let text = if args.json {
                pretty(&answer)
            } else {
                let verb = if status == 201 { "registered" } else { "already registered" };
                let mut text = format!("{verb}: {provider}/{reference}");
                if let Some(token) = answer["callback_token"].as_str() {
                    text.push_str(&format!("\ncallback token: {token}"));
                }
                text
            };
            print(out, text)
        }
        ["events", "list"] => {
            let mut query: Vec<(String, String)> = Vec::new();
            for option in ["type", "delivered", "since", "limit"] {
                if let Some(value) = args.options.get(option) {
                    query.push((option.into(), value.clone()));
                }
            }
            let mut events: Vec<Value> = Vec::new();
            let mut next: Option<String> = None;
            loop {
                let mut pairs = query.clone();
                if let Some(after) = &next {
                    pairs.push(("after".into(), after.clone()));
                }
                let encoded: String = url::form_urlencoded::Serializer::new(String::new()).extend_pairs(pairs).finish();
                let path = if encoded.is_empty() { "/events".to_owned() } else { format!("/events?{encoded}") };
                let (status, answer) = target.call("GET", &path, None, None).await?;
                if status != 200 {
                    return Err(refused(status, &answer, "listing events"));
                }
                events.extend(answer["data"].as_array().cloned().unwrap_or_default());
                next = answer["next"].as_str().map(str::to_owned);
                if !args.all || next.is_none() {
                    break;
                }
            }
            let text = if args.json {
                pretty(&serde_json::json!({ "data": events, "next": next }))
            } else {
                let mut text = events_table(&events);
                if let Some(next) = &next {
                    text.push_str(&format!("\nmore: --all, or the API's after={next}"));
                }
                text
            };
            print(out, text)
        }
        ["events", "get", id] => {
            let (status, answer) = target.call("GET", &format!("/events/{}", segment(id)), None, None).await?;
            if status != 200 {
                return Err(refused(status, &answer, id));
            }
            print(out, if args.json { pretty(&answer) } else { events_table(std::slice::from_ref(&answer)) })
        }
        ["events", "attempts", id] => {
            let (status, answer) = target.call("GET", &format!("/events/{}/attempts", segment(id)), None, None).await?;
            if status != 200 {
                return Err(refused(status, &answer, id));
            }
            let attempts = answer["data"].as_array().cloned().unwrap_or_default();
            print(out, if args.json { pretty(&answer) } else { attempts_table(&attempts) })
        }
        ["events", "resend", id] => {
            let key = args.options.get("idempotency-key").cloned().unwrap_or_else(fresh_key);
            let path = format!("/events/{}/resend", segment(id));
            let (status, answer) = target.call("POST", &path, None, Some(&key)).await?;
            if status != 202 {
                return Err(refused(status, &answer, &format!("resending {id}")));
            }
            print(out, if args.json { pretty(&answer) } else { format!("resent {id} (idempotency key {key})") })
        }
        ["events", "recover"] => {
            let since = args.options.get("since").ok_or_else(|| Stop::usage("events recover needs --since"))?;
            let mut body = serde_json::json!({ "since": since });
            if let Some(until) = args.options.get("until") {
                body["until"] = until.clone().into();
            }
            let (mut total, mut batches) = (0_u64, 0_u64);
            loop {
                let key = fresh_key();
                let (status, answer) = target.call("POST", "/events/recover", Some(&body), Some(&key)).await?;
                if status != 202 {
                    return Err(refused(status, &answer, "recovering"));
                }
                batches += 1;
                total += answer["resent"].as_u64().unwrap_or(0);
                let _ = writeln!(err, "batch {batches}: {} resent, {total} in all", answer["resent"]);
                body["until"] = answer["until"].clone();
                match answer["next"].as_str() {
                    Some(next) => body["after"] = next.into(),
                    None => break,
                }
            }
            let summary =
                serde_json::json!({ "resent": total, "batches": batches, "since": since, "until": body["until"] });
            print(
                out,
                if args.json {
                    pretty(&summary)
                } else {
                    format!(
                        "recovered {total} undelivered events in {batches} batches, from {since} to {}",
                        body["until"].as_str().unwrap_or("now")
                    )
                },
            )
        }
        _ => Err(Stop::usage(format!("unknown command: {}", words.join(" ")))),
    }
}

/// An idempotency key of this invocation: its retries send once.
fn fresh_key() -> String {
    let nanos = SystemTime::now().duration_since(SystemTime::UNIX_EPOCH).map(|d| d.as_nanos()).unwrap_or(0);
    format!("payhooks-{}-{nanos}", std::process::id())
}

fn pretty(value: &Value) -> String {
    serde_json::to_string_pretty(value).unwrap_or_else(|_| value.to_string())
}

fn text(value: &Value) -> String {
    match value {
        Value::String(s) => s.clone(),
        Value::Null => "-".into(),
        other @ (Value::Bool(_) | Value::Number(_) | Value::Array(_) | Value::Object(_)) => other.to_string(),
    }
}

/// Rows under a header, each column as wide as its widest cell.
fn table(header: &[&str], rows: &[Vec<String>]) -> String {
    let mut widths: Vec<usize> = header.iter().map(|h| h.chars().count()).collect();
    for row in rows {
        for (width, cell) in widths.iter_mut().zip(row) {
            *width = (*width).max(cell.chars().count());
        }
    }
    let line = |cells: Vec<String>| {
        let padded: Vec<String> = cells.iter().zip(&widths).map(|(c, w)| format!("{c:<w$}")).collect();
        padded.join("  ").trim_end().to_owned()
    };
    let mut lines = vec![line(header.iter().map(|h| (*h).to_owned()).collect())];
    lines.extend(rows.iter().map(|row| line(row.clone())));
    lines.join("\n")
}

fn transaction_text(record: &Value) -> String {
    let mut lines = vec![format!(
        "{}/{}  {} ({})",
        text(&record["provider"]),
        text(&record["reference"]),
        text(&record["status"]),
        record["provider_status"].as_str().unwrap_or("the provider has not spoken")
    )];
    for (label, field) in [
        ("amount", "amount"),
        ("currency", "currency"),
        ("expected amount", "expected_amount"),
        ("reason", "reason"),
        ("customer message", "customer_message"),
        ("registered", "registered_at"),
        ("first seen", "first_seen_at"),
        ("updated", "updated_at"),
        ("final", "final_at"),
        ("merchant told", "notified_at"),
        ("merchant refused", "notification_refused_at"),
    ] {
        if !record[field].is_null() {
            lines.push(format!("{label:<17} {}", text(&record[field])));
        }
    }
    for (label, field) in [("conflicts", "conflicts"), ("refunds", "refunds")] {
        if let Some(items) = record[field].as_array().filter(|a| !a.is_empty()) {
            lines.push(format!("{label:<17} {}", items.len()));
        }
    }
    if !record["amount_mismatch"].is_null() {
        lines.push(format!("{:<17} {}", "amount mismatch", record["amount_mismatch"]));
    }
    let history = record["history"].as_array().cloned().unwrap_or_default();
    if !history.is_empty() {
        let rows: Vec<Vec<String>> = history
            .iter()
            .map(|h| vec![text(&h["received_at"]), text(&h["status"]), text(&h["provider_status"])])
            .collect();
        lines.push(String::new());
        lines.push(table(&["RECEIVED", "STATUS", "PROVIDER SAID"], &rows));
    }
    lines.join("\n")
}

fn events_table(events: &[Value]) -> String {
    if events.is_empty() {
        return "no events".into();
    }
    let rows: Vec<Vec<String>> = events
        .iter()
        .map(|e| {
            vec![
                text(&e["id"]),
                text(&e["type"]),
                format!("{}/{}", text(&e["data"]["provider"]), text(&e["data"]["reference"])),
                text(&e["created_at"]),
                e["delivered_at"].as_str().map(str::to_owned).unwrap_or_else(|| "not delivered".into()),
                text(&e["attempt_count"]),
            ]
        })
        .collect();
    table(&["ID", "TYPE", "TRANSACTION", "CREATED", "DELIVERED", "ATTEMPTS"], &rows)
}

fn attempts_table(attempts: &[Value]) -> String {
    if attempts.is_empty() {
        return "no attempts yet".into();
    }
    let rows: Vec<Vec<String>> = attempts
        .iter()
        .map(|a| {
            let answer = a["status"].as_u64().map(|s| s.to_string()).unwrap_or_else(|| text(&a["error"]));
            let response: String = a["response"].as_str().unwrap_or_default().chars().take(40).collect();
            vec![text(&a["at"]), text(&a["kind"]), answer, text(&a["duration_ms"]), response]
        })
        .collect();
    table(&["AT", "KIND", "ANSWER", "MS", "RESPONSE"], &rows)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_region_is_read_from_an_execute_api_host() {
        assert_eq!(region_of("abc123.execute-api.sa-east-1.amazonaws.com").as_deref(), Some("sa-east-1"));
        assert_eq!(region_of("origin.pay.example.com"), None);
    }

    #[test]
    fn a_table_pads_every_column_to_its_widest_cell() {
        let shown = table(&["A", "BB"], &[vec!["xyz".into(), "1".into()], vec!["q".into(), "22".into()]]);
        assert_eq!(shown, "A    BB\nxyz  1\nq    22");
    }

    #[test]
    fn path_segments_are_percent_encoded() {
        assert_eq!(segment("a/b c"), "a%2Fb%20c");
    }
}
