//! `payhooks console`: a web console on 127.0.0.1, served by this binary and reading
//! through the same APIs as the other commands (signed for a deployed stack), so it adds
//! nothing to the stack's public surface. Pages are HTML made here, readable without
//! JavaScript (there is none), labelled for screen readers, and usable at a phone's width.
//!
//! - `/`: what needs attention (`GET /transactions?attention=true`) and the deliveries;
//! - `/tx?provider=&reference=`: a transaction's whole story, with its events and their
//!   attempts;
//! - `/events`: the feed with filters; `/events/{id}`: an event, its attempts, resend;
//! - `/recover`: recover a window of undelivered events.
//!
//! Everything shown comes from providers or the merchant and is escaped. The console
//! answers only requests for its own address (`Host`), so a web page cannot reach it by
//! DNS rebinding, and every form carries a token of this run, so another site cannot make
//! the operator's browser resend or recover.

use std::fmt::Write as _;
use std::io::Write;
use std::sync::Arc;

use axum::body::Bytes;
use axum::extract::{Path, RawQuery, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{Html, IntoResponse, Redirect, Response};
use axum::routing::get;
use axum::Router;
use serde_json::Value;
use time::format_description::well_known::Rfc3339;
use time::OffsetDateTime;

use super::{segment, text, Args, Stop, Target, REFUSED, USAGE};
use shared::model::{
    conflict_event_id, event_id, mismatch_event_id, refund_event_id, updated_event_id, EventType, MismatchKind,
    RefundStatus, Status,
};

struct Console {
    target: Target,
    /// The only `Host` it answers (`127.0.0.1:<port>`, or `localhost:<port>`).
    port: u16,
    /// Every form's hidden token: a POST without it is refused.
    token: String,
    providers: Vec<&'static str>,
}

type Shared = State<Arc<Console>>;

/// `console [--port P]`: serves until Ctrl-C or SIGTERM.
pub(super) async fn run(args: &Args, target: Target, err: &mut dyn Write) -> Result<(), Stop> {
    let port = match args.options.get("port") {
        Some(port) => port.parse::<u16>().map_err(|_| Stop::usage(format!("--port {port}: a port number")))?,
        None => 8080,
    };
    let listener = tokio::net::TcpListener::bind(("127.0.0.1", port))
        .await
        .map_err(|e| Stop { code: USAGE, message: format!("cannot listen on 127.0.0.1:{port} ({e}); try --port") })?;
    let port = listener.local_addr().map(|a| a.port()).unwrap_or(port);
    let mut token = [0_u8; 16];
    aws_lc_rs::rand::fill(&mut token).map_err(|_| Stop { code: REFUSED, message: "no randomness".into() })?;
    let providers = provider_catalog::all().iter().map(|p| p.name).collect();
    let base = target.base.clone();
    let console = Arc::new(Console { target, port, token: hex::encode(token), providers });
    let app = Router::new()
        .route("/", get(attention))
        .route("/tx", get(transaction))
        .route("/events", get(events))
        .route("/events/{id}", get(event))
        .route("/events/{id}/resend", axum::routing::post(resend))
        .route("/recover", get(recover_form).post(recover))
        .route("/style.css", get(style))
        .fallback(|| async { (StatusCode::NOT_FOUND, Html(page("Not found", "<p>No such page.</p>".into()))) })
        .layer(axum::middleware::from_fn_with_state(Arc::clone(&console), own_host_only))
        .with_state(console);
    let _ = writeln!(err, "Console on http://127.0.0.1:{port}/ reading {base} (Ctrl-C stops)");
    let mut stopper = super::Stopper::start();
    let served = stopper.or(async { axum::serve(listener, app).await }).await;
    match served {
        Some(Err(e)) => Err(Stop { code: REFUSED, message: format!("the console stopped: {e}") }),
        Some(Ok(())) | None => Ok(()),
    }
}

/// Only requests for the console's own address (not a rebound DNS name), and not made
/// by another site's page (the browser's `Sec-Fetch-Site`: an image or a form of another
/// site would make the console read, or act, with the operator's credentials). Every
/// answer forbids framing (no clickjacking of its buttons) and anything but its own
/// stylesheet and forms.
async fn own_host_only(
    State(console): Shared,
    request: axum::extract::Request,
    next: axum::middleware::Next,
) -> Response {
    let (host, fetch_site) = {
        let header = |name: &str| request.headers().get(name).and_then(|h| h.to_str().ok()).map(str::to_owned);
        (header("host").unwrap_or_default(), header("sec-fetch-site").unwrap_or_default())
    };
    let own = [format!("127.0.0.1:{}", console.port), format!("localhost:{}", console.port)];
    if !own.contains(&host) {
        return (StatusCode::MISDIRECTED_REQUEST, "this console answers only http://127.0.0.1:<its port>/")
            .into_response();
    }
    if matches!(fetch_site.as_str(), "cross-site" | "same-site") {
        return (StatusCode::FORBIDDEN, "this console answers only its own pages, or an address typed in")
            .into_response();
    }
    let mut response = next.run(request).await;
    let headers = response.headers_mut();
    headers.insert("x-frame-options", axum::http::HeaderValue::from_static("DENY"));
    headers.insert(
        "content-security-policy",
        axum::http::HeaderValue::from_static(
            "default-src 'none'; style-src 'self'; form-action 'self'; frame-ancestors 'none'; base-uri 'none'",
        ),
    );
    // same-origin, not no-referrer: with no-referrer a browser sends its forms with `Origin: null`.
    headers.insert("referrer-policy", axum::http::HeaderValue::from_static("same-origin"));
    response
}

/// The text, safe inside HTML (elements and attributes).
fn esc(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for c in text.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#39;"),
            other => out.push(other),
        }
    }
    out
}

