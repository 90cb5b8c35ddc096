//! The run command's server, as a user starts it: the real `local-pipeline` binary
//! against DynamoDB Local and the SQS server (started by `scripts/test`).

use std::net::TcpListener;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use local_pipeline::{dynamodb_client, DevEnv};
use shared::model::Status;
use shared::runtime::config::Env;
use shared::storage::TransactionStore;
use wiremock::matchers::method;
use wiremock::{Mock, MockServer, ResponseTemplate};

/// The dev secret the local pipeline signs deliveries with.
static NOTIFY_SECRET: std::sync::LazyLock<String> = std::sync::LazyLock::new(|| {
    let env = DevEnv::load(concat!(env!("CARGO_MANIFEST_DIR"), "/../local.env.example").as_ref()).expect("env file");
    env.required("NOTIFY_SECRET").expect("NOTIFY_SECRET")
});

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

async fn start(prefix: &str, notify_url: &str) -> (Server, u16) {
    start_with(prefix, notify_url, &[]).await
}

async fn start_with(prefix: &str, notify_url: &str, env: &[(&str, &str)]) -> (Server, u16) {
    let port = TcpListener::bind("127.0.0.1:0").expect("bind").local_addr().expect("addr").port();
    let child = Command::new(env!("CARGO_BIN_EXE_local-pipeline"))
        .current_dir(concat!(env!("CARGO_MANIFEST_DIR"), "/.."))
        .env("PORT", port.to_string())
        .env("LOCAL_RESOURCE_PREFIX", prefix)
        .env("NOTIFY_URL", notify_url)
        .envs(env.iter().copied())
        .stdout(Stdio::null())
        .stderr(Stdio::inherit())
        .spawn()
        .expect("spawn local-pipeline");
    let mut server = Server(child);
    let deadline = Instant::now() + Duration::from_secs(60);
    while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
        assert!(server.0.try_wait().expect("wait").is_none(), "local-pipeline exited during start-up");
        assert!(Instant::now() < deadline, "local-pipeline did not listen within 60 s");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    (server, port)
}

/// `scripts/send` (`payhooks send`), run as a user would, from the workspace root.
fn send(port: u16, provider: &str, fixture: &str) -> bool {
    let output = Command::new(env!("CARGO_BIN_EXE_payhooks"))
        .current_dir(concat!(env!("CARGO_MANIFEST_DIR"), "/.."))
        .env("PORT", port.to_string())
        .args(["send", provider, fixture])
        .output()
        .expect("run send");
    String::from_utf8_lossy(&output.stdout).contains("-> 2") && output.status.success()
}

/// What the merchant received: how many deliveries, and their distinct `webhook-id`s,
/// each delivery checked to verify with the notify secret.
async fn signed_deliveries(merchant: &MockServer) -> (usize, std::collections::BTreeSet<String>) {
    let deliveries = merchant.received_requests().await.expect("recorded");
    let verifier = standardwebhooks::Webhook::new(&NOTIFY_SECRET).expect("secret");
    let mut ids = std::collections::BTreeSet::new();
    for delivery in &deliveries {
        let mut headers = http::HeaderMap::new();
        for (name, value) in delivery.headers.iter() {
            headers.insert(name.clone(), value.clone());
        }
        assert!(verifier.verify(&delivery.body, &headers).is_ok(), "every delivery verifies");
        ids.insert(headers["webhook-id"].to_str().expect("ascii").to_owned());
    }
    (deliveries.len(), ids)
}

