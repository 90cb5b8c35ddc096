//! `payhooks` as a user runs it: the real binary against the real `local-pipeline`
//! binary (DynamoDB Local and the SQS server started by `scripts/test`), and its SigV4
//! signatures against botocore's signer, an independent implementation (API Gateway's IAM
//! check cannot run here).

use std::net::TcpListener;
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant, SystemTime};

use local_pipeline::cli::sigv4::{signature_headers, Signer};

const ROOT: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/..");

struct Server(Child);

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn endpoint(name: &str) -> String {
    std::env::var(name).unwrap_or_else(|_| {
        panic!("{name} is not set: run `scripts/test`, which installs and starts DynamoDB Local and the SQS server")
    })
}

fn start_pipeline(prefix: &str) -> (Server, u16) {
    let port = TcpListener::bind("127.0.0.1:0").expect("bind").local_addr().expect("addr").port();
    let child = Command::new(env!("CARGO_BIN_EXE_local-pipeline"))
        .current_dir(ROOT)
        .env("PORT", port.to_string())
        .env("LOCAL_RESOURCE_PREFIX", prefix)
        .env("DYNAMODB_ENDPOINT", endpoint("DYNAMODB_ENDPOINT"))
        .env("SQS_ENDPOINT", endpoint("SQS_ENDPOINT"))
        .env("RUST_LOG", "warn")
        .stdout(Stdio::null())
        .stderr(Stdio::inherit())
        .spawn()
        .expect("spawn local-pipeline");
    let mut server = Server(child);
    let deadline = Instant::now() + Duration::from_secs(60);
    while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
        assert!(server.0.try_wait().expect("wait").is_none(), "local-pipeline exited during start-up");
        assert!(Instant::now() < deadline, "local-pipeline did not listen within 60 s");
        std::thread::sleep(Duration::from_millis(100));
    }
    // The port was free when picked; had another test's server taken it since, this
    // pipeline could not listen and exits: make sure it is ours that answers.
    std::thread::sleep(Duration::from_millis(300));
    assert!(server.0.try_wait().expect("wait").is_none(), "local-pipeline could not listen on {port}");
    (server, port)
}

/// Runs `payhooks args` against the pipeline on `port`: its exit code, stdout, stderr.
fn payhooks(port: u16, args: &[&str]) -> (i32, String, String) {
    let output = Command::new(env!("CARGO_BIN_EXE_payhooks"))
        .current_dir(ROOT)
        .env("PORT", port.to_string())
        .args(args)
        .output()
        .expect("run payhooks");
    let text = |bytes: &[u8]| String::from_utf8_lossy(bytes).into_owned();
    (output.status.code().unwrap_or(-1), text(&output.stdout), text(&output.stderr))
}

fn json(text: &str) -> serde_json::Value {
    serde_json::from_str(text).unwrap_or_else(|e| panic!("not JSON ({e}): {text}"))
}

fn unique() -> u64 {
    SystemTime::now().duration_since(SystemTime::UNIX_EPOCH).expect("clock").as_nanos() as u64 % 1_000_000_000_000
}

