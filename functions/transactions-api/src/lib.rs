//! The status API: `GET /transactions/{provider}/{reference}` answers the stored record
//! (the `data` of a terminal event, with history and notification state) or 404.
//! IAM-authorized in template.yaml; open in the local pipeline.

use http::StatusCode;
use lambda_http::{Body, Request, Response};
use shared::edge::error_response;
use shared::{ConfigError, Env, Inbound, TransactionStore};

pub const METHOD: &str = "GET";
pub const PATH: &str = "/transactions/{provider}/{reference}";

#[derive(Debug, Clone)]
pub struct TransactionsApi {
    store: TransactionStore,
}

impl TransactionsApi {
    pub fn new(store: TransactionStore) -> Self {
        TransactionsApi { store }
    }

    /// Reads `TABLE_NAME` and builds the DynamoDB client from the Lambda environment.
    pub async fn from_env(env: &impl Env) -> Result<Self, ConfigError> {
        let table = env.required("TABLE_NAME")?;
        let aws = shared::AwsClients::from_env().await;
        Ok(TransactionsApi::new(TransactionStore::new(aws.dynamodb, table)))
    }

    /// Answers one Lambda request (API Gateway's event).
    pub async fn handle(&self, request: Request) -> Response<Body> {
        self.answer(&Inbound::from_lambda(request)).await
    }

    pub async fn answer(&self, request: &Inbound) -> Response<Body> {
        let provider = request.path_parameter("provider").unwrap_or_default();
        let reference = request.path_parameter("reference").unwrap_or_default();
        let valid_provider = (1..=16).contains(&provider.len())
            && provider.bytes().all(|b| b.is_ascii_lowercase() || b.is_ascii_digit());
        let valid_reference = (1..=100).contains(&reference.len()) && reference.bytes().all(|b| b.is_ascii_graphic());
        if !valid_provider || !valid_reference {
            return error_response(StatusCode::BAD_REQUEST, "invalid_field", "invalid provider or reference");
        }
        match self.store.get(provider, reference).await {
            Ok(Some(record)) => match serde_json::to_string(&record) {
                Ok(json) => {
                    let mut response = Response::new(Body::Text(json));
                    response
                        .headers_mut()
                        .insert(http::header::CONTENT_TYPE, http::HeaderValue::from_static("application/json"));
                    response
                }
                Err(error) => internal(&error),
            },
            Ok(None) => error_response(StatusCode::NOT_FOUND, "not_found", "no such transaction"),
            Err(error) => internal(&error),
        }
    }
}

fn internal(error: &dyn std::error::Error) -> Response<Body> {
    tracing::error!(error = %error, "status API failed");
    error_response(StatusCode::INTERNAL_SERVER_ERROR, "internal_error", "internal error, please retry")
}
