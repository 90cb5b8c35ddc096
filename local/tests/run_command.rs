//! The run command's server, as a user starts it: the real `local-pipeline` binary
//! against DynamoDB Local and the SQS server (started by `scripts/test`).

use std::net::TcpListener;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use local_pipeline::{dynamodb_client, sqs_client, DevEnv};
use shared::{Env, Status, TransactionStore};

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

async fn start(prefix: &str) -> (Server, u16) {
    let port = TcpListener::bind("127.0.0.1:0").expect("bind").local_addr().expect("addr").port();
    let child = Command::new(env!("CARGO_BIN_EXE_local-pipeline"))
        .current_dir(concat!(env!("CARGO_MANIFEST_DIR"), "/.."))
        .env("PORT", port.to_string())
        .env("LOCAL_RESOURCE_PREFIX", prefix)
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

#[tokio::test]
async fn a_completed_azqr_webhook_leaves_one_item_and_one_message() {
    let dynamodb = dynamodb_client(&endpoint("DYNAMODB_ENDPOINT"));
    let sqs = sqs_client(&endpoint("SQS_ENDPOINT"));
    let prefix = format!("run{}-", std::process::id());
    let (_server, port) = start(&prefix).await;

    let env = DevEnv::load(concat!(env!("CARGO_MANIFEST_DIR"), "/../local.env.example").as_ref()).expect("env file");
    let key = env.required("AZQR_API_KEY").expect("dev key");
    let url = format!("http://127.0.0.1:{port}/webhooks/azqr/qr/123456789012/status");
    let client = reqwest::Client::new();
    for _ in 0..2 {
        let response = client
            .put(&url)
            .header("apiKey", &key)
            .header("content-type", "application/json")
            .body(r#"{"status":"completed","description":"Payment completed"}"#)
            .send()
            .await
            .expect("request");
        assert_eq!(response.status().as_u16(), 204);
    }
    let wrong = client.put(&url).header("apiKey", "wrong").body(r#"{"status":"expired"}"#).send().await.expect("send");
    assert_eq!(wrong.status().as_u16(), 401);
    let unknown = client.get(format!("http://127.0.0.1:{port}/nope")).send().await.expect("send");
    assert_eq!(unknown.status().as_u16(), 404);

    let store = TransactionStore::new(dynamodb.clone(), format!("{prefix}TransactionsTable"));
    let record = store.get("azqr", "123456789012").await.expect("get").expect("item");
    assert_eq!(record.status, Status::Completed);
    assert_eq!(record.history.len(), 1);
    let scan = dynamodb.scan().table_name(format!("{prefix}TransactionsTable")).send().await.expect("scan");
    assert_eq!(scan.count, 1);

    let queue_url = sqs
        .get_queue_url()
        .queue_name(format!("{prefix}TerminalEventsQueue.fifo"))
        .send()
        .await
        .expect("queue url")
        .queue_url
        .expect("url");
    let received = sqs
        .receive_message()
        .queue_url(&queue_url)
        .max_number_of_messages(10)
        .send()
        .await
        .expect("receive")
        .messages
        .unwrap_or_default();
    assert_eq!(received.len(), 1, "one terminal event for two identical sends");
}
