//! The run command's server, as a user starts it: the real `local-pipeline` binary
//! against DynamoDB Local and the SQS server (started by `scripts/test`).

use std::net::TcpListener;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use local_pipeline::{dynamodb_client, DevEnv};
use shared::{Env, Status, TransactionStore};
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
    let port = TcpListener::bind("127.0.0.1:0").expect("bind").local_addr().expect("addr").port();
    let child = Command::new(env!("CARGO_BIN_EXE_local-pipeline"))
        .current_dir(concat!(env!("CARGO_MANIFEST_DIR"), "/.."))
        .env("PORT", port.to_string())
        .env("LOCAL_RESOURCE_PREFIX", prefix)
        .env("NOTIFY_URL", notify_url)
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

/// `scripts/send`'s binary, run as a user would, from the workspace root.
fn send(port: u16, provider: &str, fixture: &str) -> bool {
    let output = Command::new(env!("CARGO_BIN_EXE_send"))
        .current_dir(concat!(env!("CARGO_MANIFEST_DIR"), "/.."))
        .env("PORT", port.to_string())
        .args([provider, fixture])
        .output()
        .expect("run send");
    String::from_utf8_lossy(&output.stdout).contains("-> 2") && output.status.success()
}

#[tokio::test]
async fn a_completed_payment_on_every_route_is_stored_once_and_delivered_signed() {
    let dynamodb = dynamodb_client(&endpoint("DYNAMODB_ENDPOINT"));
    endpoint("SQS_ENDPOINT");
    let prefix = format!("run{}-", std::process::id());
    let merchant = MockServer::start().await;
    Mock::given(method("POST")).respond_with(ResponseTemplate::new(204)).mount(&merchant).await;
    let (_server, port) = start(&prefix, &merchant.uri()).await;

    let completed = [
        ("azqr", "events/azqr/completed.json", "100000000006"),
        ("pay3", "events/pay3/completed.json", "pay3-order-6:CHECKOUT"),
        ("qitech", "events/qitech/concluded.json", "00000000-0000-4000-8000-000000000003"),
        ("key2pay", "events/key2pay/capture.json", "k2p-track-2"),
        ("pagstar", "events/pagstar/concluida.json", "pagstarconcluida0000000000001"),
    ];
    for (provider, fixture, _) in completed {
        for attempt in 1..=2 {
            assert!(send(port, provider, fixture), "{fixture} (attempt {attempt}) was not acknowledged");
        }
    }
    // Every bad fixture is refused and writes nothing.
    let root = concat!(env!("CARGO_MANIFEST_DIR"), "/..");
    for (provider, _, _) in completed {
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
    for (provider, fixture, reference) in completed {
        let record = store.get(provider, reference).await.expect("get").unwrap_or_else(|| panic!("{fixture}: no item"));
        assert_eq!(record.status, Status::Completed, "{fixture}");
        assert_eq!(record.history.len(), 1, "{fixture}");
    }
    let scan = dynamodb.scan().table_name(&table).send().await.expect("scan");
    assert_eq!(scan.count, 5, "only the completed payments were written");

    // The notifier delivers each outcome to the merchant, signed; the status API shows it.
    let client = reqwest::Client::new();
    let deadline = Instant::now() + Duration::from_secs(60);
    for (provider, fixture, reference) in completed {
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
    // At least once, one id per outcome: the merchant dedupes on webhook-id.
    assert_eq!(ids.len(), 5, "{} deliveries", deliveries.len());
    let status =
        client.get(format!("http://127.0.0.1:{port}/transactions/azqr/999999999999")).send().await.expect("get");
    assert_eq!(status.status().as_u16(), 404);

    let unknown = reqwest::Client::new().get(format!("http://127.0.0.1:{port}/nope")).send().await.expect("send");
    assert_eq!(unknown.status().as_u16(), 404);
}