/// Every command of this slice, with `--json` parsed and the exit codes: register, get,
/// a genuine webhook through the pipeline, then the event listed, read, its attempts,
/// resent (once per idempotency key) and recovered; and the errors.
#[tokio::test]
async fn payhooks_finds_registers_and_resends_against_the_local_pipeline() {
    let (_server, port) = start_pipeline(&format!("payhooks-{}-", std::process::id()));
    let rrn = format!("{:012}", unique());

    let (code, out, err) = payhooks(port, &["tx", "register", "azqr", &rrn, "--amount", "100.00", "--currency", "BRL"]);
    assert_eq!(code, 0, "{out}{err}");
    assert!(out.contains(&format!("registered: azqr/{rrn}")), "{out}");
    let (code, out, _) = payhooks(port, &["--json", "tx", "get", "azqr", &rrn]);
    assert_eq!(code, 0);
    let record = json(&out);
    assert_eq!((record["status"].as_str(), record["expected_amount"].as_str()), (Some("created"), Some("100.00")));

    // AZQR says the payment completed: its simulator's webhook, over HTTP to the pipeline.
    azqr_pays(port, &rrn).await;
    let (code, out, _) = payhooks(port, &["tx", "get", "azqr", &rrn]);
    assert_eq!(code, 0);
    assert!(out.contains(&format!("azqr/{rrn}  completed")), "{out}");
    assert!(out.contains("RECEIVED") && out.contains("PROVIDER SAID"), "the history as a table: {out}");

    // The event, once the notifier tried it.
    let deadline = Instant::now() + Duration::from_secs(60);
    let event = loop {
        let (code, out, err) =
            payhooks(port, &["--json", "events", "list", "--type", "transaction.completed", "--all"]);
        assert_eq!(code, 0, "{err}");
        let listed = json(&out);
        let found =
            listed["data"].as_array().expect("data").iter().find(|e| e["data"]["reference"] == rrn.as_str()).cloned();
        if let Some(event) = found.filter(|e| e["attempt_count"].as_u64() > Some(0)) {
            break event;
        }
        assert!(Instant::now() < deadline, "no attempted event for azqr/{rrn}: {out}");
        tokio::time::sleep(Duration::from_millis(500)).await;
    };
    let id = event["id"].as_str().expect("id").to_owned();
    let (code, out, _) = payhooks(port, &["events", "list", "--type", "transaction.completed", "--all"]);
    assert_eq!(code, 0);
    assert!(out.starts_with("ID") && out.contains(&id), "a table with the event: {out}");
    let (code, out, _) = payhooks(port, &["--json", "events", "get", &id]);
    assert_eq!((code, json(&out)["id"].as_str()), (0, Some(id.as_str())));
    let (code, out, _) = payhooks(port, &["--json", "events", "attempts", &id]);
    assert_eq!(code, 0);
    assert!(!json(&out)["data"].as_array().expect("data").is_empty(), "{out}");
    let (code, out, _) = payhooks(port, &["events", "attempts", &id]);
    assert!(code == 0 && out.starts_with("AT"), "{out}");

    // Resend under one key twice: one resend; a new key within the cooldown: 429, exit 1.
    let key = format!("test-{}", unique());
    for _ in 0..2 {
        let (code, out, err) = payhooks(port, &["events", "resend", &id, "--idempotency-key", &key]);
        assert_eq!(code, 0, "{out}{err}");
        assert!(out.contains(&format!("resent {id}")), "{out}");
    }
    let (code, _, err) = payhooks(port, &["events", "resend", &id]);
    assert_eq!(code, 1, "{err}");
    assert!(err.contains("429 resend_cooldown"), "{err}");

    // Recover a window: its summary, and the progress on stderr.
    let since = time::OffsetDateTime::now_utc() - time::Duration::minutes(10);
    let since = since.format(&time::format_description::well_known::Rfc3339).expect("time");
    let (code, out, err) = payhooks(port, &["--json", "events", "recover", "--since", &since]);
    assert_eq!(code, 0, "{err}");
    assert!(json(&out)["batches"].as_u64() >= Some(1), "{out}");
    assert!(err.contains("batch 1:"), "progress: {err}");

    // The errors: not found (3), refused (1), usage (2), unreachable (4).
    let (code, _, err) = payhooks(port, &["tx", "get", "azqr", "999999999999"]);
    assert_eq!(code, 3, "{err}");
    assert!(err.contains("404 not_found"), "{err}");
    let (code, _, err) = payhooks(port, &["tx", "get", "azqr", "not-an-rrn"]);
    assert_eq!(code, 1, "{err}");
    assert!(err.contains("400 invalid_field"), "{err}");
    let (code, _, err) = payhooks(port, &["tx", "fly"]);
    assert_eq!(code, 2, "{err}");
    assert!(err.contains("usage: payhooks"), "{err}");
    let closed = TcpListener::bind("127.0.0.1:0").expect("bind").local_addr().expect("addr").port();
    let (code, _, err) = payhooks(closed, &["tx", "get", "azqr", &rrn]);
    assert_eq!(code, 4, "{err}");
    assert!(err.contains("is it running"), "{err}");
}

