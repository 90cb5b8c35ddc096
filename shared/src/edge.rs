//! The HTTP edge: a Lambda request in, a response out. The one mapping of the pipeline's
//! errors to an HTTP status, a stable code and a public message lives here, outside the
//! model and the pipeline.

use http::StatusCode;
use lambda_http::{Body, Request, Response};
use time::OffsetDateTime;

use crate::error::WebhookError;
use crate::inbound::Inbound;
use crate::webhook::{Provider, Webhook};

impl<P: Provider> Webhook<P> {
    /// Handles one Lambda request (API Gateway's event) and answers it.
    pub async fn handle(&self, request: Request, now: OffsetDateTime) -> Response<Body> {
        self.answer(&Inbound::from_lambda(request), now).await
    }

    /// Handles one request and answers it: the provider's acknowledgement, or the error mapped to HTTP.
    pub async fn answer(&self, request: &Inbound, now: OffsetDateTime) -> Response<Body> {
        answer::<P, _>(self.process(request, now).await)
    }
}

/// `P`'s acknowledgement of a request handled, or its error mapped to HTTP (and logged).
pub(crate) fn answer<P: Provider, T>(result: Result<T, WebhookError>) -> Response<Body> {
    match result {
        Ok(_) => {
            let mut response = Response::new(Body::Empty);
            *response.status_mut() = P::ACK_STATUS;
            response
        }
        Err(error) => {
            log_error(P::NAME, &error);
            error.to_response()
        }
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
            WebhookError::Upstream(_) | WebhookError::RetryLater { .. } => StatusCode::SERVICE_UNAVAILABLE,
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
            WebhookError::RetryLater { .. } => "retry_later",
            WebhookError::Store(_) | WebhookError::Queue(_) => "internal_error",
        }
    }

    /// What the caller is told: specific for their mistakes, nothing internal for ours,
    /// nothing about which verification check failed.
    pub fn public_message(&self) -> String {
        match self {
            WebhookError::Unauthorized { .. } => "request could not be verified".to_owned(),
            WebhookError::Upstream(_) => "provider API unavailable, please retry".to_owned(),
            WebhookError::RetryLater { .. } => "to be received again later, please retry".to_owned(),
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

/// Logs a failed request: client errors at warn, ours at error with the source chain, a
/// request to be received again by design at info. Never the body, never a secret: the
/// errors carry neither.
pub(crate) fn log_error(provider: &str, error: &WebhookError) {
    let code = error.code();
    if let WebhookError::RetryLater { reason } = error {
        tracing::info!(provider, code, reason, "webhook to be received again later");
    } else if error.status().is_server_error() {
        let mut chain = error.to_string();
        let mut source = std::error::Error::source(error);
        while let Some(cause) = source {
            chain.push_str(": ");
            chain.push_str(&cause.to_string());
            source = cause.source();
        }
        tracing::error!(provider, code, error = %chain, "webhook failed; it will be delivered again");
    } else {
        tracing::warn!(provider, code, status = error.status().as_u16(), error = %error, "webhook rejected");
    }
}

/// Whether API Gateway verified the IAM identity of `request` (its
/// `requestContext.authorizer.iam`): the routes the template puts behind IAM refuse a
/// request without one ([`refuse_without_iam`]), so that a route opened by mistake stays
/// shut.
fn has_iam_identity(request: &Request) -> bool {
    use lambda_http::request::RequestContext;
    use lambda_http::RequestExt;
    match request.request_context_ref() {
        Some(RequestContext::ApiGatewayV2(context)) => context
            .authorizer
            .as_ref()
            .and_then(|authorizer| authorizer.iam.as_ref())
            .is_some_and(|iam| iam.user_arn.is_some() || iam.caller_id.is_some() || iam.account_id.is_some()),
        // Only the HTTP API (payload 2.0) routes to these functions.
        Some(_) | None => false,
    }
}

/// For a Lambda handler of an IAM-authorized route: 403 `forbidden` when API Gateway
/// verified no IAM identity for `request`, `None` otherwise.
pub fn refuse_without_iam(request: &Request) -> Option<Response<Body>> {
    if has_iam_identity(request) {
        return None;
    }
    tracing::warn!("a request with no IAM identity reached an IAM-authorized route: refused");
    Some(error_response(StatusCode::FORBIDDEN, "forbidden", "this route takes a request signed by an IAM identity"))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::queue::QueueError;

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
