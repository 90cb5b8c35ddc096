//! A webhook request as the pipeline and the providers see it, tied to no framework:
//! built once from a Lambda request (`from_lambda`) and once by the local server.

use std::collections::HashMap;

use http::{HeaderMap, HeaderName, HeaderValue, Method};
use lambda_http::RequestExt;

use crate::config::Secret;
use crate::error::WebhookError;

#[derive(Debug, Clone)]
pub struct Inbound {
    pub method: Method,
    /// The route's parameters (`{rrn}` in `/webhooks/azqr/qr/{rrn}/status`).
    pub path_parameters: HashMap<String, String>,
    /// The query string's parameters, the first value of each.
    pub query: HashMap<String, String>,
    pub headers: HeaderMap,
    /// The raw body, exactly as received: signatures are over these bytes.
    pub body: Vec<u8>,
}

impl Inbound {
    pub fn new(method: Method, body: impl Into<Vec<u8>>) -> Self {
        Inbound {
            method,
            path_parameters: HashMap::new(),
            query: HashMap::new(),
            headers: HeaderMap::new(),
            body: body.into(),
        }
    }

    /// The same request with a header added (invalid names or values are ignored).
    pub fn with_header(mut self, name: &str, value: &str) -> Self {
        if let (Ok(name), Ok(value)) = (HeaderName::from_bytes(name.as_bytes()), HeaderValue::from_str(value)) {
            self.headers.append(name, value);
        }
        self
    }

    pub fn with_path_parameter(mut self, name: &str, value: &str) -> Self {
        self.path_parameters.insert(name.to_owned(), value.to_owned());
        self
    }

    pub fn with_query(mut self, name: &str, value: &str) -> Self {
        self.query.insert(name.to_owned(), value.to_owned());
        self
    }

    /// The same request with the parameters of a raw query string (`a=1&b=x%20y`), decoded.
    pub fn with_query_string(mut self, raw: &str) -> Self {
        let map: lambda_http::aws_lambda_events::query_map::QueryMap = raw.parse().unwrap_or_default();
        self.query.extend(first_values(&map));
        self
    }

    /// A header's raw value (names are case-insensitive).
    pub fn header(&self, name: &str) -> Option<&[u8]> {
        self.headers.get(name).map(HeaderValue::as_bytes)
    }

    pub fn path_parameter(&self, name: &str) -> Option<&str> {
        self.path_parameters.get(name).map(String::as_str)
    }

    pub fn query_parameter(&self, name: &str) -> Option<&str> {
        self.query.get(name).map(String::as_str)
    }

    /// What API Gateway handed to the Lambda function (its headers and body are moved, not copied).
    pub fn from_lambda(request: lambda_http::Request) -> Self {
        let path_parameters = first_values(&request.path_parameters());
        let query = first_values(&request.query_string_parameters());
        let (parts, body) = request.into_parts();
        let body = match body {
            lambda_http::Body::Empty => Vec::new(),
            lambda_http::Body::Text(text) => text.into_bytes(),
            lambda_http::Body::Binary(bytes) => bytes,
            // The enum is non-exhaustive: any other kind of body is copied.
            other => other.as_ref().to_vec(),
        };
        Inbound { method: parts.method, path_parameters, query, headers: parts.headers, body }
    }
}

fn first_values(map: &lambda_http::aws_lambda_events::query_map::QueryMap) -> HashMap<String, String> {
    map.iter().filter_map(|(name, _)| map.first(name).map(|v| (name.to_owned(), v.to_owned()))).collect()
}

/// The one check of a shared secret a provider sends as is (a header, a query parameter):
/// present, and equal to ours in constant time. The reasons go to our logs only.
pub fn check_shared_secret(
    given: Option<&[u8]>,
    secret: &Secret,
    missing: &'static str,
    mismatch: &'static str,
) -> Result<(), WebhookError> {
    match given {
        None => Err(WebhookError::Unauthorized { reason: missing }),
        Some(given) if secret.matches(given) => Ok(()),
        Some(_) => Err(WebhookError::Unauthorized { reason: mismatch }),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn built_from_a_lambda_request() {
        let request = http::Request::builder()
            .method("PUT")
            .uri("/webhooks/azqr/qr/123456789012/status?token=t")
            .header("apiKey", "k")
            .body(lambda_http::Body::Text("{}".into()))
            .expect("request")
            .with_path_parameters(HashMap::from([("rrn".to_owned(), "123456789012".to_owned())]))
            .with_query_string_parameters(HashMap::from([("token".to_owned(), "t".to_owned())]));
        let inbound = Inbound::from_lambda(request);
        assert_eq!(inbound.method, Method::PUT);
        assert_eq!(inbound.header("APIKEY"), Some(&b"k"[..]), "header names are case-insensitive");
        assert_eq!(inbound.path_parameter("rrn"), Some("123456789012"));
        assert_eq!(inbound.query_parameter("token"), Some("t"));
        assert_eq!(inbound.body, b"{}");
        let local = Inbound::new(Method::POST, "").with_query_string("token=a%20b&token=second&x=1");
        assert_eq!(local.query_parameter("token"), Some("a b"), "decoded, first value");
        assert_eq!(local.query_parameter("x"), Some("1"));
    }

    #[test]
    fn a_shared_secret_is_present_and_equal() {
        let secret = Secret::new("s3cret");
        assert!(check_shared_secret(Some(b"s3cret"), &secret, "missing", "mismatch").is_ok());
        let reason = |r: Result<(), WebhookError>| r.expect_err("refused").to_string();
        let missing = check_shared_secret(None, &secret, "missing", "mismatch");
        assert_eq!(reason(missing), "request could not be verified (missing)");
        let wrong = check_shared_secret(Some(b"s3cres"), &secret, "missing", "mismatch");
        assert_eq!(reason(wrong), "request could not be verified (mismatch)");
    }
}