/// The signature of each request equals botocore's (`SigV4Auth`, as the AWS CLI signs)
/// for the same request, credentials and time.
#[test]
fn payhooks_signs_as_botocore_signs() {
    let python = Path::new(ROOT).join(".local/venv/bin/python");
    assert!(
        python.exists(),
        "{} is missing: run `scripts/test` (it installs aws-sam-cli, and with it botocore, into .local/venv)",
        python.display()
    );
    let signer = Signer {
        credentials: aws_credential_types::Credentials::new(
            "AKIDEXAMPLE",
            "wJalrXUtnFEMI/K7MDENG+bPxRfiCYEXAMPLEKEY",
            Some("session-token-example".into()),
            None,
            "test",
        ),
        region: "sa-east-1".into(),
    };
    let base = "https://a1b2c3d4e5.execute-api.sa-east-1.amazonaws.com";
    let host = "a1b2c3d4e5.execute-api.sa-east-1.amazonaws.com";
    let at = SystemTime::UNIX_EPOCH + Duration::from_secs(1_796_040_000); // 2026-11-30T12:00:00Z
    /// A request: method, URL, headers (host first), body.
    type Case<'a> = (&'a str, String, Vec<(&'a str, &'a str)>, &'a [u8]);
    let requests: Vec<Case> = vec![
        ("GET", format!("{base}/transactions/azqr/123456789012"), vec![("host", host)], b""),
        (
            "GET",
            format!("{base}/events?type=transaction.completed&delivered=false&since=2026-11-30T00%3A00%3A00Z"),
            vec![("host", host)],
            b"",
        ),
        (
            "POST",
            format!("{base}/events/recover"),
            vec![("host", host), ("content-type", "application/json"), ("idempotency-key", "payhooks-1-2")],
            br#"{"since":"2026-11-30T00:00:00Z"}"#,
        ),
        (
            "PUT",
            format!("{base}/transactions/pay3/order-1%3ACHECKOUT"),
            vec![("host", host), ("content-type", "application/json")],
            b"{}",
        ),
    ];
    let mut ours = Vec::new();
    let mut cases = Vec::new();
    for (method, url, headers, body) in &requests {
        let signed = signature_headers(&signer, method, url, headers, body, at).expect("signed");
        let authorization =
            signed.iter().find(|(n, _)| n == "authorization").map(|(_, v)| v.clone()).expect("authorization");
        ours.push(authorization);
        let headers: serde_json::Map<String, serde_json::Value> =
            headers.iter().filter(|(n, _)| *n != "host").map(|(n, v)| ((*n).to_owned(), (*v).into())).collect();
        cases.push(serde_json::json!({ "method": method, "url": url, "headers": headers, "body": String::from_utf8_lossy(body) }));
    }
    let script = r#"
import datetime, json, sys
from unittest import mock
from botocore.auth import SigV4Auth
from botocore.awsrequest import AWSRequest
from botocore.credentials import Credentials
cases = json.load(sys.stdin)
credentials = Credentials("AKIDEXAMPLE", "wJalrXUtnFEMI/K7MDENG+bPxRfiCYEXAMPLEKEY", "session-token-example")
at = datetime.datetime(2026, 11, 30, 12, 0, 0)
out = []
for case in cases:
    request = AWSRequest(method=case["method"], url=case["url"], data=case["body"].encode(), headers=case["headers"])
    with mock.patch("botocore.auth.get_current_datetime", return_value=at):
        SigV4Auth(credentials, "execute-api", "sa-east-1").add_auth(request)
    out.append(request.headers["Authorization"])
print(json.dumps(out))
"#;
    let mut child = Command::new(&python)
        .args(["-c", script])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("python");
    std::io::Write::write_all(
        child.stdin.as_mut().expect("stdin"),
        serde_json::Value::from(cases).to_string().as_bytes(),
    )
    .expect("write");
    let output = child.wait_with_output().expect("botocore");
    assert!(output.status.success(), "botocore: {}", String::from_utf8_lossy(&output.stderr));
    let theirs: Vec<String> = serde_json::from_slice(&output.stdout).expect("JSON");
    assert_eq!(ours.len(), 4);
    for ((ours, theirs), (method, url, ..)) in ours.iter().zip(&theirs).zip(&requests) {
        assert_eq!(ours, theirs, "{method} {url}");
    }
}

