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
    let env = local_pipeline::DevEnv::load(&Path::new(ROOT).join("local.env.example")).expect("env");
    let providers = local_pipeline::chaos::traffic::start_providers(&env, Path::new(ROOT)).await.expect("simulations");
    let azqr = providers.iter().find(|p| p.name == "azqr").expect("azqr in the catalog");
    let last = *azqr.simulation.sequence().last().expect("a final word");
    let request = azqr.simulation.deliver(&rrn, last, time::OffsetDateTime::now_utc());
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
