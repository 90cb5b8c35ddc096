//! `payhooks`, the command line of the people who run the stack (issue 27): find a
//! payment, register one, follow and resend the events, against the local pipeline or a
//! deployed stack's API (signed with SigV4 from the standard AWS credential chain).
//!
//! ```text
//! payhooks [--stack NAME | --api URL] [--region R] [--json] tx get PROVIDER REFERENCE
//! payhooks tx register PROVIDER REFERENCE [--amount A] [--currency C] [--expires-at T]
//! payhooks tx attention [--limit N] [--all]
//! payhooks events list [--type T] [--delivered true|false] [--since T] [--limit N] [--all]
//! payhooks events list --follow [--type T] [--since T]
//! payhooks events get ID | events attempts ID
//! payhooks events resend ID [--idempotency-key K]
//! payhooks events recover --since T [--until T]
//! payhooks listen --forward-to URL [--types T,T] [--since T] [--cursor FILE] [--secret S]
//! payhooks listen --print-secret [--cursor FILE]
//! payhooks trigger PROVIDER SCENARIO [--reference R] [--set field=value ...]
//! payhooks console [--port P]
//! payhooks send PROVIDER FIXTURE
//! payhooks replay-dead-letters [DEAD_LETTER_QUEUE_URL QUEUE_URL]
//! ```
//!
//! Exit codes: 0 done; 1 the API refused or failed (its code and message are printed);
//! 2 a usage error; 3 not found; 4 the API could not be reached or no credentials.
//! `scripts/send` and `scripts/replay-dead-letters` run `send`
//! and `replay-dead-letters`.

mod console;
mod feed;
mod listen;
pub mod sigv4;
mod tools;
mod trigger;

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