/// Sends AZQR's final word about `rrn` to the pipeline on `port`, as AZQR does.
async fn azqr_pays(port: u16, rrn: &str) {
    let env = local_pipeline::DevEnv::load(&Path::new(ROOT).join("local.env.example")).expect("env");
    let providers = local_pipeline::chaos::traffic::start_providers(&env, Path::new(ROOT)).await.expect("simulations");
    let azqr = providers.iter().find(|p| p.name == "azqr").expect("azqr in the catalog");
    let last = *azqr.simulation.sequence().last().expect("a final word");
    let request = azqr.simulation.deliver(rrn, last, time::OffsetDateTime::now_utc());
    let query: Vec<(&String, &String)> = request.query.iter().collect();
    let status = reqwest::Client::new()
        .request(request.method.clone(), format!("http://127.0.0.1:{port}{}", azqr.route.path_of(&request)))
        .query(&query)
        .headers(request.headers.clone())
        .body(request.body.clone())
        .send()
        .await
        .expect("webhook")
        .status();
    assert!(status.is_success(), "{status}");
}

/// A developer's webhook handler: verifies each delivery's signature with the secret it
/// is given, counts the deliveries of each event id, and refuses (500) those about
/// references it is told to refuse.
#[derive(Default)]
struct Receiver {
    received: std::sync::Mutex<std::collections::BTreeMap<String, u32>>,
    unverified: std::sync::atomic::AtomicU32,
    refuse: std::sync::Mutex<Vec<String>>,
}

async fn start_receiver(secret: &str) -> (std::sync::Arc<Receiver>, String) {
    use axum::http::{HeaderMap, StatusCode};
    let verifier = std::sync::Arc::new(standardwebhooks::Webhook::new(secret).expect("secret"));
    let receiver = std::sync::Arc::new(Receiver::default());
    let state = std::sync::Arc::clone(&receiver);
    let app = axum::Router::new().route(
        "/hooks",
        axum::routing::post(move |headers: HeaderMap, body: axum::body::Bytes| {
            let state = std::sync::Arc::clone(&state);
            let verified = verifier.verify(&body, &headers).is_ok();
            async move {
                if !verified {
                    state.unverified.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
                    return StatusCode::UNAUTHORIZED;
                }
                let event: serde_json::Value = serde_json::from_slice(&body).expect("JSON");
                assert_eq!(headers["webhook-id"].to_str().ok(), event["id"].as_str(), "webhook-id is the event id");
                assert!(event.get("attempt_count").is_none(), "the body is the event as delivered: {event}");
                *state.received.lock().unwrap().entry(event["id"].as_str().expect("id").to_owned()).or_default() += 1;
                let reference = event["data"]["reference"].as_str().unwrap_or_default().to_owned();
                if state.refuse.lock().unwrap().contains(&reference) {
                    StatusCode::INTERNAL_SERVER_ERROR
                } else {
                    StatusCode::NO_CONTENT
                }
            }
        }),
    );
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let url = format!("http://{}/hooks", listener.local_addr().expect("addr"));
    tokio::spawn(async move { axum::serve(listener, app).await.expect("receiver") });
    (receiver, url)
}

/// A running `payhooks` whose output lines are collected as they come.
struct Running {
    child: Child,
    lines: std::sync::Arc<std::sync::Mutex<Vec<String>>>,
}

fn spawn_payhooks(port: u16, args: &[&str]) -> Running {
    let mut child = Command::new(env!("CARGO_BIN_EXE_payhooks"))
        .current_dir(ROOT)
        .env("PORT", port.to_string())
        .args(args)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn payhooks");
    let lines = std::sync::Arc::new(std::sync::Mutex::new(Vec::new()));
    for stream in [
        Box::new(child.stdout.take().expect("stdout")) as Box<dyn std::io::Read + Send>,
        Box::new(child.stderr.take().expect("stderr")),
    ] {
        let lines = std::sync::Arc::clone(&lines);
        std::thread::spawn(move || {
            for line in std::io::BufRead::lines(std::io::BufReader::new(stream)).map_while(Result::ok) {
                lines.lock().unwrap().push(line);
            }
        });
    }
    Running { child, lines }
}

impl Running {
    fn output(&self) -> String {
        self.lines.lock().unwrap().join("\n")
    }

