//! Pagstar's API, the source of truth for a Pix charge: OAuth2 client credentials
//! (over mutual TLS when a client certificate is configured) and `GET /cob/{txid}`.

use std::time::{Duration, Instant};

use serde::Deserialize;
use serde_json::value::RawValue;
use shared::runtime::config::{ConfigError, Env, Secret};
use tokio::sync::Mutex;

/// Per-request limit for every call to Pagstar.
pub const REQUEST_TIMEOUT: Duration = Duration::from_secs(4);
pub const CONNECT_TIMEOUT: Duration = Duration::from_secs(2);
/// A token is refreshed this long before Pagstar says it expires.
pub const TOKEN_REFRESH_MARGIN: Duration = Duration::from_secs(30);

#[derive(Debug, thiserror::Error)]
pub enum PagstarError {
    #[error("request to Pagstar failed")]
    Request(#[source] reqwest::Error),
    #[error("Pagstar answered {status} to {operation}")]
    Status { operation: &'static str, status: u16 },
    #[error("Pagstar's {operation} answer could not be read")]
    Decode { operation: &'static str, source: reqwest::Error },
    /// This instance's calls to Pagstar are at their rate ([`crate::CALLS_PER_SECOND`]).
    #[error("calls to Pagstar at their rate: asked again later")]
    RateLimited,
}

/// A charge (`cob`) as Pagstar reports it. Unknown fields are ignored.
#[derive(Debug, Clone, Deserialize)]
pub struct PagstarCob {
    #[serde(default)]
    pub txid: Option<String>,
    pub status: String,
    #[serde(default)]
    pub valor: Option<PagstarValor>,
    #[serde(default)]
    pub calendario: Option<PagstarCalendario>,
    /// The Pix payments received for the charge (BACEN's `CobCompleta`), when paid; read
    /// entry by entry ([`PagstarCob::payments`]), so an odd one cannot hide the charge.
    #[serde(default)]
    pub pix: Option<Box<RawValue>>,
}

/// One Pix payment of a charge: `valor` is what the payer paid; `devolucoes` its returns
/// (read entry by entry, [`PagstarPix::returns`]).
#[derive(Debug, Clone, Deserialize)]
pub struct PagstarPix {
    #[serde(default)]
    pub valor: Option<Box<RawValue>>,
    #[serde(default)]
    pub devolucoes: Option<Box<RawValue>>,
}

/// One return of a Pix payment (BACEN's `devolucao`), MED's included.
#[derive(Debug, Clone, Deserialize)]
pub struct PagstarDevolucao {
    #[serde(default)]
    pub id: Option<String>,
    #[serde(default)]
    pub valor: Option<Box<RawValue>>,
    #[serde(default)]
    pub status: Option<String>,
}

impl PagstarPix {
    /// Each return of the payment: `None` for an entry that is not a return object (and one
    /// `None` when `devolucoes` is not a list); nothing when there is none.
    pub fn returns(&self) -> Vec<Option<PagstarDevolucao>> {
        entries(self.devolucoes.as_deref())
    }
}

/// The entries of a JSON list, each read alone: `None` for one that is not a `T` (and one
/// `None` when the value is not a list).
fn entries<T: serde::de::DeserializeOwned>(raw: Option<&RawValue>) -> Vec<Option<T>> {
    let Some(raw) = raw else { return Vec::new() };
    match serde_json::from_str::<Option<Vec<Box<RawValue>>>>(raw.get()) {
        Ok(entries) => entries.into_iter().flatten().map(|entry| serde_json::from_str::<T>(entry.get()).ok()).collect(),
        Err(_) => vec![None],
    }
}

/// When the charge was created and how many seconds it can be paid for (BACEN: default
/// 86400). Past that it can no longer be paid, yet its status stays `ATIVA`.
#[derive(Debug, Clone, Deserialize)]
pub struct PagstarCalendario {
    #[serde(default, with = "time::serde::rfc3339::option")]
    pub criacao: Option<time::OffsetDateTime>,
    #[serde(default)]
    pub expiracao: Option<u64>,
}

/// BACEN's default lifetime of an immediate charge, in seconds.
pub const DEFAULT_EXPIRACAO: u64 = 86_400;

impl PagstarCob {
    /// Each Pix payment of the charge: `None` for an entry that is not a payment object
    /// (and one `None` when `pix` is not a list); nothing when there is no `pix`.
    pub fn payments(&self) -> Vec<Option<PagstarPix>> {
        entries(self.pix.as_deref())
    }

    /// When the charge stops being payable: `criacao + expiracao`; `None` without `criacao`.
    pub fn expires_at(&self) -> Option<time::OffsetDateTime> {
        let calendario = self.calendario.as_ref()?;
        let seconds = calendario.expiracao.unwrap_or(DEFAULT_EXPIRACAO).min(i64::MAX as u64);
        calendario.criacao?.checked_add(time::Duration::seconds(seconds as i64))
    }
}

#[derive(Debug, Clone, Deserialize)]
pub struct PagstarValor {
    #[serde(default)]
    pub original: Option<Box<RawValue>>,
}

#[derive(Debug, Deserialize)]
struct TokenResponse {
    access_token: String,
    #[serde(default)]
    expires_in: Option<u64>,
}

#[derive(Debug)]
struct CachedToken {
    token: Secret,
    refresh_at: Instant,
}

/// Settings read from the environment.
#[derive(Debug, Clone)]
pub struct PagstarConfig {
    /// Calls to Pagstar a second, per function instance ([`crate::CALLS_PER_SECOND`]).
    pub calls_per_second: u32,
    pub api_url: String,
    pub client_id: String,
    pub client_secret: Secret,
    /// PEM certificate chain and private key for mutual TLS, when Pagstar issued them.
    pub client_identity: Option<(String, Secret)>,
}

impl PagstarConfig {
    /// Reads `PAGSTAR_API_URL`, `PAGSTAR_CLIENT_ID`, `PAGSTAR_CLIENT_SECRET` and, together
    /// or not at all, `PAGSTAR_CLIENT_CERT` and `PAGSTAR_CLIENT_KEY` (PEM; literal `\n` allowed).
    pub fn from_env(env: &impl Env) -> Result<Self, ConfigError> {
        let api_url = shared::runtime::config::api_url(env, crate::PAGSTAR_API_URL.name)?
            .ok_or(ConfigError::Missing(crate::PAGSTAR_API_URL.name))?;
        let pem = |value: String| shared::runtime::config::multiline(&value);
        let client_identity = match (env.optional("PAGSTAR_CLIENT_CERT"), env.optional("PAGSTAR_CLIENT_KEY")) {
            (Some(cert), Some(key)) => Some((pem(cert), Secret::new(pem(key)))),
            (None, None) => None,
            (Some(_), None) => return Err(ConfigError::Missing("PAGSTAR_CLIENT_KEY")),
            (None, Some(_)) => return Err(ConfigError::Missing("PAGSTAR_CLIENT_CERT")),
        };
        let calls_per_second = crate::CALLS_PER_SECOND.number_from(env)?;
        Ok(PagstarConfig {
            calls_per_second: u32::try_from(calls_per_second).unwrap_or(u32::MAX),
            api_url,
            client_id: env.required(crate::PAGSTAR_CLIENT_ID.name)?,
            client_secret: env.secret("PAGSTAR_CLIENT_SECRET")?,
            client_identity,
        })
    }
}

/// The client: one HTTP connection pool and one cached token, for the life of the
/// Lambda instance (warm invocations reuse both).
#[derive(Debug)]
pub struct PagstarApi {
    http: reqwest::Client,
    api_url: String,
    client_id: String,
    client_secret: Secret,
    uses_client_certificate: bool,
    token: Mutex<Option<CachedToken>>,
    /// Every call to Pagstar takes a turn here first.
    rate: crate::limits::CallRate,
}

impl PagstarApi {
    pub fn new(config: PagstarConfig) -> Result<Self, ConfigError> {
        let mut builder = reqwest::Client::builder()
            .timeout(REQUEST_TIMEOUT)
            .connect_timeout(CONNECT_TIMEOUT)
            .pool_max_idle_per_host(shared::pipeline::IDLE_CONNECTIONS)
            .redirect(reqwest::redirect::Policy::none())
            .https_only(config.api_url.starts_with("https://"));
        let uses_client_certificate = config.client_identity.is_some();
        if let Some((cert, key)) = &config.client_identity {
            let pem = format!("{}\n{}", key.expose(), cert);
            let identity = reqwest::Identity::from_pem(pem.as_bytes()).map_err(|_| ConfigError::Invalid {
                name: "PAGSTAR_CLIENT_CERT",
                reason: "certificate and key do not form a PEM client identity".into(),
            })?;
            builder = builder.identity(identity);
        }
        // rustls checks the client key only here, so with an identity a failure is its fault.
        let http = builder.build().map_err(|e| match uses_client_certificate {
            true => ConfigError::Invalid {
                name: "PAGSTAR_CLIENT_CERT",
                reason: "certificate and key are not a usable client identity".into(),
            },
            false => ConfigError::Invalid { name: crate::PAGSTAR_API_URL.name, reason: format!("HTTP client: {e}") },
        })?;
        Ok(PagstarApi {
            http,
            api_url: config.api_url,
            client_id: config.client_id,
            client_secret: config.client_secret,
            uses_client_certificate,
            token: Mutex::new(None),
            rate: crate::limits::CallRate::new(config.calls_per_second),
        })
    }

    pub fn uses_client_certificate(&self) -> bool {
        self.uses_client_certificate
    }

    /// The charge for `txid`, or `None` when Pagstar does not know it (404).
    /// A 401 refreshes the token and retries once.
    pub async fn cob(&self, txid: &str) -> Result<Option<PagstarCob>, PagstarError> {
        let mut refused: Option<Secret> = None;
        loop {
            let token = self.token(refused.as_ref()).await?;
            if !self.rate.take().await {
                return Err(PagstarError::RateLimited);
            }
            let response = self
                .http
                .get(format!("{}/cob/{}", self.api_url, shared::pipeline::path_segment(txid)))
                .bearer_auth(token.expose())
                .send()
                .await
                .map_err(PagstarError::Request)?;
            match response.status().as_u16() {
                200 => {
                    let cob =
                        response.json().await.map_err(|source| PagstarError::Decode { operation: "cob", source })?;
                    return Ok(Some(cob));
                }
                404 => return Ok(None),
                401 if refused.is_none() => {
                    tracing::info!(provider = "pagstar", "token refused by Pagstar; refreshing once");
                    refused = Some(token);
                }
                status => return Err(PagstarError::Status { operation: "cob", status }),
            }
        }
    }

    /// A valid token: the cached one unless it is near expiry or is `refused` (Pagstar
    /// answered 401 to it). Calls refused the same token at once refresh it once: the
    /// others find the new one cached.
    async fn token(&self, refused: Option<&Secret>) -> Result<Secret, PagstarError> {
        let mut cached = self.token.lock().await;
        let usable = |t: &&CachedToken| {
            Instant::now() < t.refresh_at && refused.is_none_or(|r| !t.token.matches(r.expose().as_bytes()))
        };
        if let Some(token) = cached.as_ref().filter(usable) {
            return Ok(token.token.clone());
        }
        if !self.rate.take().await {
            return Err(PagstarError::RateLimited);
        }
        let response = self
            .http
            .post(format!("{}/oauth/token", self.api_url))
            .basic_auth(&self.client_id, Some(self.client_secret.expose()))
            .form(&[("grant_type", "client_credentials")])
            .send()
            .await
            .map_err(PagstarError::Request)?;
        if !response.status().is_success() {
            return Err(PagstarError::Status { operation: "oauth/token", status: response.status().as_u16() });
        }
        let body: TokenResponse =
            response.json().await.map_err(|source| PagstarError::Decode { operation: "oauth/token", source })?;
        // At most a day: a huge `expires_in` must not overflow the clock.
        let lifetime = Duration::from_secs(body.expires_in.unwrap_or(300).min(86_400));
        let token = Secret::new(body.access_token);
        *cached = Some(CachedToken {
            token: token.clone(),
            refresh_at: Instant::now() + lifetime.saturating_sub(TOKEN_REFRESH_MARGIN),
        });
        Ok(token)
    }
}