/// A JSON value shown as text, escaped.
fn show(value: &Value) -> String {
    esc(&text(value))
}

/// A query string's parameters.
fn query(raw: Option<String>) -> std::collections::BTreeMap<String, String> {
    url::form_urlencoded::parse(raw.unwrap_or_default().as_bytes()).into_owned().collect()
}

fn page(title: &str, main: String) -> String {
    format!(
        r#"<!doctype html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>{title} · payhooks</title>
<link rel="stylesheet" href="/style.css">
</head>
<body>
<header>
<nav aria-label="Console">
<a href="/">Needs attention</a>
<a href="/tx">Find a transaction</a>
<a href="/events">Events</a>
<a href="/recover">Recover</a>
</nav>
</header>
<main>
<h1>{title}</h1>
{main}
</main>
</body>
</html>
"#,
        title = esc(title)
    )
}

/// A table with a caption and column headers.
fn table(caption: &str, header: &[&str], rows: &[Vec<String>]) -> String {
    let mut html = format!("<div class=\"scroll\"><table>\n<caption>{}</caption>\n<thead><tr>", esc(caption));
    for column in header {
        let _ = write!(html, "<th scope=\"col\">{}</th>", esc(column));
    }
    html.push_str("</tr></thead>\n<tbody>\n");
    for row in rows {
        html.push_str("<tr>");
        for cell in row {
            let _ = write!(html, "<td>{cell}</td>");
        }
        html.push_str("</tr>\n");
    }
    html.push_str("</tbody></table></div>\n");
    html
}

/// What the API said when it refused or failed, as a page.
fn failure(stop: &Stop) -> Response {
    let body = format!("<p role=\"alert\" class=\"error\">{}</p>", esc(&stop.message));
    (StatusCode::BAD_GATEWAY, Html(page("The API did not answer as expected", body))).into_response()
}

/// GET `path` through the API; a 200's JSON, `None` for a 404, else the stop.
async fn read(console: &Console, path: &str) -> Result<Option<Value>, Stop> {
    let (status, answer) = console.target.call("GET", path, None, None).await?;
    match status {
        200 => Ok(Some(answer)),
        404 => Ok(None),
        _ => Err(super::refused(status, &answer, path)),
    }
}

fn transaction_link(provider: &Value, reference: &Value) -> String {
    let (provider, reference) = (text(provider), text(reference));
    format!(
        "<a href=\"/tx?provider={}&amp;reference={}\">{}/{}</a>",
        esc(&segment(&provider)),
        esc(&segment(&reference)),
        esc(&provider),
        esc(&reference)
    )
}

fn event_link(id: &Value) -> String {
    let id = text(id);
    format!("<a href=\"/events/{}\">{}</a>", esc(&segment(&id)), esc(&id))
}

fn delivered(event: &Value) -> String {
    match event["delivered_at"].as_str() {
        Some(at) => format!("delivered {}", esc(at)),
        None => "<strong>not delivered</strong>".into(),
    }
}

