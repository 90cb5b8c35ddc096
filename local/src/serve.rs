//! Serves webhook handlers over plain HTTP, the way API Gateway would call them:
//! the same route paths, path parameters and query string, the same handler code.

use std::collections::HashMap;
use std::future::Future;
use std::sync::Arc;

use axum::extract::{Path, Request};
use axum::response::{IntoResponse, Response};
use axum::routing::{on, MethodFilter};
use axum::Router;
use shared::pipeline::{HintRelay, Inbound, Provider, Webhook, WritePath};
use shared::runtime::config::{ConfigError, Env};
use shared::storage::HintQueue;

use crate::triggers::HintConsumer;
use provider_catalog::EachSimulator;
use time::OffsetDateTime;

/// A request may carry its id in this header (`scripts/chaos` does); every AWS request
/// made while serving it carries it too, so that a fault proxy in front of DynamoDB and
/// SQS can tell which request met which fault.
pub const REQUEST_ID_HEADER: &str = "x-request-id";

tokio::task_local! {
    static REQUEST_ID: String;
}

/// The SDK interceptor of the local clients that adds [`REQUEST_ID_HEADER`] to each AWS
/// request made while serving a request that carried it.
#[derive(Debug, Clone, Copy)]
pub struct RequestTag;

impl aws_sdk_dynamodb::config::Intercept for RequestTag {
    fn name(&self) -> &'static str {
        "request tag"
    }

    fn modify_before_transmit(
        &self,
        context: &mut aws_sdk_dynamodb::config::interceptors::BeforeTransmitInterceptorContextMut<'_>,
        _: &aws_sdk_dynamodb::config::RuntimeComponents,
        _: &mut aws_sdk_dynamodb::config::ConfigBag,
    ) -> Result<(), aws_sdk_dynamodb::error::BoxError> {
        if let Ok(id) = REQUEST_ID.try_with(Clone::clone) {
            let _ = context.request_mut().headers_mut().try_insert(REQUEST_ID_HEADER, id);
        }
        Ok(())
    }
}

/// API Gateway's own payload limit; the handlers enforce the project's smaller one.
const GATEWAY_MAX_BODY: usize = 10 * 1024 * 1024;

/// Anything the local API Gateway can route to: a webhook, the status API.
pub trait Handler: Send + Sync + 'static {
    fn call(&self, request: Inbound) -> impl Future<Output = lambda_http::Response<lambda_http::Body>> + Send;
}

impl<P: Provider + 'static> Handler for Webhook<P> {
    async fn call(&self, request: Inbound) -> lambda_http::Response<lambda_http::Body> {
        self.answer(&request, OffsetDateTime::now_utc()).await
    }
}

impl<P: Provider + 'static> Handler for HintRelay<P> {
    async fn call(&self, request: Inbound) -> lambda_http::Response<lambda_http::Body> {
        self.answer(&request).await
    }
}

impl Handler for transactions_api::TransactionsApi {
    async fn call(&self, request: Inbound) -> lambda_http::Response<lambda_http::Body> {
        self.answer(&request, OffsetDateTime::now_utc()).await
    }
}

/// One route of the events API (API Gateway tells them apart by route; locally each is
/// mounted on its own).
#[derive(Debug, Clone)]
pub struct EventsRoute {
    pub api: Arc<events_api::EventsApi>,
    pub route: events_api::Route,
}

impl Handler for EventsRoute {
    async fn call(&self, request: Inbound) -> lambda_http::Response<lambda_http::Body> {
        self.api.answer(self.route, &request, OffsetDateTime::now_utc()).await
    }
}

impl<H: Handler> Handler for Arc<H> {
    async fn call(&self, request: Inbound) -> lambda_http::Response<lambda_http::Body> {
        self.as_ref().call(request).await
    }
}

/// The local API Gateway: webhook routes sharing one write path.
#[derive(Debug)]
pub struct Routes {
    router: Router,
    write_path: WritePath,
    hint_queue: HintQueue,
    hint_consumers: Vec<HintConsumer>,
}

impl Routes {
    /// Webhooks write through `write_path`; a webhook that is a hint is queued on `hint_queue`.
    pub fn new(write_path: WritePath, hint_queue: HintQueue) -> Self {
        Routes { router: Router::new(), write_path, hint_queue, hint_consumers: Vec::new() }
    }

    /// Serves `provider`'s webhook at its routes (exactly as in template.yaml): its
    /// pipeline, or for a webhook that is a hint, the relay to the hint queue and the
    /// queue's consumer ([`Self::into_parts`]).
    fn add_provider<P: Provider>(&mut self, provider: shared::runtime::FromSecret<P>) {
        let webhook = Arc::new(Webhook::rotating(provider, self.write_path.clone()));
        match HintRelay::<P>::new(self.hint_queue.clone()) {
            Some(relay) => {
                self.mount_routes::<P>(Arc::new(relay));
                let queue = &self.hint_queue;
                self.hint_consumers.push(HintConsumer::new(queue.client().clone(), queue.url(), webhook));
            }
            None => self.mount_routes::<P>(webhook),
        }
    }