    /// Asks it to stop (SIGTERM, as a terminal's Ctrl-C or a service manager would) and
    /// waits: it must stop cleanly.
    fn stop(mut self) -> String {
        let status = Command::new("kill").args(["-TERM", &self.child.id().to_string()]).status().expect("kill");
        assert!(status.success());
        let deadline = Instant::now() + Duration::from_secs(30);
        let exit = loop {
            if let Some(exit) = self.child.try_wait().expect("wait") {
                break exit;
            }
            assert!(Instant::now() < deadline, "payhooks did not stop within 30 s of SIGTERM: {}", self.output());
            std::thread::sleep(Duration::from_millis(100));
        };
        std::thread::sleep(Duration::from_millis(200)); // the readers drain the pipes
        let output = self.output();
        assert!(exit.success(), "payhooks stopped with {exit}: {output}");
        output
    }
}

async fn wait_for(what: &str, mut done: impl FnMut() -> bool) {
    let deadline = Instant::now() + Duration::from_secs(90);
    while !done() {
        assert!(Instant::now() < deadline, "{what} within 90 s");
        tokio::time::sleep(Duration::from_millis(300)).await;
    }
}

/// `listen` forwards every event, signed, to a receiver that verifies it; stopped and
/// started again it forwards what was created meanwhile, none twice; a forward the
/// receiver refuses is shown as failed. `events list --follow` prints events as they come.
#[tokio::test]
async fn payhooks_listen_forwards_every_event_once_across_a_restart() {
    let (_server, port) = start_pipeline(&format!("listen-{}-", std::process::id()));
    let dir = std::env::temp_dir().join(format!("payhooks-listen-{}", unique()));
    let cursor = dir.join("cursor.json");
    let cursor = cursor.to_str().expect("path");
    let start = time::OffsetDateTime::now_utc().format(&time::format_description::well_known::Rfc3339).expect("time");

    let (code, secret, err) = payhooks(port, &["listen", "--print-secret", "--cursor", cursor, "--since", &start]);
    assert_eq!(code, 0, "{err}");
    let secret = secret.trim().to_owned();
    assert!(secret.starts_with("whsec_"), "{secret}");
    let (again, _, _) = payhooks(port, &["listen", "--print-secret", "--cursor", cursor]);
    assert_eq!(again, 0);
    assert_eq!(
        payhooks(port, &["listen", "--print-secret", "--cursor", cursor]).1.trim(),
        secret,
        "kept in the cursor"
    );
    let (receiver, url) = start_receiver(&secret).await;

    let first: Vec<String> = (0..3).map(|i| format!("{:012}", unique() + i)).collect();
    let later: Vec<String> = (10..13).map(|i| format!("{:012}", unique() + i)).collect();
    receiver.refuse.lock().unwrap().push(later[0].clone());
    let ids_about = |references: &[String]| {
        let (code, out, err) = payhooks(port, &["--json", "events", "list", "--since", &start, "--all"]);
        assert_eq!(code, 0, "{err}");
        json(&out)["data"]
            .as_array()
            .expect("data")
            .iter()
            .filter(|e| references.iter().any(|r| e["data"]["reference"] == r.as_str()))
            .map(|e| e["id"].as_str().expect("id").to_owned())
            .collect::<Vec<String>>()
    };

    let follow = spawn_payhooks(port, &["--json", "events", "list", "--follow", "--since", &start]);
    let listen = spawn_payhooks(port, &["listen", "--forward-to", &url, "--cursor", cursor]);
    for rrn in &first {
        azqr_pays(port, rrn).await;
    }
    let received = |ids: &[String]| {
        let received = receiver.received.lock().unwrap();
        ids.iter().all(|id| received.contains_key(id))
    };
    let mut first_ids = Vec::new();
    wait_for("the first payments' events forwarded", || {
        first_ids = ids_about(&first);
        first_ids.len() >= first.len() && received(&first_ids)
    })
    .await;
    wait_for("the follower printing them", || first_ids.iter().all(|id| follow.output().contains(id.as_str()))).await;
    let followed = follow.stop();
    let printed: Vec<serde_json::Value> = followed.lines().filter(|l| l.starts_with('{')).map(json).collect();
    assert!(first_ids.iter().all(|id| printed.iter().filter(|e| e["id"] == id.as_str()).count() == 1), "{followed}");
    let shown = listen.stop();
    assert!(shown.contains("Signing secret: whsec_") && shown.contains("Stopped;"), "{shown}");
    // The cursor holds the secret: its owner's only.
    use std::os::unix::fs::PermissionsExt;
    let mode = std::fs::metadata(cursor).expect("cursor").permissions().mode() & 0o777;
    assert_eq!(mode, 0o600, "the cursor file's mode");

    // Stopped: the later payments' events are made meanwhile, then the listener resumes.
    for rrn in &later {
        azqr_pays(port, rrn).await;
    }
    let mut later_ids = Vec::new();
    wait_for("the later payments' events in the feed", || {
        later_ids = ids_about(&later);
        later_ids.len() >= later.len()
    })
    .await;
    let listen = spawn_payhooks(port, &["listen", "--forward-to", &url, "--cursor", cursor]);
    wait_for("the later events forwarded after the restart", || received(&later_ids)).await;
    tokio::time::sleep(Duration::from_secs(3)).await; // a few more polls: nothing more may come
    let shown = listen.stop();

    let received = receiver.received.lock().unwrap().clone();
    let all: Vec<String> = ids_about(&[first.clone(), later.clone()].concat());
    assert_eq!(received.keys().cloned().collect::<Vec<_>>().len(), received.len());
    for id in &all {
        assert_eq!(received.get(id), Some(&1), "{id}: forwarded exactly once across the restart ({received:?})");
    }
    assert_eq!(receiver.unverified.load(std::sync::atomic::Ordering::SeqCst), 0, "every signature verified");
    let refused_line = shown.lines().find(|l| l.contains(&later[0])).unwrap_or_default();
    assert!(refused_line.contains("-> 500") && refused_line.contains("FAILED"), "the failed forward shown: {shown}");
    assert!(shown.lines().any(|l| l.contains(&later[1]) && l.contains("-> 204")), "{shown}");
    let _ = std::fs::remove_dir_all(&dir);
}