async fn attention(State(console): Shared, RawQuery(raw): RawQuery) -> Response {
    let params = query(raw);
    let mut path = "/transactions?attention=true&limit=50".to_owned();
    if let Some(after) = params.get("after") {
        let _ = write!(path, "&after={}", segment(after));
    }
    let listed = match read(&console, &path).await {
        Ok(listed) => listed.unwrap_or_default(),
        Err(stop) => return failure(&stop),
    };
    let rows: Vec<Vec<String>> = listed["data"]
        .as_array()
        .into_iter()
        .flatten()
        .map(|entry| {
            let reasons: Vec<String> = entry["attention"].as_array().into_iter().flatten().map(show).collect();
            vec![
                show(&entry["flagged_at"]),
                transaction_link(&entry["provider"], &entry["reference"]),
                show(&entry["status"]),
                reasons.join(", "),
            ]
        })
        .collect();
    let mut main = String::from(
        "<p>Transactions a person should look at: a conflict, an amount mismatch, a failed refund, \
         a sync given up, an outcome the merchant refused. Most recently flagged first.</p>\n",
    );
    if rows.is_empty() {
        main.push_str("<p class=\"calm\">Nothing needs attention.</p>\n");
    } else {
        main.push_str(&table("Needs attention", &["Flagged", "Transaction", "Status", "Why"], &rows));
    }
    if let Some(next) = listed["next"].as_str() {
        let _ = writeln!(main, "<p><a href=\"/?after={}\">Older</a></p>", esc(&segment(next)));
    }
    main.push_str(&overdue(&console).await);
    main.push_str(&deliveries(&console).await);
    Html(page("Needs attention", main)).into_response()
}

/// The status syncs running late (`GET /transactions?overdue=true`): a lagging or stuck sync.
async fn overdue(console: &Console) -> String {
    let mut html = String::from("<h2>Status sync</h2>\n");
    match read(console, "/transactions?overdue=true&limit=20").await {
        Ok(Some(late)) => {
            let rows: Vec<Vec<String>> = late["data"]
                .as_array()
                .into_iter()
                .flatten()
                .map(|e| {
                    let minutes = e["overdue_seconds"].as_i64().unwrap_or(0) / 60;
                    vec![
                        transaction_link(&e["provider"], &e["reference"]),
                        show(&e["next_sync_at"]),
                        format!("{minutes} min"),
                    ]
                })
                .collect();
            if rows.is_empty() {
                html.push_str("<p class=\"calm\">On time: no sync more than 5 minutes late.</p>\n");
            } else {
                html.push_str(&table("Syncs running late, most late first", &["Transaction", "Due", "Late by"], &rows));
            }
        }
        Ok(None) => {}
        Err(stop) => {
            let _ = writeln!(html, "<p class=\"error\">{}</p>", esc(&stop.message));
        }
    }
    html
}

/// The deliveries: events not delivered, and how the merchant's endpoint answered lately.
async fn deliveries(console: &Console) -> String {
    let mut html = String::from("<h2>Deliveries</h2>\n");
    match read(console, "/events?delivered=false&limit=100").await {
        Ok(Some(page)) => {
            let count = page["data"].as_array().map_or(0, Vec::len);
            let more = if page["next"].is_string() { " or more" } else { "" };
            let _ = writeln!(
                html,
                "<p><a href=\"/events?delivered=false\">{count}{more} events not delivered</a> (retrying, or dead-lettered: recover them once the endpoint is back).</p>"
            );
        }
        Ok(None) => {}
        Err(stop) => {
            let _ = writeln!(html, "<p class=\"error\">{}</p>", esc(&stop.message));
        }
    }
    // The last hour's events not delivered, counted on their own (a page of every event
    // holds only the hour's oldest hundred).
    let since = (OffsetDateTime::now_utc() - time::Duration::hours(1)).format(&Rfc3339).unwrap_or_default();
    let all = format!("/events?since={}&limit=100", segment(&since));
    let failing = format!("{all}&delivered=false");
    let count = |page: Option<Value>| {
        page.map(|page| (page["data"].as_array().map_or(0, Vec::len), if page["next"].is_string() { "+" } else { "" }))
    };
    let (all, failing) = (read(console, &all).await, read(console, &failing).await);
    if let (Some((all, all_more)), Some((failing, failing_more))) =
        (count(all.ok().flatten()), count(failing.ok().flatten()))
    {
        let verdict = match (all, failing) {
            (0, _) => "no events in the last hour".to_owned(),
            (n, 0) => format!("healthy: every one of the last hour's {n}{all_more} events delivered"),
            (n, f) => {
                format!("<strong>{f}{failing_more} of the last hour's {n}{all_more} events not delivered</strong>")
            }
        };
        let _ = writeln!(html, "<p>Merchant endpoint: {verdict}.</p>");
    }
    html
}

