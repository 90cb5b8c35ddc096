//! Serves webhook handlers over plain HTTP, the way API Gateway would call them:
//! the same route paths, path parameters and query string, the same handler code.

use std::collections::HashMap;
use std::sync::Arc;

use axum::extract::{Path, Request};
use axum::response::{IntoResponse, Response};
use axum::routing::{on, MethodFilter};
use axum::Router;
use lambda_http::aws_lambda_events::query_map::QueryMap;
use lambda_http::RequestExt;
use shared::{EventQueue, Provider, TransactionStore, Webhook};
use time::OffsetDateTime;

/// API Gateway's own payload limit; the handlers enforce the project's smaller one.
const GATEWAY_MAX_BODY: usize = 10 * 1024 * 1024;

/// The local API Gateway: webhook routes sharing one store and queue.
#[derive(Debug)]
pub struct Routes {
    router: Router,
    store: TransactionStore,
    queue: EventQueue,
}

impl Routes {
    pub fn new(store: TransactionStore, queue: EventQueue) -> Self {
        Routes { router: Router::new(), store, queue }
    }

    /// Serves `provider`'s webhook at `method path` (the route exactly as in template.yaml).
    pub fn mount<P: Provider + 'static>(self, method: &str, path: &str, provider: P) -> Self {
        let webhook = Webhook::new(provider, self.store.clone(), self.queue.clone());
        Routes { router: mount(self.router, method, path, webhook), ..self }
    }

    pub fn into_router(self) -> Router {
        self.router
    }
}

/// Adds a webhook at `method path` (the route exactly as in template.yaml).
pub fn mount<P: Provider + 'static>(router: Router, method: &str, path: &str, webhook: Webhook<P>) -> Router {
    let filter = match method {
        "GET" => MethodFilter::GET,
        "PUT" => MethodFilter::PUT,
        "POST" => MethodFilter::POST,
        "DELETE" => MethodFilter::DELETE,
        other => panic!("route {path}: method {other} is not one API Gateway routes here"),
    };
    let webhook = Arc::new(webhook);
    router.route(
        path,
        on(filter, move |Path(params): Path<HashMap<String, String>>, request: Request| {
            let webhook = Arc::clone(&webhook);
            async move { invoke(&webhook, params, request).await }
        }),
    )
}

async fn invoke<P: Provider>(webhook: &Webhook<P>, params: HashMap<String, String>, request: Request) -> Response {
    let (parts, body) = request.into_parts();
    let (method, path) = (parts.method.clone(), parts.uri.path().to_owned());
    let Ok(bytes) = axum::body::to_bytes(body, GATEWAY_MAX_BODY).await else {
        return http::StatusCode::PAYLOAD_TOO_LARGE.into_response();
    };
    let query: QueryMap = parts.uri.query().unwrap_or_default().parse().unwrap_or_default();
    let request = lambda_http::Request::from_parts(parts, lambda_http::Body::from(bytes.to_vec()))
        .with_path_parameters(params)
        .with_query_string_parameters(query);
    let response = webhook.handle(request, OffsetDateTime::now_utc()).await;
    tracing::info!(%method, path, status = response.status().as_u16(), "request handled");
    let (parts, body) = response.into_parts();
    Response::from_parts(parts, axum::body::Body::from(body.as_ref().to_vec()))
}