/// `trigger` sends a provider's sequence, signed as the provider signs, and the
/// transaction it names is there; `--set` edits a field and signs again; the errors.
#[tokio::test]
async fn payhooks_trigger_sends_a_providers_sequence() {
    let (_server, port) = start_pipeline(&format!("trigger-{}-", std::process::id()));
    let (code, out, err) = payhooks(port, &["trigger", "qitech", "paid"]);
    assert_eq!(code, 0, "{out}{err}");
    assert!(!out.lines().any(|l| l.contains("REFUSED")), "{out}");
    let command = out.lines().find_map(|l| l.strip_prefix("transaction: payhooks ")).expect("the transaction named");
    let words: Vec<&str> = command.split_whitespace().collect();
    let (code, got, err) = payhooks(port, &[&["--json"], words.as_slice()].concat());
    assert_eq!(code, 0, "{err}");
    assert!(json(&got)["final_at"].is_string(), "the payment reached its final status: {got}");

    let (code, out, err) = payhooks(port, &["trigger", "azqr", "conflict"]);
    assert_eq!(code, 0, "{out}{err}");
    let command = out.lines().find_map(|l| l.strip_prefix("transaction: payhooks ")).expect("named");
    let words: Vec<&str> = command.split_whitespace().collect();
    let (_, got, _) = payhooks(port, &[&["--json"], words.as_slice()].concat());
    assert!(!json(&got)["conflicts"].as_array().expect("conflicts").is_empty(), "a conflict recorded: {got}");
    assert_eq!(json(&got)["attention"], serde_json::json!(["conflict"]), "{got}");
    // It needs a human: listed by `tx attention`, as a table and as JSON.
    let reference = words.last().expect("reference").to_string();
    let (code, out, err) = payhooks(port, &["--json", "tx", "attention", "--all"]);
    assert_eq!(code, 0, "{err}");
    let listed = json(&out);
    let entry = listed["data"].as_array().expect("data").iter().find(|e| e["reference"] == reference.as_str());
    assert_eq!(entry.map(|e| e["attention"].clone()), Some(serde_json::json!(["conflict"])), "{out}");
    let (code, out, _) = payhooks(port, &["tx", "attention"]);
    assert!(code == 0 && out.starts_with("FLAGGED") && out.contains(&format!("azqr/{reference}")), "{out}");

    // An edited body is signed again: accepted, and the edit is what was applied.
    let (code, out, err) =
        payhooks(port, &["trigger", "qitech", "paid", "--set", "data.payment_instrument_entry_amount=123.45"]);
    assert_eq!(code, 0, "{out}{err}");
    let command = out.lines().find_map(|l| l.strip_prefix("transaction: payhooks ")).expect("named");
    let words: Vec<&str> = command.split_whitespace().collect();
    let (_, got, _) = payhooks(port, &[&["--json"], words.as_slice()].concat());
    assert_eq!(json(&got)["amount"], "123.45", "{got}");

    let (code, _, err) = payhooks(port, &["trigger", "azqr", "no-such-scenario"]);
    assert!(code == 2 && err.contains("conflict"), "{err}");
    let (code, _, err) = payhooks(port, &["trigger", "nobody", "paid"]);
    assert!(code == 2 && err.contains("azqr"), "{err}");
    let (code, _, err) = payhooks(port, &["trigger", "pagstar", "paid"]);
    assert!(code == 2 && err.contains("hint"), "{err}");
}