/// The ids of every event a transaction can have caused, from what its record shows.
fn candidate_events(record: &Value) -> Vec<String> {
    let provider = record["provider"].as_str().unwrap_or_default();
    let reference = record["reference"].as_str().unwrap_or_default();
    let parse = |v: &Value| serde_json::from_value::<Status>(v.clone()).ok();
    let mut ids = Vec::new();
    for entry in record["history"].as_array().into_iter().flatten() {
        if let Some(status) = parse(&entry["status"]) {
            ids.push(updated_event_id(provider, reference, status));
            if status.is_final() {
                ids.push(event_id(provider, reference, status));
            }
        }
    }
    for conflict in record["conflicts"].as_array().into_iter().flatten() {
        if let Some(status) = parse(&conflict["status"]) {
            ids.push(conflict_event_id(provider, reference, status));
        }
    }
    if let Ok(kind) = serde_json::from_value::<MismatchKind>(record["amount_mismatch"]["kind"].clone()) {
        ids.push(mismatch_event_id(provider, reference, kind));
    }
    for refund in record["refunds"].as_array().into_iter().flatten() {
        let id = refund["id"].as_str().unwrap_or_default();
        for status in [RefundStatus::Pending, RefundStatus::Succeeded, RefundStatus::Failed] {
            ids.push(refund_event_id(provider, reference, id, status));
        }
    }
    ids.dedup();
    ids
}

/// The rows of a transaction's timeline: (when, what, detail), oldest first.
fn timeline(record: &Value) -> Vec<Vec<String>> {
    let mut rows: Vec<(OffsetDateTime, Vec<String>)> = Vec::new();
    let mut add = |at: &Value, what: String, detail: String| {
        if let Some(when) = at.as_str().and_then(|t| OffsetDateTime::parse(t, &Rfc3339).ok()) {
            rows.push((when, vec![show(at), what, detail]));
        }
    };
    let expected = format!("{} {}", text(&record["expected_amount"]), text(&record["expected_currency"]));
    add(&record["registered_at"], "registered by the merchant".into(), esc(&expected));
    for entry in record["history"].as_array().into_iter().flatten() {
        add(
            &entry["received_at"],
            format!("status {}", show(&entry["status"])),
            format!("the provider said {}", show(&entry["provider_status"])),
        );
    }
    for conflict in record["conflicts"].as_array().into_iter().flatten() {
        add(
            &conflict["received_at"],
            "<strong>conflict</strong>".into(),
            format!(
                "the provider said {} ({}), not applied",
                show(&conflict["provider_status"]),
                show(&conflict["status"])
            ),
        );
    }
    for word in record["after_final"].as_array().into_iter().flatten() {
        add(
            &word["received_at"],
            "after the outcome".into(),
            format!("the provider said {}", show(&word["provider_status"])),
        );
    }
    for refund in record["refunds"].as_array().into_iter().flatten() {
        add(
            &refund["updated_at"],
            format!("refund {}", show(&refund["status"])),
            format!("{} {} ({})", show(&refund["id"]), show(&refund["amount"]), show(&refund["provider_status"])),
        );
    }
    add(&record["notified_at"], "the merchant took the outcome".into(), String::new());
    add(
        &record["notification_refused_at"],
        "<strong>the merchant refused the outcome</strong>".into(),
        "410: dead-lettered".into(),
    );
    rows.sort_by_key(|(when, _)| *when);
    rows.into_iter().map(|(_, row)| row).collect()
}

