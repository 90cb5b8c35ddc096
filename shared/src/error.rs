//! The one error type of the webhook pipeline and its one mapping to HTTP.

use http::StatusCode;
use lambda_http::{Body, Response};

use crate::model::InvalidAmount;
use crate::queue::QueueError;
use crate::store::StoreError;

/// Largest accepted request body.
pub const MAX_BODY_BYTES: usize = 256 * 1024;

#[derive(Debug, thiserror::Error)]
pub enum WebhookError {
    /// The parser's own message can quote the body, so only the position is shown.
    #[error("request body is not valid JSON of the expected shape (line {}, column {})", .0.line(), .0.column())]
    MalformedJson(#[source] serde_json::Error),

    #[error("invalid {field}: {reason}")]
    InvalidField { field: &'static str, reason: String },

    /// Verification failed. `reason` is for our logs only; the response says nothing
    /// about which check failed.
    #[error("request could not be verified ({reason})")]
    Unauthorized { reason: &'static str },

    #[error("request body is larger than {MAX_BODY_BYTES} bytes")]
    PayloadTooLarge,

    #[error("content type must be application/json")]
    UnsupportedMediaType,

    #[error("unsupported {field} {value:?}")]
    Unsupported { field: &'static str, value: String },

    /// A provider API we must ask before acting (e.g. Pagstar's `GET /cob`) is unreachable,
    /// too slow or failing: 503, so the provider delivers again.
    #[error("provider API unavailable")]
    Upstream(#[source] Box<dyn std::error::Error + Send + Sync>),

    #[error("transaction store failed")]
    Store(#[from] StoreError),

    #[error("event queue failed")]
    Queue(#[from] QueueError),
}

impl From<InvalidAmount> for WebhookError {
    fn from(error: InvalidAmount) -> Self {
        WebhookError::InvalidField { field: "amount", reason: error.to_string() }
    }
}

impl WebhookError {
    pub fn status(&self) -> StatusCode {
        match self {
            WebhookError::MalformedJson(_) | WebhookError::InvalidField { .. } => StatusCode::BAD_REQUEST,
            WebhookError::Unauthorized { .. } => StatusCode::UNAUTHORIZED,
            WebhookError::PayloadTooLarge => StatusCode::PAYLOAD_TOO_LARGE,
            WebhookError::UnsupportedMediaType => StatusCode::UNSUPPORTED_MEDIA_TYPE,
            WebhookError::Unsupported { .. } => StatusCode::UNPROCESSABLE_ENTITY,
            WebhookError::Upstream(_) => StatusCode::SERVICE_UNAVAILABLE,
            WebhookError::Store(_) | WebhookError::Queue(_) => StatusCode::INTERNAL_SERVER_ERROR,
        }
    }

    /// Stable, machine-readable code for the response body.
    pub fn code(&self) -> &'static str {
        match self {
            WebhookError::MalformedJson(_) => "malformed_json",
            WebhookError::InvalidField { .. } => "invalid_field",
            WebhookError::Unauthorized { .. } => "unauthorized",
            WebhookError::PayloadTooLarge => "payload_too_large",
            WebhookError::UnsupportedMediaType => "unsupported_media_type",
            WebhookError::Unsupported { .. } => "unsupported_value",
            WebhookError::Upstream(_) => "upstream_unavailable",
            WebhookError::Store(_) | WebhookError::Queue(_) => "internal_error",
        }
    }

    /// What the caller is told: specific for their mistakes, nothing internal for ours,
    /// nothing about which verification check failed.
    pub fn public_message(&self) -> String {
        match self {
            WebhookError::Unauthorized { .. } => "request could not be verified".to_owned(),
            WebhookError::Upstream(_) => "provider API unavailable, please retry".to_owned(),
            WebhookError::Store(_) | WebhookError::Queue(_) => "internal error, please retry".to_owned(),
            WebhookError::MalformedJson(_)
            | WebhookError::InvalidField { .. }
            | WebhookError::PayloadTooLarge
            | WebhookError::UnsupportedMediaType
            | WebhookError::Unsupported { .. } => self.to_string(),
        }
    }

    /// `{"error": {"code": "...", "message": "..."}}` with the mapped status.
    pub fn to_response(&self) -> Response<Body> {
        error_response(self.status(), self.code(), &self.public_message())
    }
}

/// A JSON error response in the project's one error shape.
pub fn error_response(status: StatusCode, code: &str, message: &str) -> Response<Body> {
    let body = serde_json::json!({ "error": { "code": code, "message": message } });
    let mut response = Response::new(Body::Text(body.to_string()));
    *response.status_mut() = status;
    response.headers_mut().insert(http::header::CONTENT_TYPE, http::HeaderValue::from_static("application/json"));
    response
}

#[cfg(test)]
mod tests {
    use super::*;

    fn body_json(response: &Response<Body>) -> serde_json::Value {
        serde_json::from_slice(response.body().as_ref()).expect("error body is JSON")
    }

    #[test]
    fn client_errors_map_to_their_status_and_code() {
        let malformed = serde_json::from_str::<serde_json::Value>("{").expect_err("invalid JSON");
        let cases = [
            (WebhookError::MalformedJson(malformed), 400, "malformed_json"),
            (WebhookError::InvalidField { field: "rrn", reason: "12 digits".into() }, 400, "invalid_field"),
            (WebhookError::Unauthorized { reason: "api key mismatch" }, 401, "unauthorized"),
            (WebhookError::PayloadTooLarge, 413, "payload_too_large"),
            (WebhookError::UnsupportedMediaType, 415, "unsupported_media_type"),
            (WebhookError::Unsupported { field: "status", value: "weird".into() }, 422, "unsupported_value"),
        ];
        for (error, status, code) in cases {
            let response = error.to_response();
            assert_eq!(response.status().as_u16(), status, "{error}");
            assert_eq!(body_json(&response)["error"]["code"], code);
        }
    }

    #[test]
    fn unauthorized_response_does_not_say_which_check_failed() {
        let response = WebhookError::Unauthorized { reason: "api key mismatch" }.to_response();
        let text = String::from_utf8_lossy(response.body().as_ref()).into_owned();
        assert!(!text.contains("api key"), "{text}");
    }

    #[test]
    fn internal_errors_say_nothing_internal() {
        let error = WebhookError::Queue(QueueError::Send("endpoint http://10.0.0.1 refused".into()));
        let response = error.to_response();
        assert_eq!(response.status(), StatusCode::INTERNAL_SERVER_ERROR);
        let body = body_json(&response);
        assert_eq!(body["error"]["code"], "internal_error");
        assert!(!body.to_string().contains("10.0.0.1"));
        let response = WebhookError::Upstream("https://pagstar.internal timed out".into()).to_response();
        assert_eq!(response.status(), StatusCode::SERVICE_UNAVAILABLE);
        let body = body_json(&response);
        assert_eq!(body["error"]["code"], "upstream_unavailable");
        assert!(!body.to_string().contains("pagstar.internal"));
    }
}