/// `--stack` finds the stack's API in its CloudFormation outputs (moto's CloudFormation,
/// named by `AWS_ENDPOINT_URL_CLOUDFORMATION` as the AWS CLI is pointed at it, the call
/// signed with the credentials of the environment): requests then go to that API.
#[tokio::test]
async fn payhooks_finds_a_stacks_api_in_its_outputs() {
    let (_server, port) = start_pipeline(&format!("stack-{}-", std::process::id()));
    let python = Path::new(ROOT).join(".local/venv/bin/python");
    let stack = format!("payhooks-test-{}", unique());
    let script = r#"
import json, sys, boto3
stack, endpoint, api = sys.argv[1:4]
template = {"Resources": {"Queue": {"Type": "AWS::SQS::Queue"}},
            "Outputs": {"WebhookApiUrl": {"Value": api}}}
boto3.client("cloudformation", endpoint_url=endpoint, region_name="us-east-1",
             aws_access_key_id="test", aws_secret_access_key="test").create_stack(
    StackName=stack, TemplateBody=json.dumps(template))
"#;
    let created = Command::new(&python)
        .args(["-c", script, &stack, &endpoint("SQS_ENDPOINT"), &format!("http://127.0.0.1:{port}")])
        .output()
        .expect("python");
    assert!(created.status.success(), "create_stack: {}", String::from_utf8_lossy(&created.stderr));
    let run = |args: &[&str]| {
        let output = Command::new(env!("CARGO_BIN_EXE_payhooks"))
            .current_dir(ROOT)
            .env("AWS_ENDPOINT_URL_CLOUDFORMATION", endpoint("SQS_ENDPOINT"))
            .env("AWS_ACCESS_KEY_ID", "test")
            .env("AWS_SECRET_ACCESS_KEY", "test")
            .env_remove("AWS_PROFILE")
            .env("PORT", "1") // not the local pipeline's: only the stack names it
            .args(args)
            .output()
            .expect("payhooks");
        let text = |bytes: &[u8]| String::from_utf8_lossy(bytes).into_owned();
        (output.status.code().unwrap_or(-1), text(&output.stdout), text(&output.stderr))
    };
    let rrn = format!("{:012}", unique());
    let (code, out, err) = run(&["--stack", &stack, "--region", "us-east-1", "tx", "register", "azqr", &rrn]);
    assert_eq!(code, 0, "{out}{err}");
    let (code, out, err) = run(&["--stack", &stack, "--region", "us-east-1", "--json", "tx", "get", "azqr", &rrn]);
    assert_eq!((code, json(&out)["reference"].as_str()), (0, Some(rrn.as_str())), "{err}");
    let (code, _, err) = run(&["--stack", "no-such-stack", "--region", "us-east-1", "tx", "get", "azqr", &rrn]);
    assert!(code == 4 && err.contains("DescribeStacks no-such-stack"), "{code}: {err}");
    let (code, _, err) = run(&["--stack", &stack, "--api", "https://x.example", "tx", "get", "azqr", &rrn]);
    assert_eq!(code, 2, "{err}");
}