async fn transaction(State(console): Shared, RawQuery(raw): RawQuery) -> Response {
    let params = query(raw);
    let provider = params.get("provider").cloned().unwrap_or_default();
    let reference = params.get("reference").cloned().unwrap_or_default();
    let mut options = String::new();
    for name in &console.providers {
        let selected = if *name == provider { " selected" } else { "" };
        let _ = write!(options, "<option{selected}>{}</option>", esc(name));
    }
    let form = format!(
        "<form method=\"get\" action=\"/tx\" class=\"search\">\
         <label for=\"provider\">Provider</label><select id=\"provider\" name=\"provider\">{options}</select>\
         <label for=\"reference\">Reference</label><input id=\"reference\" name=\"reference\" value=\"{}\" required>\
         <button type=\"submit\">Find</button></form>\n",
        esc(&reference)
    );
    if reference.is_empty() {
        return Html(page("Find a transaction", form)).into_response();
    }
    let path = format!("/transactions/{}/{}", segment(&provider), segment(&reference));
    let record = match read(&console, &path).await {
        Ok(Some(record)) => record,
        Ok(None) => {
            let main = format!("{form}<p role=\"alert\">No transaction {}/{}.</p>", esc(&provider), esc(&reference));
            return (StatusCode::NOT_FOUND, Html(page("Find a transaction", main))).into_response();
        }
        Err(stop) => return failure(&stop),
    };
    let mut main = form;
    let reasons: Vec<String> = record["attention"].as_array().into_iter().flatten().map(show).collect();
    if !reasons.is_empty() {
        let _ = writeln!(main, "<p role=\"status\" class=\"attention\">Needs attention: {}</p>", reasons.join(", "));
    }
    let mut facts: Vec<(&str, String)> =
        vec![("Status", format!("{} (the provider: {})", show(&record["status"]), show(&record["provider_status"])))];
    if !record["amount"].is_null() {
        facts.push(("Amount", format!("{} {}", show(&record["amount"]), show(&record["currency"]))));
    }
    if !record["expected_amount"].is_null() {
        facts
            .push(("Expected", format!("{} {}", show(&record["expected_amount"]), show(&record["expected_currency"]))));
    }
    let check = match record["amount_mismatch"]["kind"].as_str() {
        Some(kind) => format!(
            "<strong>mismatch: {}</strong> (reported {})",
            esc(kind),
            show(&record["amount_mismatch"]["reported"])
        ),
        None => "as expected, or nothing to compare".into(),
    };
    facts.push(("Amount check", check));
    if !record["sync"].is_null() {
        facts.push(("Status sync", format!("{}, next {}", show(&record["sync"]), show(&record["next_sync_at"]))));
    }
    if !record["customer_message"].is_null() {
        facts.push(("Customer message", show(&record["customer_message"])));
    }
    facts.push(("First seen", show(&record["first_seen_at"])));
    if !record["final_at"].is_null() {
        facts.push(("Final", show(&record["final_at"])));
    }
    main.push_str("<dl class=\"facts\">\n");
    for (label, value) in facts {
        let _ = writeln!(main, "<dt>{}</dt><dd>{value}</dd>", esc(label));
    }
    main.push_str("</dl>\n");
    main.push_str(&table("Timeline", &["When", "What", "Detail"], &timeline(&record)));
    main.push_str("<h2>Events sent</h2>\n");
    let mut found = 0;
    for id in candidate_events(&record) {
        let Ok(Some(event)) = read(&console, &format!("/events/{id}")).await else { continue };
        found += 1;
        let _ = writeln!(
            main,
            "<h3>{} · {}</h3><p>{}, {} attempts</p>",
            event_link(&event["id"]),
            show(&event["type"]),
            delivered(&event),
            show(&event["attempt_count"])
        );
        if let Ok(Some(attempts)) = read(&console, &format!("/events/{id}/attempts")).await {
            main.push_str(&attempts_table(&attempts));
        }
        main.push_str(&resend_form(&console, &id));
    }
    if found == 0 {
        main.push_str("<p>No event logged for it yet.</p>\n");
    }
    let title = format!("{}/{}", provider, reference);
    Html(page(&title, main)).into_response()
}

fn attempts_table(attempts: &Value) -> String {
    let rows: Vec<Vec<String>> = attempts["data"]
        .as_array()
        .into_iter()
        .flatten()
        .map(|a| {
            let answer = match a["status"].as_u64() {
                Some(status) => status.to_string(),
                None => show(&a["error"]),
            };
            let start: String = a["response"].as_str().unwrap_or_default().chars().take(80).collect();
            vec![show(&a["at"]), show(&a["kind"]), answer, show(&a["duration_ms"]), esc(&start)]
        })
        .collect();
    if rows.is_empty() {
        return "<p>No attempt yet.</p>\n".into();
    }
    table("Attempts", &["At", "Kind", "Answer", "ms", "Answer's start"], &rows)
}