    /// `handler` at each of `P`'s routes.
    fn mount_routes<P: Provider>(&mut self, handler: Arc<impl Handler>) {
        for path in std::iter::once(P::PATH).chain(P::ALSO_AT.iter().copied()) {
            self.router = mount(std::mem::take(&mut self.router), P::METHOD, path, Arc::clone(&handler));
        }
    }

    /// Serves every provider of the registry at its route, each configured from `env`
    /// exactly as its Lambda function is at init (its secret read by ARN from Secrets
    /// Manager, and kept current). The first configuration error stops it, as at start-up
    /// of each function.
    pub async fn mount_providers(
        mut self,
        env: Arc<dyn Env + Send + Sync>,
        secrets: &shared::runtime::SecretsClient,
    ) -> Result<Self, ConfigError> {
        type Load<'a> = std::pin::Pin<
            Box<dyn Future<Output = Result<Box<dyn FnOnce(&mut Routes) + Send>, ConfigError>> + Send + 'a>,
        >;
        struct Mount<'a> {
            env: Arc<dyn Env + Send + Sync>,
            secrets: &'a shared::runtime::SecretsClient,
            loads: Vec<Load<'a>>,
        }
        impl EachSimulator for Mount<'_> {
            fn simulator<S: provider_testkit::Simulator>(&mut self) {
                let (env, secrets) = (Arc::clone(&self.env), self.secrets);
                self.loads.push(Box::pin(async move {
                    let now = OffsetDateTime::now_utc();
                    let provider = Webhook::<S::Provider>::provider_from_env(env, secrets, now).await?;
                    Ok(Box::new(move |routes: &mut Routes| routes.add_provider(provider))
                        as Box<dyn FnOnce(&mut Routes) + Send>)
                }));
            }
        }
        let mut mount = Mount { env, secrets, loads: Vec::new() };
        provider_catalog::for_each_simulator(&mut mount);
        for load in mount.loads {
            load.await?(&mut self);
        }
        Ok(self)
    }

    /// Serves every route of the events API.
    pub fn mount_events(mut self, api: events_api::EventsApi) -> Self {
        let api = Arc::new(api);
        for (route, method, path) in events_api::ROUTES {
            self.router = mount(self.router, method, path, EventsRoute { api: Arc::clone(&api), route });
        }
        self
    }

    /// Serves any other handler (the transactions API) at `method path`.
    pub fn mount_handler<H: Handler>(self, method: &str, path: &str, handler: H) -> Self {
        Routes { router: mount(self.router, method, path, handler), ..self }
    }

    /// The router (a path that matches no route answers 404 in the project's error
    /// shape), and the consumers of the hints its relays queue, for the caller to poll as
    /// the queue's trigger would.
    pub fn into_parts(self) -> (Router, Vec<HintConsumer>) {
        let router = self.router.fallback(|| async {
            let response = shared::runtime::error_response(http::StatusCode::NOT_FOUND, "not_found", "no such route");
            let (parts, body) = response.into_parts();
            Response::from_parts(parts, axum::body::Body::from(body.as_ref().to_vec()))
        });
        (router, self.hint_consumers)
    }
}

/// Adds a handler at `method path` (the route exactly as in template.yaml).
pub fn mount<H: Handler>(router: Router, method: &str, path: &str, handler: H) -> Router {
    let filter = match method {
        "GET" => MethodFilter::GET,
        "PUT" => MethodFilter::PUT,
        "POST" => MethodFilter::POST,
        "DELETE" => MethodFilter::DELETE,
        other => panic!("route {path}: method {other} is not one API Gateway routes here"),
    };
    let handler = Arc::new(handler);
    router.route(
        path,
        on(filter, move |Path(params): Path<HashMap<String, String>>, request: Request| {
            let handler = Arc::clone(&handler);
            async move { invoke(handler.as_ref(), params, request).await }
        }),
    )
}

async fn invoke<H: Handler>(handler: &H, params: HashMap<String, String>, request: Request) -> Response {
    let (parts, body) = request.into_parts();
    let (method, path) = (parts.method.clone(), parts.uri.path().to_owned());
    let Ok(bytes) = axum::body::to_bytes(body, GATEWAY_MAX_BODY).await else {
        return http::StatusCode::PAYLOAD_TOO_LARGE.into_response();
    };
    let mut request =
        Inbound::new(parts.method, bytes.to_vec()).with_query_string(parts.uri.query().unwrap_or_default());
    request.path_parameters = params;
    let id = parts.headers.get(REQUEST_ID_HEADER).and_then(|v| v.to_str().ok()).map(str::to_owned);
    request.headers = parts.headers;
    let response = match id {
        Some(id) => REQUEST_ID.scope(id, handler.call(request)).await,
        None => handler.call(request).await,
    };
    tracing::info!(%method, path, status = response.status().as_u16(), "request handled");
    let (parts, body) = response.into_parts();
    Response::from_parts(parts, axum::body::Body::from(body.as_ref().to_vec()))
}