const USAGE_TEXT_TEMPLATE: &str = "usage: payhooks [--stack NAME | --api URL] [--region R] [--json] COMMAND
  tx get PROVIDER REFERENCE
  tx register PROVIDER REFERENCE [--amount A] [--currency C] [--expires-at RFC3339]
  tx attention [--limit N] [--all]
      the transactions that need a human, most recently flagged first
  events list [--type T] [--delivered true|false] [--since RFC3339] [--limit N] [--all]
  events get ID
  events attempts ID
  events resend ID [--idempotency-key K]
  events recover --since RFC3339 [--until RFC3339]
  events list --follow [--type T] [--since RFC3339]
      prints each new event as it appears, until Ctrl-C
  listen --forward-to URL [--types T,T] [--since RFC3339] [--cursor FILE] [--secret whsec_...]
      forwards each new event to URL, signed per Standard Webhooks with the secret it
      prints; its cursor file (.payhooks/listen-<api>.json) keeps the secret and where it
      stands, so a restart neither misses nor repeats an event
  listen --print-secret [--cursor FILE]
      prints the secret listen signs with, and exits
  trigger PROVIDER SCENARIO [--reference R] [--set field=value ...]
      sends the provider's webhooks for SCENARIO, signed as it signs with the development
      credentials (local.env.example); --set edits the body (dotted.path=JSON or text)
      and signs it again. The scenarios:
  {SCENARIOS}
  console [--port P]
      a web console on http://127.0.0.1:P/ (8080): what needs attention, a transaction's
      story, the events with their attempts, resend and recover
  send PROVIDER events/PROVIDER/FIXTURE.json
      sends a fixture as the provider would (QI Tech's signed again with a fresh time)
  replay-dead-letters [DEAD_LETTER_QUEUE_URL QUEUE_URL]
      moves the terminal events of the dead-letter queue back to the main queue: the
      queues given (AWS), the --stack's, or the local pipeline's (SQS_ENDPOINT)
Following reads again the last --window seconds (600) of the feed each poll: an event
logged later than that after its creation is not followed.
The API is the local pipeline's (http://127.0.0.1:$PORT, 3000 by default) unless --stack
names a deployed stack (its outputs read from CloudFormation) or --api its URL (the
WebhookApiUrl output); requests to it are signed with SigV4 from the standard AWS
credential chain.";

/// Why a command stopped, and its exit code.
#[derive(Debug)]
struct Stop {
    code: u8,
    message: String,
}

fn usage_text() -> String {
    USAGE_TEXT_TEMPLATE.replace("{SCENARIOS}", trigger::SCENARIOS)
}

impl Stop {
    fn usage(message: impl Into<String>) -> Self {
        Stop { code: USAGE, message: format!("{}\n{}", message.into(), usage_text()) }
    }
}

/// The command line, read.
#[derive(Debug, Default)]
struct Args {
    words: Vec<String>,
    options: BTreeMap<String, String>,
    json: bool,
    all: bool,
    follow: bool,
    print_secret: bool,
    /// Each `--set field=value`, in order.
    sets: Vec<String>,
}

const VALUED: [&str; 19] = [
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
    "--forward-to",
    "--types",
    "--cursor",
    "--secret",
    "--window",
    "--reference",
    "--stack",
    "--port",
];

fn parse(args: &[String]) -> Result<Args, Stop> {
    let mut parsed = Args::default();
    let mut args = args.iter();
    while let Some(arg) = args.next() {
        match arg.as_str() {
            "--json" => parsed.json = true,
            "--all" => parsed.all = true,
            "--follow" => parsed.follow = true,
            "--print-secret" => parsed.print_secret = true,
            "--set" => parsed.sets.push(args.next().ok_or_else(|| Stop::usage("--set needs field=value"))?.clone()),
            "-h" | "--help" => return Err(Stop { code: OK, message: usage_text() }),
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
        let from_stack = match args.options.get("stack") {
            Some(_) if args.options.contains_key("api") => return Err(Stop::usage("give --stack or --api, not both")),
            Some(stack) => Some(Self::api_of_stack(args, stack, &client).await?),
            None => None,
        };
        let Some(api) = from_stack.as_ref().or(args.options.get("api")) else {
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
            // An execute-api host names its region, which is then the one to sign for.
            .or_else(|| region_of(url.host_str().unwrap_or_default()))
            .or_else(|| std::env::var("AWS_REGION").ok())
            .or_else(|| std::env::var("AWS_DEFAULT_REGION").ok())
            .ok_or_else(|| Stop::usage("give --region (or AWS_REGION): the API's host does not name it"))?;
        let signer = sigv4::from_environment(&region).await.map_err(|message| Stop { code: UNREACHABLE, message })?;
        Ok(Target { base, signer: Some(signer), client })
    }

    /// The operators' API of the stack `name` (`--stack`): its `WebhookApiUrl` output, or
    /// with the edge on, `https://<EdgeOriginDomainName>` (requests to it are signed for
    /// that name; CloudFront's own would not pass API Gateway's IAM check).
    async fn api_of_stack(args: &Args, name: &str, client: &reqwest::Client) -> Result<String, Stop> {
        let values = stack_values(args, name, client).await?;
        let edge_origin = values.get("EdgeOriginTarget").and(values.get("EdgeOriginDomainName"));
        match (edge_origin, values.get("WebhookApiUrl")) {
            (Some(origin), _) => Ok(format!("https://{origin}")),
            (None, Some(url)) => Ok(url.clone()),
            (None, None) => Err(Stop {
                code: REFUSED,
                message: format!("stack {name} has no WebhookApiUrl output: is it this project's stack?"),
            }),
        }
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

impl Target {
    /// A provider's webhook, sent as it is (unsigned: the webhook routes are public and
    /// verify the provider's own credentials); its status and answer.
    async fn send_raw(&self, path: &str, request: &shared::pipeline::Inbound) -> Result<(u16, String), Stop> {
        let mut sent = self
            .client
            .request(request.method.clone(), format!("{}{path}", self.base))
            .headers(request.headers.clone())
            .body(request.body.clone());
        let query: Vec<(&String, &String)> = request.query.iter().collect();
        if !query.is_empty() {
            sent = sent.query(&query);
        }
        let response = sent.send().await.map_err(|e| Stop {
            code: UNREACHABLE,
            message: format!(
                "{} answered nothing ({e}); is it running (scripts/run-local), or is --api right?",
                self.base
            ),
        })?;
        let status = response.status().as_u16();
        Ok((status, response.text().await.unwrap_or_default()))
    }
}

/// The outputs and parameters of the stack `name` (`--stack`), read with the credentials
/// of the environment in `--region` (or `AWS_REGION`, `AWS_DEFAULT_REGION`).
async fn stack_values(args: &Args, name: &str, client: &reqwest::Client) -> Result<BTreeMap<String, String>, Stop> {
    let region = args
        .options
        .get("region")
        .cloned()
        .or_else(|| std::env::var("AWS_REGION").ok())
        .or_else(|| std::env::var("AWS_DEFAULT_REGION").ok())
        .ok_or_else(|| Stop::usage("--stack needs --region (or AWS_REGION)"))?;
    let signer = sigv4::from_environment(&region).await.map_err(|message| Stop { code: UNREACHABLE, message })?;
    sigv4::describe_stack(client, &signer, name).await.map_err(|message| Stop { code: UNREACHABLE, message })
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
        ["tx", "attention"] => {
            let mut query = vec![("attention".to_owned(), "true".to_owned())];
            if let Some(limit) = args.options.get("limit") {
                query.push(("limit".into(), limit.clone()));
            }
            let (entries, next) =
                pages(&target, "/transactions", query, args.all, "listing what needs attention").await?;
            let text = if args.json {
                pretty(&serde_json::json!({ "data": entries, "next": next }))
            } else if entries.is_empty() {
                "nothing needs attention".to_owned()
            } else {
                let rows: Vec<Vec<String>> = entries
                    .iter()
                    .map(|e| {
                        let reasons: Vec<String> = e["attention"].as_array().into_iter().flatten().map(text).collect();
                        vec![
                            text(&e["flagged_at"]),
                            format!("{}/{}", text(&e["provider"]), text(&e["reference"])),
                            text(&e["status"]),
                            reasons.join(", "),
                        ]
                    })
                    .collect();
                let mut shown = table(&["FLAGGED", "TRANSACTION", "STATUS", "NEEDS ATTENTION FOR"], &rows);
                if next.is_some() {
                    shown.push_str("\nmore: --all");
                }
                shown
            };
            print(out, text)
        }
        ["listen"] => listen::run(&args, &target, out, err).await,
        ["console"] => console::run(&args, target, err).await,
        ["trigger", provider, scenario] => trigger::run(&args, &target, provider, scenario, out).await,
        ["send", provider, fixture] => tools::send(&target, provider, std::path::Path::new(fixture), out).await,
        ["replay-dead-letters", urls @ ..] => tools::replay(&args, urls, out).await,
        ["events", "list"] if args.follow => follow(&args, &target, out, err).await,
        ["events", "list"] => {
            let mut query: Vec<(String, String)> = Vec::new();
            for option in ["type", "delivered", "since", "limit"] {
                if let Some(value) = args.options.get(option) {
                    query.push((option.into(), value.clone()));
                }
            }
            let (events, next) = pages(&target, "/events", query, args.all, "listing events").await?;
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

/// The `data` of `GET path?query`, page after page while `all` (else the first page),
/// and the last page's `next` cursor.
async fn pages(
    target: &Target,
    path: &str,
    query: Vec<(String, String)>,
    all: bool,
    what: &str,
) -> Result<(Vec<Value>, Option<String>), Stop> {
    let mut entries = Vec::new();
    let mut next: Option<String> = None;
    loop {
        let mut pairs = query.clone();
        if let Some(after) = &next {
            pairs.push(("after".into(), after.clone()));
        }
        let encoded = url::form_urlencoded::Serializer::new(String::new()).extend_pairs(pairs).finish();
        let url = if encoded.is_empty() { path.to_owned() } else { format!("{path}?{encoded}") };
        let (status, answer) = target.call("GET", &url, None, None).await?;
        if status != 200 {
            return Err(refused(status, &answer, what));
        }
        entries.extend(answer["data"].as_array().cloned().unwrap_or_default());
        next = answer["next"].as_str().map(str::to_owned);
        if !all || next.is_none() {
            return Ok((entries, next));
        }
    }
}

/// How often a follower polls the feed.
const POLL_INTERVAL: Duration = Duration::from_secs(1);

fn print(out: &mut dyn Write, text: String) -> Result<(), Stop> {
    writeln!(out, "{text}").and_then(|()| out.flush()).map_err(|e| Stop { code: REFUSED, message: e.to_string() })
}

/// An RFC 3339 option's value.
fn time_option(name: &str, value: &str) -> Result<time::OffsetDateTime, Stop> {
    time::OffsetDateTime::parse(value, &time::format_description::well_known::Rfc3339)
        .map_err(|_| Stop::usage(format!("--{name} {value}: not an RFC 3339 time (2026-12-01T10:00:00Z)")))
}

/// The look-back window of a follower (`--window` seconds, 600 by default).
fn window(args: &Args) -> Result<time::Duration, Stop> {
    let seconds = match args.options.get("window") {
        Some(value) => value
            .parse::<i64>()
            .ok()
            .filter(|s| (1..=86_400).contains(s))
            .ok_or_else(|| Stop::usage(format!("--window {value}: seconds, 1 to 86400")))?,
        None => 600,
    };
    Ok(time::Duration::seconds(seconds))
}

/// `--types a,b` (or `--type a`): the event types to show, or all.
fn types_option(args: &Args) -> Result<Option<Vec<String>>, Stop> {
    let Some(list) = args.options.get("types").or_else(|| args.options.get("type")) else { return Ok(None) };
    let types: Vec<String> = list.split(',').map(|t| t.trim().to_owned()).filter(|t| !t.is_empty()).collect();
    for kind in &types {
        if kind.parse::<shared::model::EventType>().is_err() {
            return Err(Stop::usage(format!("{kind} is not an event type (see docs/merchant.md)")));
        }
    }
    Ok(Some(types))
}

/// A poll's events, or none when the API could not be reached: a follower says so and
/// keeps trying rather than stopping (or going quiet). Any other failure stops it.
fn keep_going(polled: Result<Vec<Value>, Stop>, err: &mut dyn Write) -> Result<Vec<Value>, Stop> {
    match polled {
        Ok(events) => Ok(events),
        Err(stop) if stop.code == UNREACHABLE => {
            let _ = writeln!(err, "payhooks: {}; still trying", stop.message);
            Ok(Vec::new())
        }
        Err(stop) => Err(stop),
    }
}

/// Ctrl-C or SIGTERM, seen between two steps of a follower.
struct Stopper {
    stopped: tokio::sync::watch::Receiver<bool>,
}

impl Stopper {
    fn start() -> Self {
        let (tell, stopped) = tokio::sync::watch::channel(false);
        tokio::spawn(async move {
            let terminate = async {
                match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
                    Ok(mut signal) => {
                        signal.recv().await;
                    }
                    Err(_) => std::future::pending::<()>().await,
                }
            };
            tokio::select! {
                _ = tokio::signal::ctrl_c() => {}
                () = terminate => {}
            }
            let _ = tell.send(true);
        });
        Stopper { stopped }
    }

    fn stopped(&self) -> bool {
        *self.stopped.borrow()
    }

    /// `work`'s result, or `None` once a stop is asked for.
    async fn or<T>(&mut self, work: impl std::future::Future<Output = T>) -> Option<T> {
        if self.stopped() {
            return None;
        }
        tokio::select! {
            biased;
            _ = self.stopped.changed() => None,
            value = work => Some(value),
        }
    }
}

/// `events list --follow`: each new event as a line (with `--json`, a JSON object per line).
async fn follow(args: &Args, target: &Target, out: &mut dyn Write, err: &mut dyn Write) -> Result<(), Stop> {
    for refused in ["delivered", "limit"] {
        if args.options.contains_key(refused) {
            return Err(Stop::usage(format!("--{refused} does not go with --follow")));
        }
    }
    let start = match args.options.get("since") {
        Some(since) => time_option("since", since)?,
        None => time::OffsetDateTime::now_utc(),
    };
    let types = types_option(args)?;
    let mut feed = feed::Feed::new(start, window(args)?);
    let mut stopper = Stopper::start();
    let _ = writeln!(err, "Following the events of {} (Ctrl-C stops)", target.base);
    loop {
        let fresh = match stopper.or(feed.poll(target)).await {
            None => return Ok(()),
            Some(polled) => keep_going(polled, err)?,
        };
        for event in fresh {
            if types.as_ref().is_none_or(|t| t.iter().any(|t| event["type"] == t.as_str())) {
                let line = if args.json {
                    event.to_string()
                } else {
                    format!(
                        "{}  {}  {}  {}/{}  {}",
                        text(&event["created_at"]),
                        text(&event["id"]),
                        text(&event["type"]),
                        text(&event["data"]["provider"]),
                        text(&event["data"]["reference"]),
                        event["delivered_at"]
                            .as_str()
                            .map_or("not delivered".to_owned(), |at| format!("delivered {at}"))
                    )
                };
                print(out, line)?;
            }
            feed.mark(&event);
        }
        if stopper.or(tokio::time::sleep(POLL_INTERVAL)).await.is_none() {
            return Ok(());
        }
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