fn resend_form(console: &Console, id: &str) -> String {
    format!(
        "<form method=\"post\" action=\"/events/{}/resend\"><input type=\"hidden\" name=\"token\" value=\"{}\">\
         <button type=\"submit\" aria-label=\"Resend {}\">Resend</button></form>\n",
        esc(&segment(id)),
        esc(&console.token),
        esc(id)
    )
}

async fn events(State(console): Shared, RawQuery(raw): RawQuery) -> Response {
    let params = query(raw);
    let api = {
        let mut api = url::form_urlencoded::Serializer::new(String::new());
        api.append_pair("limit", "50");
        for name in ["type", "delivered", "since", "after"] {
            if let Some(value) = params.get(name).filter(|v| !v.is_empty()) {
                api.append_pair(name, value);
            }
        }
        api.finish()
    };
    let listed = match read(&console, &format!("/events?{api}")).await {
        Ok(listed) => listed.unwrap_or_default(),
        Err(stop) => return failure(&stop),
    };
    let chosen = |name: &str, value: &str| params.get(name).is_some_and(|v| v == value);
    let mut types = String::from("<option value=\"\">any</option>");
    for kind in EventType::ALL {
        let name = kind.to_string();
        let selected = if chosen("type", &name) { " selected" } else { "" };
        let _ = write!(types, "<option{selected}>{}</option>", esc(&name));
    }
    let mut delivery = String::new();
    for (value, label) in [("", "any"), ("true", "delivered"), ("false", "not delivered")] {
        let selected = if chosen("delivered", value) { " selected" } else { "" };
        let _ = write!(delivery, "<option value=\"{value}\"{selected}>{label}</option>");
    }
    let since = params.get("since").cloned().unwrap_or_default();
    let mut main = format!(
        "<form method=\"get\" action=\"/events\" class=\"search\">\
         <label for=\"type\">Type</label><select id=\"type\" name=\"type\">{types}</select>\
         <label for=\"delivered\">Delivery</label><select id=\"delivered\" name=\"delivered\">{delivery}</select>\
         <label for=\"since\">Since (RFC 3339)</label><input id=\"since\" name=\"since\" value=\"{}\" placeholder=\"2026-12-01T00:00:00Z\">\
         <button type=\"submit\">Filter</button></form>\n",
        esc(&since)
    );
    let rows: Vec<Vec<String>> = listed["data"]
        .as_array()
        .into_iter()
        .flatten()
        .map(|e| {
            vec![
                show(&e["created_at"]),
                event_link(&e["id"]),
                show(&e["type"]),
                transaction_link(&e["data"]["provider"], &e["data"]["reference"]),
                delivered(e),
                show(&e["attempt_count"]),
            ]
        })
        .collect();
    if rows.is_empty() {
        main.push_str("<p>No events.</p>\n");
    } else {
        main.push_str(&table(
            "Events, oldest first",
            &["Created", "Event", "Type", "Transaction", "Delivery", "Attempts"],
            &rows,
        ));
    }
    if let Some(next) = listed["next"].as_str() {
        let mut more = url::form_urlencoded::Serializer::new(String::new());
        for (name, value) in params.iter().filter(|(n, _)| n.as_str() != "after") {
            more.append_pair(name, value);
        }
        more.append_pair("after", next);
        let _ = writeln!(main, "<p><a href=\"/events?{}\">Next page</a></p>", esc(&more.finish()));
    }
    Html(page("Events", main)).into_response()
}

