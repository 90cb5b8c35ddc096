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

/// The headers that sign `method url` with `headers` and `body` at `time`: `authorization`,
/// `x-amz-date`, and `x-amz-security-token` with temporary credentials.
pub fn signature_headers(
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
        .name("execute-api")
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