#[tokio::test]
async fn a_completed_payment_on_every_route_is_stored_once_and_delivered_signed() {
    let dynamodb = dynamodb_client(&endpoint("DYNAMODB_ENDPOINT"));
    endpoint("SQS_ENDPOINT");
    let prefix = format!("run{}-", std::process::id());
    let merchant = MockServer::start().await;
    Mock::given(method("POST")).respond_with(ResponseTemplate::new(204)).mount(&merchant).await;
    let (_server, port) = start(&prefix, &merchant.uri()).await;

    // Each provider's first fixture that completes a payment (from its simulator).
    let fixtures =
        local_pipeline::registry::expectations(std::path::Path::new(concat!(env!("CARGO_MANIFEST_DIR"), "/..")))
            .await
            .expect("the providers' fixtures");
    let completed: Vec<(&str, String, &str)> = local_pipeline::registry::routes()
        .iter()
        .map(|route| {
            let (file, expected) = fixtures
                .iter()
                .find(|(file, e)| {
                    file.starts_with(&format!("{}/", route.name))
                        && e.stored.is_some_and(|(_, status)| status == Status::Completed)
                })
                .unwrap_or_else(|| panic!("{}: no fixture completes a payment", route.name));
            (route.name, format!("events/{file}"), expected.stored.map(|(r, _)| r).unwrap_or_default())
        })
        .collect();
    assert_eq!(completed.len(), provider_catalog::all().len(), "every provider");
    for (provider, fixture, _) in &completed {
        for attempt in 1..=2 {
            assert!(send(port, provider, fixture), "{fixture} (attempt {attempt}) was not acknowledged");
        }
    }
    // Every bad fixture is refused and writes nothing.
    let root = concat!(env!("CARGO_MANIFEST_DIR"), "/..");
    for (provider, _, _) in &completed {
        for entry in std::fs::read_dir(format!("{root}/events/{provider}")).expect("fixtures") {
            let name = entry.expect("entry").file_name().to_string_lossy().into_owned();
            if name.starts_with("bad-") {
                let fixture = format!("events/{provider}/{name}");
                assert!(!send(port, provider, &fixture), "{fixture} was acknowledged");
            }
        }
    }

    let table = format!("{prefix}TransactionsTable");
    let store = TransactionStore::new(dynamodb.clone(), &table);
    for (provider, fixture, reference) in &completed {
        // A webhook that is a hint (Pagstar's) is recorded once its queued hint is confirmed.
        let deadline = Instant::now() + Duration::from_secs(30);
        let record = loop {
            match store.get(provider, reference).await.expect("get") {
                Some(record) => break record,
                None if Instant::now() < deadline => tokio::time::sleep(Duration::from_millis(100)).await,
                None => panic!("{fixture}: no item"),
            }
        };
        assert_eq!(record.status, Status::Completed, "{fixture}");
        assert_eq!(record.history.len(), 1, "{fixture}");
    }
    // Transactions only: the event log (`evt#<id>`, its attempts `evt#<id>#<n>`) and the
    // delivery-health item (`health#merchant`) live in the same table, and carry no rank.
    let scan = dynamodb
        .scan()
        .table_name(&table)
        .filter_expression("attribute_exists(#rank)")
        .expression_attribute_names("#rank", "rank")
        .send()
        .await
        .expect("scan");
    assert_eq!(scan.count as usize, completed.len(), "only the completed payments were written");

    // The notifier delivers each outcome to the merchant, signed; the status API shows it.
    let client = reqwest::Client::new();
    let deadline = Instant::now() + Duration::from_secs(60);
    for (provider, fixture, reference) in &completed {
        loop {
            let url = format!("http://127.0.0.1:{port}/transactions/{provider}/{reference}");
            let response = client.get(&url).send().await.expect("status API");
            assert_eq!(response.status().as_u16(), 200, "{fixture}");
            let record: serde_json::Value = response.json().await.expect("JSON");
            assert_eq!(record["status"], "completed", "{fixture}");
            if record["notified_at"].is_string() {
                assert!(record.get("notification_pending").is_none(), "{fixture}");
                break;
            }
            assert!(Instant::now() < deadline, "{fixture}: never notified");
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
    }
    let (deliveries, ids) = signed_deliveries(&merchant).await;
    // At least once, one id per outcome: the merchant dedupes on webhook-id.
    assert_eq!(ids.len(), completed.len(), "{deliveries} deliveries");
    let status =
        client.get(format!("http://127.0.0.1:{port}/transactions/azqr/999999999999")).send().await.expect("get");
    assert_eq!(status.status().as_u16(), 404);

    let unknown = reqwest::Client::new().get(format!("http://127.0.0.1:{port}/nope")).send().await.expect("send");
    assert_eq!(unknown.status().as_u16(), 404);
}

/// The issue's acceptance run: with `STATUS_SYNC_INTERVAL_SECONDS=2
/// STATUS_SYNC_AFTER_SECONDS=1` and AZQR's query answering `completed` for an rrn that
/// only got `read`, the status API shows `completed` within seconds and the merchant gets
/// one signed event. AZQR_API_URL is set here, so the run command starts no stand-in of
/// its own and asks this one.
#[tokio::test]
async fn the_status_sync_settles_a_transaction_whose_final_webhook_was_lost() {
    endpoint("DYNAMODB_ENDPOINT");
    endpoint("SQS_ENDPOINT");
    let env = DevEnv::load(concat!(env!("CARGO_MANIFEST_DIR"), "/../local.env.example").as_ref()).expect("env file");
    let api_key = env.required("AZQR_API_KEY").expect("AZQR_API_KEY");
    let azqr = azqr_webhook::stand_in::start(&api_key).await.expect("AZQR stand-in");
    let merchant = MockServer::start().await;
    Mock::given(method("POST")).respond_with(ResponseTemplate::new(204)).mount(&merchant).await;
    let prefix = format!("sync{}-", std::process::id());
    let settings =
        [("STATUS_SYNC_INTERVAL_SECONDS", "2"), ("STATUS_SYNC_AFTER_SECONDS", "1"), ("AZQR_API_URL", &azqr.url)];
    let (_server, port) = start_with(&prefix, &merchant.uri(), &settings).await;

    let rrn = format!("{:012}", std::process::id() as u64 * 1000 + 7);
    let client = reqwest::Client::new();
    let read = client
        .put(format!("http://127.0.0.1:{port}/webhooks/azqr/qr/{rrn}/status"))
        .header("apiKey", &api_key)
        .header("content-type", "application/json")
        .body(r#"{"status":"read"}"#)
        .send()
        .await
        .expect("webhook");
    assert_eq!(read.status().as_u16(), 204);
    let set = client
        .put(format!("{}/qr/{rrn}/status", azqr.url))
        .header("apiKey", &api_key)
        .json(&serde_json::json!({"status": "completed"}))
        .send()
        .await
        .expect("stand-in");
    assert_eq!(set.status().as_u16(), 204, "the stand-in is settable over HTTP");

    let started = Instant::now();
    let record = loop {
        let url = format!("http://127.0.0.1:{port}/transactions/azqr/{rrn}");
        let record: serde_json::Value = client.get(&url).send().await.expect("status API").json().await.expect("JSON");
        if record["status"] == "completed" && record["notified_at"].is_string() {
            break record;
        }
        assert!(started.elapsed() < Duration::from_secs(30), "not settled and notified: {record}");
        tokio::time::sleep(Duration::from_millis(200)).await;
    };
    assert_eq!(record["provider_status"], "completed");
    assert!(record.get("sync").is_none() && record.get("next_sync_at").is_none(), "{record}");
    let (_, ids) = signed_deliveries(&merchant).await;
    let expected = shared::model::event_id("azqr", &rrn, Status::Completed);
    assert_eq!(ids.into_iter().collect::<Vec<_>>(), [expected], "one event");
    println!("settled by sync and notified after {:?}", started.elapsed());
}

/// `scripts/invoke`'s binary, run as a user would from the workspace root, on the artifact
/// `sam build` made (scripts/test runs `sam build` first). Returns (exit ok, stdout, stderr).
fn invoke(prefix: &str, args: &[&str]) -> (bool, String, String) {
    invoke_with(prefix, args, &[])
}

/// As [`invoke`], with more environment variables (development values).
fn invoke_with(prefix: &str, args: &[&str], env: &[(&str, &str)]) -> (bool, String, String) {
    let output = Command::new(env!("CARGO_BIN_EXE_invoke"))
        .current_dir(concat!(env!("CARGO_MANIFEST_DIR"), "/.."))
        .env("LOCAL_RESOURCE_PREFIX", prefix)
        .envs(env.iter().copied())
        .args(args)
        .output()
        .expect("run invoke");
    let text = |bytes: &[u8]| String::from_utf8_lossy(bytes).into_owned();
    (output.status.success(), text(&output.stdout), text(&output.stderr))
}

#[tokio::test]
async fn invoke_runs_the_built_artifact_like_sam_local_invoke() {
    let dynamodb = dynamodb_client(&endpoint("DYNAMODB_ENDPOINT"));
    let sqs = local_pipeline::sqs_client(&endpoint("SQS_ENDPOINT"));
    let prefix = format!("invoke{}-", std::process::id());
    let root = std::path::Path::new(concat!(env!("CARGO_MANIFEST_DIR"), "/.."));
    let resources = local_pipeline::Template::load(&root.join("template.yaml"))
        .expect("template")
        .provision(&dynamodb, &sqs, &prefix)
        .await
        .expect("provision");

    let (ok, stdout, stderr) = invoke(&prefix, &["AzqrWebhookFunction", "-e", "events/azqr/bad-wrong-key.json"]);
    assert!(ok, "{stderr}");
    let answer: serde_json::Value = serde_json::from_str(stdout.trim()).expect("the Lambda response on stdout");
    assert_eq!(answer["statusCode"], 401, "{stdout}");
    assert!(stderr.contains("\"webhook rejected\""), "the function's JSON log on stderr: {stderr}");

    let (ok, stdout, stderr) = invoke(&prefix, &["AzqrWebhookFunction", "-e", "events/azqr/completed.json"]);
    assert!(ok, "{stderr}");
    let answer: serde_json::Value = serde_json::from_str(stdout.trim()).expect("JSON");
    assert_eq!(answer["statusCode"], 204, "{stdout}");
    let store = TransactionStore::new(dynamodb.clone(), &resources.table_name);
    let record = store.get("azqr", "100000000006").await.expect("get").expect("item written");
    assert_eq!(record.status, Status::Completed);
    let received = sqs
        .receive_message()
        .queue_url(&resources.queue_url)
        .max_number_of_messages(10)
        .send()
        .await
        .expect("receive")
        .messages
        .unwrap_or_default();
    assert_eq!(received.len(), 1, "one terminal event queued");
    let event: serde_json::Value = serde_json::from_str(received[0].body().expect("body")).expect("JSON");
    assert_eq!(event["type"], "transaction.completed");

    // A function that cannot read its secret does not start: the invoke fails, and says
    // which secret.
    let env_vars = std::env::temp_dir().join(format!("{prefix}env.json"));
    let missing = "arn:aws:secretsmanager:us-east-1:123456789012:secret:no-such-secret-AbCdEf";
    std::fs::write(&env_vars, format!(r#"{{"AzqrWebhookFunction": {{"AZQR_SECRET_ARN": "{missing}"}}}}"#))
        .expect("write");
    let args =
        ["AzqrWebhookFunction", "-e", "events/azqr/completed.json", "--env-vars", env_vars.to_str().expect("utf-8")];
    let (ok, _, stderr) = invoke(&prefix, &args);
    assert!(!ok, "an init failure is a failed invoke: {stderr}");
    assert!(stderr.contains("failed"), "{stderr}");
    let init_error = stderr.lines().find(|l| l.contains("function could not start")).expect("the init error is logged");
    let init_error: serde_json::Value = serde_json::from_str(init_error).expect("as one JSON object");
    assert_eq!(init_error["level"], "ERROR");
    let error = init_error["fields"]["error"].as_str().unwrap_or_default();
    assert!(error.contains("AZQR_SECRET_ARN") && error.contains(missing), "{init_error}");

    // A parameter override reaches the function: an invalid grace window stops it.
    let args = [
        "AzqrWebhookFunction",
        "-e",
        "events/azqr/completed.json",
        "--parameter-overrides",
        "SecretPreviousGraceMinutes=soon",
    ];
    let (ok, _, stderr) = invoke(&prefix, &args);
    assert!(!ok && stderr.contains("SECRET_PREVIOUS_GRACE_MINUTES"), "{stderr}");

    // The secret holds the development value, as the environment gives it: with another
    // key put in the secret the fixture's is refused (its previous version would still
    // verify it for an hour: the override turns that window off).
    let args = [
        "AzqrWebhookFunction",
        "-e",
        "events/azqr/completed.json",
        "--parameter-overrides",
        "SecretPreviousGraceMinutes=0",
    ];
    let (ok, stdout, stderr) = invoke_with(&prefix, &args, &[("AZQR_API_KEY", "another-key-0123456789")]);
    assert!(ok, "{stderr}");
    assert!(stdout.contains("\"statusCode\":401"), "{stdout}");
    assert!(!stderr.contains("another-key-0123456789"), "the secret is never logged");
}

/// The chaos run and the attack run each load the two cores and the shared emulators to
/// their limit: run together, each meets the other's timeouts as its own faults.
static HEAVY_RUN: std::sync::Mutex<()> = std::sync::Mutex::new(());

/// The chaos run's smaller size (issue 16), as `scripts/chaos` runs it: 500 transactions
/// of all providers over HTTP to the real `local-pipeline` binary, every fault kind on the
/// wire and from the merchant, one SIGKILL and restart, and the invariants at the end.
#[test]
fn chaos_run_with_every_fault_and_a_kill_ends_with_no_violation() {
    let _alone = HEAVY_RUN.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
    let (dynamodb, sqs) = (endpoint("DYNAMODB_ENDPOINT"), endpoint("SQS_ENDPOINT"));
    let output = Command::new(env!("CARGO_BIN_EXE_chaos"))
        .current_dir(concat!(env!("CARGO_MANIFEST_DIR"), "/.."))
        .env("DYNAMODB_ENDPOINT", dynamodb)
        .env("SQS_ENDPOINT", sqs)
        .args(["--transactions", "500", "--seed", "7", "--kills", "1", "--heal-timeout", "150"])
        .output()
        .expect("run chaos");
    let stdout = String::from_utf8_lossy(&output.stdout);
    println!("{stdout}");
    assert!(output.status.success(), "chaos failed:\n{stdout}\n{}", String::from_utf8_lossy(&output.stderr));
    let figure = |label: &str| -> usize {
        let line = stdout.lines().find(|l| l.trim_start().starts_with(label)).unwrap_or_else(|| panic!("no {label}"));
        let digits: String =
            line.trim_start()[label.len()..].trim_start().chars().take_while(char::is_ascii_digit).collect();
        digits.parse().unwrap_or_else(|_| panic!("{line}"))
    };
    assert_eq!(figure("transactions"), 500);
    assert_eq!(figure("kills (SIGKILL + restart)"), 1);
    assert_eq!(figure("lost"), 0);
    assert_eq!(figure("violations"), 0);
    assert!(figure("deliveries to the merchant") >= 400, "every final outcome delivered");
    let faults: Vec<&str> = stdout.lines().filter(|l| l.trim_start().starts_with("fault: ")).collect();
    assert_eq!(faults.len(), local_pipeline::chaos::faults::Fault::ALL.len(), "{stdout}");
    for line in faults {
        let count: usize = line.split_whitespace().last().and_then(|n| n.parse().ok()).unwrap_or_default();
        assert!(count > 0, "a fault kind was never injected: {line}");
    }
}

/// The attack run's smaller size (issue 26), as `scripts/attack` runs it, against the real
/// `local-pipeline` binary: every figure as required.
#[test]
fn attack_run_ends_with_every_figure_as_required() {
    let _alone = HEAVY_RUN.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
    let (dynamodb, sqs) = (endpoint("DYNAMODB_ENDPOINT"), endpoint("SQS_ENDPOINT"));
    let output = Command::new(env!("CARGO_BIN_EXE_attack"))
        .current_dir(concat!(env!("CARGO_MANIFEST_DIR"), "/.."))
        .env("DYNAMODB_ENDPOINT", dynamodb)
        .env("SQS_ENDPOINT", sqs)
        .args(["--forgeries", "4", "--flood-rate", "100", "--flood-seconds", "5", "--genuine", "5", "--seed", "7"])
        .output()
        .expect("run attack");
    let stdout = String::from_utf8_lossy(&output.stdout);
    println!("{stdout}");
    assert!(output.status.success(), "attack failed:\n{stdout}\n{}", String::from_utf8_lossy(&output.stderr));
    for figure in [
        "4 sent (401: 4); forged outcomes applied 0; genuine captures applied 4",
        "500 hints in",
        "5 genuine, lost 0",
        "0 of them never delivered",
        "per delivered one at most 0 (must be 0)",
        "violations                     0",
    ] {
        assert!(stdout.contains(figure), "no \"{figure}\" in:\n{stdout}");
    }
}