async fn event(State(console): Shared, Path(id): Path<String>, RawQuery(raw): RawQuery) -> Response {
    let event = match read(&console, &format!("/events/{}", segment(&id))).await {
        Ok(Some(event)) => event,
        Ok(None) => {
            return (StatusCode::NOT_FOUND, Html(page("No such event", format!("<p>No event {}.</p>", esc(&id)))))
                .into_response()
        }
        Err(stop) => return failure(&stop),
    };
    let mut main = String::new();
    // A fixed notice: a link cannot make the console say something else.
    if query(raw).get("notice").is_some_and(|n| n == "resent") {
        main.push_str(
            "<p role=\"status\" class=\"notice\">Resent: its new attempt appears below once the notifier has it.</p>\n",
        );
    }
    let _ = writeln!(
        main,
        "<dl class=\"facts\"><dt>Type</dt><dd>{}</dd><dt>Transaction</dt><dd>{}</dd><dt>Created</dt><dd>{}</dd>\
         <dt>Delivery</dt><dd>{}</dd><dt>Attempts</dt><dd>{}</dd></dl>",
        show(&event["type"]),
        transaction_link(&event["data"]["provider"], &event["data"]["reference"]),
        show(&event["created_at"]),
        delivered(&event),
        show(&event["attempt_count"])
    );
    match read(&console, &format!("/events/{}/attempts", segment(&id))).await {
        Ok(Some(attempts)) => main.push_str(&attempts_table(&attempts)),
        Ok(None) => {}
        Err(stop) => return failure(&stop),
    }
    main.push_str(&resend_form(&console, &id));
    let data = serde_json::to_string_pretty(&event["data"]).unwrap_or_default();
    let _ = writeln!(main, "<h2>Its data</h2><pre>{}</pre>", esc(&data));
    Html(page(&format!("Event {id}"), main)).into_response()
}

/// A POST's form fields, once its token is this run's and it comes from this console;
/// `None` otherwise ([`forbidden`]).
fn form(console: &Console, headers: &HeaderMap, body: &Bytes) -> Option<std::collections::BTreeMap<String, String>> {
    let fields: std::collections::BTreeMap<String, String> = url::form_urlencoded::parse(body).into_owned().collect();
    let origin = headers.get("origin").and_then(|o| o.to_str().ok());
    let own = [format!("http://127.0.0.1:{}", console.port), format!("http://localhost:{}", console.port)];
    let same_origin = origin.is_none_or(|o| own.iter().any(|own| own == o));
    let token = fields.get("token").map(String::as_bytes).unwrap_or_default();
    let token_ok: bool = subtle::ConstantTimeEq::ct_eq(token, console.token.as_bytes()).into();
    (same_origin && token_ok).then_some(fields)
}

fn forbidden() -> Response {
    let body = "<p role=\"alert\">This form did not come from this console.</p>".to_owned();
    (StatusCode::FORBIDDEN, Html(page("Refused", body))).into_response()
}

async fn resend(State(console): Shared, Path(id): Path<String>, headers: HeaderMap, body: Bytes) -> Response {
    if form(&console, &headers, &body).is_none() {
        return forbidden();
    }
    let key = super::fresh_key();
    let path = format!("/events/{}/resend", segment(&id));
    let refusal = match console.target.call("POST", &path, None, Some(&key)).await {
        Ok((202, _)) => return Redirect::to(&format!("/events/{}?notice=resent", segment(&id))).into_response(),
        Ok((status, answer)) => super::refused(status, &answer, "resending").message,
        Err(stop) => stop.message,
    };
    let body = format!(
        "<p role=\"alert\" class=\"error\">{}</p><p><a href=\"/events/{}\">Back to the event</a></p>",
        esc(&refusal),
        esc(&segment(&id))
    );
    (StatusCode::BAD_GATEWAY, Html(page("Not resent", body))).into_response()
}

fn recover_page(console: &Console, message: &str) -> String {
    format!(
        "{message}<p>Sends again every event of the window that the merchant has not taken (at most 14 days), \
         batch after batch.</p>\
         <form method=\"post\" action=\"/recover\" class=\"search\"><input type=\"hidden\" name=\"token\" value=\"{}\">\
         <label for=\"since\">Since (RFC 3339)</label><input id=\"since\" name=\"since\" required placeholder=\"2026-12-01T00:00:00Z\">\
         <label for=\"until\">Until (RFC 3339, or now)</label><input id=\"until\" name=\"until\" placeholder=\"now\">\
         <button type=\"submit\">Recover</button></form>\n",
        esc(&console.token)
    )
}

async fn recover_form(State(console): Shared) -> Response {
    Html(page("Recover undelivered events", recover_page(&console, ""))).into_response()
}