/// The console in a real browser (Debian's Chromium, headless, over WebDriver; the
/// checks in `console_browser.py`): what needs attention lists a conflict, the
/// transaction's timeline shows it, an event resent shows its new attempt, a window is
/// recovered; every page labelled, without JavaScript, and fitting a phone's width. Each
/// page's screenshot is kept in target/console-screenshots/.
#[tokio::test]
async fn payhooks_console_in_a_real_browser() {
    for tool in ["/usr/bin/chromium", "/usr/bin/chromedriver"] {
        assert!(
            Path::new(tool).exists(),
            "{tool} is missing: run `scripts/test`, which installs it (apt-get install chromium chromium-driver)"
        );
    }
    let python = Path::new(ROOT).join(".local/venv/bin/python");
    let (_server, port) = start_pipeline(&format!("console-{}-", std::process::id()));
    let (code, out, err) = payhooks(port, &["trigger", "azqr", "conflict"]);
    assert_eq!(code, 0, "{out}{err}");
    let command = out.lines().find_map(|l| l.strip_prefix("transaction: payhooks ")).expect("named");
    let reference = command.split_whitespace().last().expect("reference").to_owned();
    wait_for("the outcome's first delivery attempt", || {
        let (_, out, _) = payhooks(port, &["--json", "events", "list", "--type", "transaction.completed", "--all"]);
        json(&out)["data"].as_array().is_some_and(|events| {
            events.iter().any(|e| e["data"]["reference"] == reference.as_str() && e["attempt_count"].as_u64() > Some(0))
        })
    })
    .await;

    // Port 0: the console takes a free port and says which (no race with another test's).
    let console = spawn_payhooks(port, &["console", "--port", "0"]);
    let mut console_port = 0;
    wait_for("the console saying where it listens", || {
        let said = console.output();
        let port = said.split("http://127.0.0.1:").nth(1).and_then(|rest| rest.split('/').next()?.parse().ok());
        console_port = port.unwrap_or(0);
        console_port != 0
    })
    .await;
    // Not its own host (DNS rebinding), and a form from elsewhere: refused.
    let client = reqwest::Client::new();
    let rebound =
        client.get(format!("http://127.0.0.1:{console_port}/")).header("host", "evil.example:80").send().await;
    assert_eq!(rebound.expect("answer").status().as_u16(), 421);
    let forged = client
        .post(format!("http://127.0.0.1:{console_port}/recover"))
        .header("origin", "https://evil.example")
        .form(&[("since", "2026-12-01T00:00:00Z"), ("token", "guess")])
        .send()
        .await
        .expect("answer");
    assert_eq!(forged.status().as_u16(), 403);
    // Another site's page (an image, a form): refused; no page may be framed.
    let cross =
        client.get(format!("http://127.0.0.1:{console_port}/")).header("sec-fetch-site", "cross-site").send().await;
    assert_eq!(cross.expect("answer").status().as_u16(), 403);
    let own = client.get(format!("http://127.0.0.1:{console_port}/recover")).send().await.expect("answer");
    assert_eq!(own.headers()["x-frame-options"], "DENY");
    assert!(own.headers()["content-security-policy"].to_str().expect("text").contains("frame-ancestors 'none'"));

    let shots = Path::new(ROOT).join("target/console-screenshots");
    let script = Path::new(ROOT).join("local/tests/console_browser.py");
    let url = format!("http://127.0.0.1:{console_port}");
    let browser = tokio::task::spawn_blocking(move || {
        Command::new(python).arg(script).args([url.as_str(), "azqr", reference.as_str()]).arg(&shots).output()
    })
    .await
    .expect("join")
    .expect("python");
    let shown = console.stop();
    assert!(
        browser.status.success(),
        "{}{}\nconsole: {shown}",
        String::from_utf8_lossy(&browser.stdout),
        String::from_utf8_lossy(&browser.stderr)
    );
    for page in ["needs-attention", "needs-attention-phone", "transaction", "events", "event", "recover"] {
        let shot = Path::new(ROOT).join(format!("target/console-screenshots/{page}.png"));
        assert!(std::fs::metadata(&shot).is_ok_and(|m| m.len() > 1_000), "{} kept", shot.display());
    }
}
