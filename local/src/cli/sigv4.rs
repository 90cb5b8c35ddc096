//! Requests to a deployed stack's IAM-authorized routes, signed with SigV4 by the AWS
//! SDK's own signer (`aws-sigv4`) for the service `execute-api`.

use std::time::SystemTime;

use aws_credential_types::Credentials;
use aws_sigv4::http_request::{sign, SignableBody, SignableRequest, SigningSettings};
use aws_sigv4::sign::v4;

/// What a request is signed with.
#[derive(Clone)]
pub struct Signer {
    pub credentials: Credentials,
    pub region: String,
}

impl std::fmt::Debug for Signer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Signer").field("region", &self.region).finish_non_exhaustive()
    }
}

/// The headers that sign `method url` with `headers` and `body` at `time` for API
/// Gateway (`execute-api`): `authorization`, `x-amz-date`, and `x-amz-security-token`
/// with temporary credentials.
pub fn signature_headers(
    signer: &Signer,
    method: &str,
    url: &str,
    headers: &[(&str, &str)],
    body: &[u8],
    time: SystemTime,
) -> Result<Vec<(String, String)>, String> {
    signature_headers_for("execute-api", signer, method, url, headers, body, time)
}

/// As [`signature_headers`], for the AWS service `service`.
pub fn signature_headers_for(
    service: &str,
    signer: &Signer,
    method: &str,
    url: &str,
    headers: &[(&str, &str)],
    body: &[u8],
    time: SystemTime,
) -> Result<Vec<(String, String)>, String> {
    let identity = signer.credentials.clone().into();
    let params = v4::SigningParams::builder()
        .identity(&identity)
        .region(&signer.region)
        .name(service)
        .time(time)
        .settings(SigningSettings::default())
        .build()
        .map_err(|e| format!("cannot sign: {e}"))?
        .into();
    let signable = SignableRequest::new(method, url, headers.iter().copied(), SignableBody::Bytes(body))
        .map_err(|e| format!("cannot sign {url}: {e}"))?;
    let (instructions, _) = sign(signable, &params).map_err(|e| format!("cannot sign {url}: {e}"))?.into_parts();
    let (headers, _) = instructions.into_parts();
    Ok(headers.into_iter().map(|h| (h.name().to_owned(), h.value().to_owned())).collect())
}

/// The credentials of the standard AWS chain (environment, profile, SSO, instance role…).
pub async fn from_environment(region: &str) -> Result<Signer, String> {
    use aws_credential_types::provider::ProvideCredentials;
    let config = aws_config::defaults(aws_config::BehaviorVersion::latest())
        .region(aws_config::Region::new(region.to_owned()))
        .load()
        .await;
    let provider = config.credentials_provider().ok_or("no AWS credentials provider is configured")?;
    let credentials = provider.provide_credentials().await.map_err(|e| {
        format!("no AWS credentials ({e}); set AWS_PROFILE or AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY")
    })?;
    Ok(Signer { credentials, region: region.to_owned() })
}

/// What `--stack NAME` reads of a deployed stack: its outputs and parameters, by
/// CloudFormation's `DescribeStacks` (signed like the rest; the endpoint is
/// `AWS_ENDPOINT_URL_CLOUDFORMATION` or `AWS_ENDPOINT_URL` when set, as for the AWS CLI).
pub async fn describe_stack(
    client: &reqwest::Client,
    signer: &Signer,
    name: &str,
) -> Result<std::collections::BTreeMap<String, String>, String> {
    let endpoint = std::env::var("AWS_ENDPOINT_URL_CLOUDFORMATION")
        .or_else(|_| std::env::var("AWS_ENDPOINT_URL"))
        .unwrap_or_else(|_| format!("https://cloudformation.{}.amazonaws.com", signer.region));
    let url = format!("{}/", endpoint.trim_end_matches('/'));
    let host = url::Url::parse(&url)
        .map_err(|e| format!("{url}: {e}"))?
        .host_str()
        .map(|h| h.to_owned())
        .ok_or_else(|| format!("{url} has no host"))?;
    let host = match url::Url::parse(&url).ok().and_then(|u| u.port()) {
        Some(port) => format!("{host}:{port}"),
        None => host,
    };
    let body = url::form_urlencoded::Serializer::new(String::new())
        .append_pair("Action", "DescribeStacks")
        .append_pair("StackName", name)
        .append_pair("Version", "2010-05-15")
        .finish();
    let content_type = "application/x-www-form-urlencoded; charset=utf-8";
    let headers = [("host", host.as_str()), ("content-type", content_type)];
    let signed =
        signature_headers_for("cloudformation", signer, "POST", &url, &headers, body.as_bytes(), SystemTime::now())?;
    let mut request = client.post(&url).header("content-type", content_type).body(body);
    for (header, value) in &signed {
        request = request.header(header.as_str(), value.as_str());
    }
    let response = request.send().await.map_err(|e| format!("CloudFormation at {url} answered nothing ({e})"))?;
    let status = response.status();
    let text = response.text().await.unwrap_or_default();
    if !status.is_success() {
        let message = between(&text, "<Message>", "</Message>").unwrap_or(&text);
        return Err(format!("CloudFormation refused DescribeStacks {name}: {status} {}", unescape(message)));
    }
    Ok(stack_values(&text))
}

/// The outputs (`OutputKey` → `OutputValue`) and parameters (`ParameterKey` →
/// `ParameterValue`) of a `DescribeStacks` answer, in one map.
fn stack_values(xml: &str) -> std::collections::BTreeMap<String, String> {
    let mut values = std::collections::BTreeMap::new();
    for (key_tag, value_tag) in [("OutputKey", "OutputValue"), ("ParameterKey", "ParameterValue")] {
        let (open_key, close_key) = (format!("<{key_tag}>"), format!("</{key_tag}>"));
        let (open_value, close_value) = (format!("<{value_tag}>"), format!("</{value_tag}>"));
        for member in xml.split("<member>") {
            if let (Some(key), Some(value)) =
                (between(member, &open_key, &close_key), between(member, &open_value, &close_value))
            {
                values.insert(unescape(key), unescape(value));
            }
        }
    }
    values
}

fn between<'a>(text: &'a str, open: &str, close: &str) -> Option<&'a str> {
    let start = text.find(open)? + open.len();
    let end = text.get(start..)?.find(close)? + start;
    text.get(start..end)
}

fn unescape(text: &str) -> String {
    text.replace("&lt;", "<").replace("&gt;", ">").replace("&quot;", "\"").replace("&apos;", "'").replace("&amp;", "&")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_describe_stacks_answer_gives_its_outputs_and_parameters() {
        let xml = "<DescribeStacksResponse><DescribeStacksResult><Stacks><member><Parameters>\
            <member><ParameterKey>Edge</ParameterKey><ParameterValue>on</ParameterValue></member></Parameters>\
            <Outputs><member><Description>Base URL</Description><OutputKey>WebhookApiUrl</OutputKey>\
            <OutputValue>https://a1.execute-api.sa-east-1.amazonaws.com</OutputValue></member>\
            <member><OutputKey>Odd</OutputKey><OutputValue>a&amp;b</OutputValue></member></Outputs>\
            </member></Stacks></DescribeStacksResult></DescribeStacksResponse>";
        let values = stack_values(xml);
        assert_eq!(values["WebhookApiUrl"], "https://a1.execute-api.sa-east-1.amazonaws.com");
        assert_eq!(values["Edge"], "on");
        assert_eq!(values["Odd"], "a&b");
        assert_eq!(values.len(), 3);
    }
}