async fn recover(State(console): Shared, headers: HeaderMap, body: Bytes) -> Response {
    let Some(fields) = form(&console, &headers, &body) else { return forbidden() };
    let since = fields.get("since").cloned().unwrap_or_default();
    let mut request = serde_json::json!({ "since": since });
    if let Some(until) = fields.get("until").filter(|u| !u.is_empty()) {
        request["until"] = until.clone().into();
    }
    let (mut total, mut batches) = (0_u64, 0_u64);
    let outcome = loop {
        let key = super::fresh_key();
        match console.target.call("POST", "/events/recover", Some(&request), Some(&key)).await {
            Ok((202, answer)) => {
                batches += 1;
                total += answer["resent"].as_u64().unwrap_or(0);
                request["until"] = answer["until"].clone();
                match answer["next"].as_str() {
                    Some(next) => request["after"] = next.into(),
                    None => break Ok(()),
                }
            }
            Ok((status, answer)) => break Err(super::refused(status, &answer, "recovering").message),
            Err(stop) => break Err(stop.message),
        }
    };
    let message = match outcome {
        Ok(()) => format!(
            "<p role=\"status\" class=\"notice\">Recovered: {total} undelivered events resent in {batches} batches, from {} to {}.</p>",
            esc(&since),
            show(&request["until"])
        ),
        Err(message) => format!("<p role=\"alert\" class=\"error\">{}</p>", esc(&message)),
    };
    Html(page("Recover undelivered events", recover_page(&console, &message))).into_response()
}

async fn style() -> Response {
    ([("content-type", "text/css")], STYLE).into_response()
}

const STYLE: &str = "body{font-family:system-ui,sans-serif;margin:0;color:#1b1b1b;background:#fafafa}
header{background:#123;padding:.5rem 1rem}nav a{color:#fff;margin-right:1rem;text-decoration:none;display:inline-block;padding:.25rem 0}
nav a:focus,nav a:hover{text-decoration:underline}main{padding:1rem;max-width:70rem}
h1{font-size:1.4rem}h2{font-size:1.15rem;margin-top:1.5rem}h3{font-size:1rem}
.scroll{overflow-x:auto}table{border-collapse:collapse;width:100%;margin:.5rem 0;background:#fff}
caption{text-align:left;font-weight:600;padding:.25rem 0}th,td{border:1px solid #ccc;padding:.3rem .5rem;text-align:left;vertical-align:top}
th{background:#eef}form.search{display:flex;flex-wrap:wrap;gap:.5rem;align-items:center;margin:.5rem 0}
label{font-weight:600}input,select,button{font-size:1rem;padding:.3rem}button{cursor:pointer}
dl.facts{display:grid;grid-template-columns:max-content 1fr;gap:.25rem 1rem}dt{font-weight:600}dd{margin:0}
.error,.attention{color:#8b0000;font-weight:600}.notice,.calm{color:#0b5d1e}pre{background:#fff;border:1px solid #ccc;padding:.5rem;overflow-x:auto}
@media (max-width:40rem){dl.facts{grid-template-columns:1fr}main{padding:.5rem}}";

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn what_providers_say_is_escaped() {
        assert_eq!(esc("<script>alert('x')</script>&\""), "&lt;script&gt;alert(&#39;x&#39;)&lt;/script&gt;&amp;&quot;");
        let record = serde_json::json!({
            "history": [{"status": "completed", "provider_status": "<img src=x onerror=alert(1)>", "received_at": "2026-12-01T10:00:00Z"}],
        });
        let rows = timeline(&record);
        assert_eq!(rows.len(), 1);
        assert!(rows[0][2].contains("&lt;img") && !rows[0][2].contains("<img"), "{:?}", rows[0]);
    }

    #[test]
    fn a_timeline_is_in_time_order_whatever_the_precision() {
        let record = serde_json::json!({
            "history": [
                {"status": "pending", "provider_status": "P", "received_at": "2026-12-01T10:00:00.5Z"},
                {"status": "completed", "provider_status": "C", "received_at": "2026-12-01T10:00:01Z"}
            ],
            "registered_at": "2026-12-01T10:00:00Z",
            "notified_at": "2026-12-01T10:00:02Z",
        });
        let whens: Vec<String> = timeline(&record).into_iter().map(|row| row[0].clone()).collect();
        assert_eq!(
            whens,
            ["2026-12-01T10:00:00Z", "2026-12-01T10:00:00.5Z", "2026-12-01T10:00:01Z", "2026-12-01T10:00:02Z"]
        );
    }
}
