//! Pagstar (Brazil Pix) webhook.
//!
//! Pagstar's webhook carries no signature, so it is only a hint: for each `txid` it
//! names, we ask Pagstar (`GET /cob/{txid}`) and act only on what that returns, amount
//! included. The webhook function checks the hint's shape, queues its txids and answers
//! (`shared::hints`); the hint queue's consumer (`pagstar-confirm`) asks Pagstar. Pagstar
//! unreachable, slow or failing: nothing written, and SQS delivers the hint again. A txid
//! Pagstar does not know, or a status we do not know, is suspicious: logged at warn,
//! nothing applied.
//!
//! BACEN's rule for expiry: a charge still `ATIVA` past `calendario.criacao +
//! calendario.expiracao` can no longer be paid; it is `expired`, on the webhook path and
//! by the status sync alike (the one final status we derive without Pagstar saying it).

use http::StatusCode;
use serde::Deserialize;
use shared::model::{Amount, Observation, RefundObservation, RefundStatus, Status};
use shared::pipeline::{parse_json, parse_status, Inbound, Provider, WebhookError};
use shared::runtime::config::{ConfigError, Env, Setting};
use shared::runtime::SecretSpec;
use time::OffsetDateTime;

pub mod client;
mod limits;
pub mod status;

pub use client::{PagstarApi, PagstarCob, PagstarConfig, PagstarError};
pub use status::PagstarStatusApi;

#[cfg(feature = "simulator")]
pub mod simulator;
#[cfg(feature = "simulator")]
pub mod stand_in;

pub const METHOD: &str = "POST";
pub const PATH: &str = "/webhooks/pagstar/pix-payment";
/// Pix PSPs POST to the registered webhook URL with `/pix` appended (BACEN).
pub const PIX_PATH: &str = "/webhooks/pagstar/pix-payment/pix";
/// Pix charges are always in reais.
const CURRENCY: &str = "BRL";
/// Most txids one webhook may name (each costs a call to Pagstar).
const MAX_TXIDS: usize = 10;

/// The webhook body: the Pix API standard `{"pix": [...]}` or a flat `{"txid": "..."}`.
#[derive(Debug, Deserialize)]
pub struct PagstarWebhook {
    #[serde(default)]
    pub pix: Option<Vec<PagstarPix>>,
    #[serde(default)]
    pub txid: Option<String>,
}

/// One Pix entry. Only `txid` is used: the rest is not trusted.
#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct PagstarPix {
    #[serde(default)]
    pub txid: Option<String>,
    #[serde(default)]
    pub end_to_end_id: Option<String>,
}

/// The charge statuses of the Pix API.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum PagstarCobStatus {
    Ativa,
    Concluida,
    RemovidaPeloUsuarioRecebedor,
    RemovidaPeloPsp,
}

/// The statuses of a Pix return (BACEN's `devolucao`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum PagstarReturnStatus {
    EmProcessamento,
    Devolvido,
    NaoRealizado,
}

impl From<PagstarReturnStatus> for RefundStatus {
    fn from(status: PagstarReturnStatus) -> RefundStatus {
        match status {
            PagstarReturnStatus::EmProcessamento => RefundStatus::Pending,
            PagstarReturnStatus::Devolvido => RefundStatus::Succeeded,
            PagstarReturnStatus::NaoRealizado => RefundStatus::Failed,
        }
    }
}

impl From<PagstarCobStatus> for Status {
    fn from(status: PagstarCobStatus) -> Status {
        match status {
            PagstarCobStatus::Ativa => Status::Created,
            PagstarCobStatus::Concluida => Status::Completed,
            PagstarCobStatus::RemovidaPeloUsuarioRecebedor | PagstarCobStatus::RemovidaPeloPsp => Status::Canceled,
        }
    }
}

/// A txid a webhook named, and what Pagstar's API answered for it at `checked_at`
/// (`None`: Pagstar does not know the txid).
#[derive(Debug, Clone)]
pub struct PagstarCharge {
    pub txid: String,
    pub cob: Option<PagstarCob>,
    pub checked_at: OffsetDateTime,
}

/// [`Provider::HINT`]: the webhook's txids, checked, as `{"pix":[{"txid":"…"},…]}`;
/// nothing else of the unsigned body is queued.
fn hint(request: &Inbound) -> Result<Vec<u8>, WebhookError> {
    let txids = parse_json::<PagstarWebhook>(&request.body)?.txids()?;
    // Letters and digits only (`txids` checked them): nothing to escape.
    let pix: Vec<String> = txids.iter().map(|txid| format!(r#"{{"txid":"{txid}"}}"#)).collect();
    Ok(format!(r#"{{"pix":[{}]}}"#, pix.join(",")).into_bytes())
}

/// BACEN's txid (`[a-zA-Z0-9]{26,35}`): checked before it goes into a URL.
fn is_txid(txid: &str) -> bool {
    (26..=35).contains(&txid.len()) && txid.bytes().all(|b| b.is_ascii_alphanumeric())
}

impl PagstarWebhook {
    /// The distinct txids the webhook names, each checked to be a Pix txid
    /// (BACEN's: 26 to 35 letters and digits) before it goes into a URL.
    pub fn txids(self) -> Result<Vec<String>, WebhookError> {
        let mut txids: Vec<String> = self.pix.unwrap_or_default().into_iter().filter_map(|p| p.txid).collect();
        txids.extend(self.txid);
        txids.dedup();
        let invalid = |reason: &str| WebhookError::InvalidField { field: "txid", reason: reason.into() };
        if txids.is_empty() {
            return Err(invalid("no txid in the webhook"));
        }
        if txids.len() > MAX_TXIDS {
            return Err(invalid("too many txids in one webhook"));
        }
        for txid in &txids {
            if !is_txid(txid) {
                return Err(invalid("must be 26 to 35 letters and digits"));
            }
        }
        let mut seen = std::collections::HashSet::new();
        txids.retain(|t| seen.insert(t.clone()));
        Ok(txids)
    }
}

#[derive(Debug)]
pub struct Pagstar {
    api: PagstarApi,
    /// The txids a hint's lookup asked about lately ([`LOOKUP_INTERVAL`]).
    recent: limits::RecentLookups,
    /// How long past its expiry a charge still ATIVA is taken as expired ([`EXPIRY_MARGIN`]).
    expiry_margin: time::Duration,
}

impl Pagstar {
    pub fn new(api: PagstarApi) -> Self {
        Pagstar {
            api,
            expiry_margin: DEFAULT_EXPIRY_MARGIN,
            recent: limits::RecentLookups::new(DEFAULT_LOOKUP_INTERVAL),
        }
    }

    /// With one lookup of a txid per `interval` ([`LOOKUP_INTERVAL`]) on the hint path.
    pub fn with_lookup_interval(self, interval: std::time::Duration) -> Self {
        Pagstar { recent: limits::RecentLookups::new(interval), ..self }
    }

    /// With `margin` as [`EXPIRY_MARGIN`].
    pub fn with_expiry_margin(self, margin: time::Duration) -> Self {
        Pagstar { expiry_margin: margin, ..self }
    }

    pub fn api(&self) -> &PagstarApi {
        &self.api
    }

    /// What Pagstar says about `txid`, as an observation, or `None` if it is suspicious. A
    /// charge still ATIVA is expired only `margin` past its expiry: a payment made just
    /// before may still be settling.
    pub fn observe(charge: PagstarCharge, margin: time::Duration) -> Result<Option<Observation>, WebhookError> {
        let PagstarCharge { txid, cob, checked_at } = charge;
        let txid = txid.as_str();
        let Some(cob) = cob else {
            tracing::warn!(provider = Self::NAME, txid, "webhook names a txid Pagstar does not know: nothing applied");
            return Ok(None);
        };
        if cob.txid.as_deref().is_some_and(|t| t != txid) {
            tracing::warn!(provider = Self::NAME, txid, "Pagstar answered for another txid: nothing applied");
            return Ok(None);
        }
        let Ok(status) = parse_status::<PagstarCobStatus>(&cob.status) else {
            tracing::warn!(provider = Self::NAME, txid, provider_status = %cob.status, "unknown charge status: nothing applied");
            return Ok(None);
        };
        let expires_at = cob.expires_at();
        let expired = status == PagstarCobStatus::Ativa
            && expires_at.is_some_and(|at| at.checked_add(margin).is_some_and(|expired_at| checked_at >= expired_at));
        let canonical = if expired { Status::Expired } else { status.into() };
        let mut observation = Observation::new(txid, canonical, cob.status.clone());
        // The sync asks about an active charge once it can have expired, not before.
        observation.expires_at = expires_at.filter(|_| status == PagstarCobStatus::Ativa && !expired);
        // What was asked is `valor.original`; what was paid is the sum of `pix[].valor`.
        let payments = cob.payments();
        if let Some(original) = cob.valor.and_then(|v| v.original) {
            match Amount::from_json(&original) {
                Ok(asked) => observation.asked_amount = Some(asked),
                Err(_) => tracing::warn!(provider = Self::NAME, txid, "unreadable valor.original: no expected amount"),
            }
        }
        let mut paid = Vec::new();
        for pix in payments {
            for devolucao in pix.as_ref().map(client::PagstarPix::returns).unwrap_or_default() {
                refund(&mut observation, devolucao);
            }
            match pix.and_then(|p| p.valor) {
                Some(valor) => match Amount::from_json(&valor) {
                    Ok(amount) => paid.push(amount),
                    Err(_) => observation.set_amount_json(&valor),
                },
                // A payment whose amount is not there: the sum would understate what was paid.
                None => observation.unreadable_amount = Some("a pix[] entry without a readable valor".into()),
            }
        }
        if observation.unreadable_amount.is_none() {
            match Amount::sum(&paid) {
                Some(Ok(total)) => observation.amount = Some(total),
                Some(Err(_)) => observation.unreadable_amount = Some("sum of pix[].valor past 20 digits".into()),
                // A concluded charge was paid: its Pix payments should say how much.
                None => observation.amount_missing = status == PagstarCobStatus::Concluida,
            }
        }
        observation.currency = Some(CURRENCY.to_owned());
        Ok(Some(observation))
    }
}

/// A return of a Pix payment as a refund of the charge; one without an id or a known
/// status is not kept (logged): the charge's word is applied all the same.
fn refund(observation: &mut Observation, devolucao: Option<client::PagstarDevolucao>) {
    let txid = observation.reference.as_str();
    let Some(client::PagstarDevolucao { id: Some(id), valor, status: Some(word) }) = devolucao else {
        tracing::error!(provider = Pagstar::NAME, txid, "a Pix return without an id or a status: not kept");
        return;
    };
    let Ok(status) = parse_status::<PagstarReturnStatus>(&word) else {
        tracing::error!(provider = Pagstar::NAME, txid, refund = %id, provider_status = %word, "a Pix return of an unknown status: not kept");
        return;
    };
    let amount = valor.and_then(|v| Amount::from_json(&v).ok());
    let currency = Some(CURRENCY.to_owned());
    observation.add_refund(RefundObservation { id, status: status.into(), provider_status: word, amount, currency });
}

/// Pagstar's API and OAuth2 client: the hints' consumer needs both.
pub(crate) const PAGSTAR_API_URL: Setting = Setting::required("PAGSTAR_API_URL", "Pagstar's API base URL (https)");
pub(crate) const PAGSTAR_CLIENT_ID: Setting = Setting::required("PAGSTAR_CLIENT_ID", "Pagstar's OAuth2 client id");
/// `PAGSTAR_EXPIRY_MARGIN_SECONDS` (stack parameter `PagstarExpiryMarginSeconds`): how long
/// past `calendario.criacao + expiracao` a charge still ATIVA is taken as expired.
pub const EXPIRY_MARGIN: Setting = Setting::positive(
    "PAGSTAR_EXPIRY_MARGIN_SECONDS",
    EXPIRY_MARGIN_SECONDS as u64,
    "seconds past a charge's expiry before one still ATIVA is taken as expired (a payment made just before may still be settling)",
);
/// [`EXPIRY_MARGIN`]'s default (one number for the setting and the constructor's default).
const EXPIRY_MARGIN_SECONDS: u32 = 600;
const DEFAULT_EXPIRY_MARGIN: time::Duration = time::Duration::seconds(EXPIRY_MARGIN_SECONDS as i64);

/// `PAGSTAR_CALLS_PER_SECOND`: calls to Pagstar's API a second, per function instance.
pub const CALLS_PER_SECOND: Setting = Setting::positive(
    "PAGSTAR_CALLS_PER_SECOND",
    20,
    "calls to Pagstar's API a second per function instance (the hint consumer's MaximumConcurrency bounds the instances); a call that would wait over 5 s for its turn is made later",
);
/// `PAGSTAR_LOOKUP_INTERVAL_SECONDS`: a txid is looked up once per this interval on the
/// hint path, however many hints name it; a hint within it is received again later (its
/// visibility timeout), so a genuine one is looked up then and none is lost.
pub const LOOKUP_INTERVAL: Setting = Setting::positive(
    "PAGSTAR_LOOKUP_INTERVAL_SECONDS",
    LOOKUP_INTERVAL_SECONDS as u64,
    "a txid is looked up at most once in this many seconds per instance, however many hints name it (a hint within it is received again later)",
);
/// [`LOOKUP_INTERVAL`]'s default.
const LOOKUP_INTERVAL_SECONDS: u32 = 5;
const DEFAULT_LOOKUP_INTERVAL: std::time::Duration = std::time::Duration::from_secs(LOOKUP_INTERVAL_SECONDS as u64);
/// A hint naming a txid Pagstar does not know yet is received again (its visibility
/// timeout later) until its this-many-th receive, then acknowledged.
const UNKNOWN_RECEIVES: u32 = 3;

/// [`EXPIRY_MARGIN`] from `env`.
pub(crate) fn expiry_margin(env: &impl Env) -> Result<time::Duration, ConfigError> {
    let seconds = EXPIRY_MARGIN.number_from(env)?;
    Ok(time::Duration::seconds(i64::try_from(seconds).unwrap_or(i64::MAX)))
}

impl Provider for Pagstar {
    const NAME: &'static str = "pagstar";
    const ACK_STATUS: StatusCode = StatusCode::OK;
    const METHOD: &'static str = METHOD;
    const PATH: &'static str = PATH;
    const ALSO_AT: &'static [&'static str] = &[PIX_PATH];
    const HAS_STATUS_API: bool = true;
    const HINT: Option<shared::pipeline::HintCheck> = Some(hint);
    /// Its secret: the OAuth2 client secret, and the mutual-TLS certificate and key (both optional).
    const SECRET: SecretSpec = SecretSpec {
        arn: "PAGSTAR_SECRET_ARN",
        keys: &["PAGSTAR_CLIENT_SECRET", "PAGSTAR_CLIENT_CERT", "PAGSTAR_CLIENT_KEY"],
    };
    const SETTINGS: &'static [Setting] =
        &[PAGSTAR_API_URL, PAGSTAR_CLIENT_ID, EXPIRY_MARGIN, CALLS_PER_SECOND, LOOKUP_INTERVAL];
    const STATUS_API_SETTINGS: &'static [Setting] = &[
        Setting::optional(PAGSTAR_API_URL.name, None, "Pagstar's API base URL (https); unset, Pagstar is not synced"),
        PAGSTAR_CLIENT_ID,
        EXPIRY_MARGIN,
        CALLS_PER_SECOND,
    ];
    /// BACEN's txid: 26 to 35 letters and digits.
    fn check_reference(reference: &str) -> Result<(), WebhookError> {
        shared::pipeline::reference_format(reference, is_txid, "a txid is 26 to 35 letters and digits")
    }

    fn from_env(env: &impl Env) -> Result<Self, ConfigError> {
        let interval = std::time::Duration::from_secs(LOOKUP_INTERVAL.number_from(env)?);
        Ok(Pagstar::new(PagstarApi::new(PagstarConfig::from_env(env)?)?)
            .with_expiry_margin(expiry_margin(env)?)
            .with_lookup_interval(interval))
    }

    fn status_api(env: &impl Env) -> Result<Option<Box<dyn shared::pipeline::StatusSource>>, ConfigError> {
        Ok(PagstarStatusApi::from_env(env)?.map(|api| Box::new(api) as Box<dyn shared::pipeline::StatusSource>))
    }

    type Verified = Vec<PagstarCharge>;

    /// The webhook has no signature and is only a hint: each txid it names is looked up
    /// with Pagstar's API, and only those answers are trusted. Every txid is looked up
    /// before anything is written: one failure writes nothing. A txid looked up within
    /// [`LOOKUP_INTERVAL`] is not asked again now: the hint is received again later;
    /// calls keep to [`CALLS_PER_SECOND`]; a txid Pagstar does not know yet makes the
    /// hint be received again later, up to its third receive.
    async fn authenticate(&self, request: &Inbound, now: OffsetDateTime) -> Result<Vec<PagstarCharge>, WebhookError> {
        let hint: PagstarWebhook = parse_json(&request.body)?;
        let receive_count = request
            .header(shared::pipeline::HINT_RECEIVE_COUNT_HEADER)
            .and_then(|count| std::str::from_utf8(count).ok()?.parse::<u32>().ok())
            .unwrap_or(1);
        let txids = hint.txids()?;
        let mut claimed: Vec<&String> = Vec::with_capacity(txids.len());
        for txid in &txids {
            if !self.recent.claim(txid, now) {
                claimed.iter().for_each(|txid| self.recent.release(txid));
                let reason = "a txid looked up within PAGSTAR_LOOKUP_INTERVAL_SECONDS";
                return Err(WebhookError::RetryLater { reason });
            }
            claimed.push(txid);
        }
        let lookups = txids.iter().map(|txid| async move {
            match self.api.cob(txid).await {
                Ok(cob) => Ok(PagstarCharge { txid: txid.clone(), cob, checked_at: now }),
                Err(error) => {
                    self.recent.release(txid);
                    Err(if let PagstarError::RateLimited = error {
                        WebhookError::RetryLater { reason: "calls to Pagstar at their rate" }
                    } else {
                        WebhookError::Upstream(Box::new(error))
                    })
                }
            }
        });
        // At once: a hint's lookups take one request's time, within the consumer's timeout.
        let charges = futures_util::future::try_join_all(lookups).await?;
        let unknown: Vec<&str> = charges.iter().filter(|c| c.cob.is_none()).map(|c| c.txid.as_str()).collect();
        if !unknown.is_empty() && receive_count < UNKNOWN_RECEIVES {
            // Asked again on the later receive, whatever the interval.
            unknown.iter().for_each(|txid| self.recent.release(txid));
            return Err(WebhookError::RetryLater { reason: "a txid Pagstar does not know yet" });
        }
        Ok(charges)
    }

    fn normalize(&self, charges: Vec<PagstarCharge>) -> Result<Vec<Observation>, WebhookError> {
        let mut observations = Vec::new();
        for charge in charges {
            observations.extend(Pagstar::observe(charge, self.expiry_margin)?);
        }
        Ok(observations)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use shared::runtime::config::Secret;
    use wiremock::matchers::{body_string_contains, header, method, path};
    use wiremock::{Mock, MockServer, ResponseTemplate};

    const TXID: &str = "a1b2c3d4e5f6g7h8i9j0k1l2m3n4";

    fn config(url: &str) -> PagstarConfig {
        PagstarConfig {
            calls_per_second: 20,
            api_url: url.to_owned(),
            client_id: "client-id".into(),
            client_secret: Secret::new("client-secret"),
            client_identity: None,
        }
    }

    /// Pagstar against `server`, every hint looked up (no interval: the tests ask about
    /// one txid again and again).
    fn pagstar(server: &MockServer) -> Pagstar {
        Pagstar::new(PagstarApi::new(config(&server.uri())).expect("client"))
            .with_lookup_interval(std::time::Duration::ZERO)
    }

    fn webhook(body: &str) -> Inbound {
        Inbound::new(http::Method::POST, body)
    }

    fn pix(txid: &str) -> String {
        format!(
            r#"{{"pix":[{{"endToEndId":"E1234567820261122100000000000001","txid":"{txid}","valor":"999999.99","horario":"2026-11-22T10:00:00Z"}}]}}"#
        )
    }

    async fn token_endpoint(server: &MockServer, token: &str, expected_calls: u64) {
        Mock::given(method("POST"))
            .and(path("/oauth/token"))
            .and(header("authorization", "Basic Y2xpZW50LWlkOmNsaWVudC1zZWNyZXQ="))
            .and(body_string_contains("grant_type=client_credentials"))
            .respond_with(
                ResponseTemplate::new(200).set_body_json(
                    serde_json::json!({"access_token": token, "token_type": "Bearer", "expires_in": 300}),
                ),
            )
            .expect(expected_calls)
            .mount(server)
            .await;
    }

    fn cob(txid: &str, status: &str) -> ResponseTemplate {
        let pix = if status == "CONCLUIDA" {
            serde_json::json!([{"endToEndId": "E1", "txid": txid, "valor": "100.00"}, {"endToEndId": "E2", "valor": "23.40"}])
        } else {
            serde_json::json!([])
        };
        ResponseTemplate::new(200).set_body_json(serde_json::json!({
            "txid": txid, "status": status, "calendario": {"expiracao": 3600},
            "valor": {"original": "123.45"}, "chave": "pix@example.com", "pix": pix
        }))
    }

    async fn receive(pagstar: &Pagstar, body: &str) -> Result<Vec<Observation>, WebhookError> {
        pagstar.receive(&webhook(body), OffsetDateTime::UNIX_EPOCH).await
    }

    #[tokio::test]
    async fn maps_every_charge_status_from_the_api_not_the_webhook() {
        let server = MockServer::start().await;
        token_endpoint(&server, "t1", 1).await;
        let cases = [
            ("ATIVA", Status::Created),
            ("CONCLUIDA", Status::Completed),
            ("REMOVIDA_PELO_USUARIO_RECEBEDOR", Status::Canceled),
            ("REMOVIDA_PELO_PSP", Status::Canceled),
        ];
        let pagstar = pagstar(&server);
        for (i, (word, expected)) in cases.into_iter().enumerate() {
            let txid = format!("{TXID}{i}");
            Mock::given(method("GET"))
                .and(path(format!("/cob/{txid}")))
                .respond_with(cob(&txid, word))
                .mount(&server)
                .await;
            let observations = receive(&pagstar, &pix(&txid)).await.expect(word);
            assert_eq!(observations.len(), 1);
            assert_eq!(observations[0].status, expected);
            assert_eq!(observations[0].provider_status, word);
            let paid = (word == "CONCLUIDA").then_some("123.40");
            assert_eq!(
                observations[0].amount.as_ref().map(Amount::as_str),
                paid,
                "what was paid: the sum of pix[].valor"
            );
            assert_eq!(observations[0].asked_amount.as_ref().map(Amount::as_str), Some("123.45"), "what was asked");
            assert_eq!(observations[0].currency.as_deref(), Some("BRL"));
        }
        // Four webhooks, one token: the token is cached across invocations.
    }

    /// BACEN: a charge still ATIVA past criacao + expiracao is expired, once the margin
    /// (10 minutes by default) has passed too; before, created.
    #[tokio::test]
    async fn an_active_charge_past_its_expiry_is_expired() {
        let server = MockServer::start().await;
        token_endpoint(&server, "t", 1).await;
        let created = |txid: &str, criacao: &str, expiracao: Option<u64>| {
            let mut calendario = serde_json::json!({ "criacao": criacao });
            if let Some(seconds) = expiracao {
                calendario["expiracao"] = seconds.into();
            }
            ResponseTemplate::new(200).set_body_json(serde_json::json!({
                "txid": txid, "status": "ATIVA", "calendario": calendario, "valor": {"original": "1.00"}
            }))
        };
        let cases = [
            ("expiredcharge1000000000000", "1970-01-01T00:00:00Z", Some(60), Status::Expired),
            // Expired 8 minutes ago: a payment made just before may still settle.
            ("withinmargin01000000000000", "1970-01-01T00:00:00Z", Some(180), Status::Created),
            ("activecharge01000000000000", "1970-01-01T00:00:00Z", Some(3600), Status::Created),
            ("defaultday0001000000000000", "1970-01-01T00:00:00Z", None, Status::Created),
            ("defaultdaypast000000000000", "1969-12-30T00:00:00Z", None, Status::Expired),
        ];
        for (txid, criacao, expiracao, _) in cases {
            Mock::given(method("GET"))
                .and(path(format!("/cob/{txid}")))
                .respond_with(created(txid, criacao, expiracao))
                .mount(&server)
                .await;
        }
        let pagstar = pagstar(&server);
        let now = OffsetDateTime::UNIX_EPOCH + std::time::Duration::from_secs(660);
        for (txid, _, _, expected) in cases {
            let observations = pagstar.receive(&webhook(&pix(txid)), now).await.expect(txid);
            assert_eq!(observations[0].status, expected, "{txid}");
            assert_eq!(observations[0].provider_status, "ATIVA", "{txid}: Pagstar's word is kept");
            // The charge's expiry goes with it while it can still be paid: the sync asks then.
            let expiry = observations[0].expires_at.map(|at| (at - OffsetDateTime::UNIX_EPOCH).whole_seconds());
            let expected_expiry = match txid {
                "activecharge01000000000000" => Some(3_600),
                "withinmargin01000000000000" => Some(180),
                "defaultday0001000000000000" => Some(86_400),
                _ => None,
            };
            assert_eq!(expiry, expected_expiry, "{txid}");
        }
    }

    #[tokio::test]
    async fn sends_the_bearer_token_and_accepts_the_flat_body() {
        let server = MockServer::start().await;
        token_endpoint(&server, "token-abc", 1).await;
        Mock::given(method("GET"))
            .and(path(format!("/cob/{TXID}")))
            .and(header("authorization", "Bearer token-abc"))
            .respond_with(cob(TXID, "CONCLUIDA"))
            .expect(2)
            .mount(&server)
            .await;
        let pagstar = pagstar(&server);
        let flat = format!(r#"{{"txid":"{TXID}"}}"#);
        assert_eq!(receive(&pagstar, &flat).await.expect("flat").len(), 1);
        assert_eq!(receive(&pagstar, &pix(TXID)).await.expect("pix").len(), 1);
    }

    #[tokio::test]
    async fn refreshes_the_token_once_on_401() {
        let server = MockServer::start().await;
        token_endpoint(&server, "fresh", 2).await;
        Mock::given(method("GET"))
            .and(path(format!("/cob/{TXID}")))
            .respond_with(ResponseTemplate::new(401))
            .up_to_n_times(1)
            .expect(1)
            .mount(&server)
            .await;
        Mock::given(method("GET"))
            .and(path(format!("/cob/{TXID}")))
            .respond_with(cob(TXID, "CONCLUIDA"))
            .expect(1)
            .mount(&server)
            .await;
        let observations = receive(&pagstar(&server), &pix(TXID)).await.expect("after refresh");
        assert_eq!(observations[0].status, Status::Completed);
    }

    /// Many calls refused the same token at once (it was revoked): one new token, not one
    /// each.
    #[tokio::test]
    async fn calls_refused_the_same_token_at_once_refresh_it_once() {
        let server = MockServer::start().await;
        let token = |value: &str| {
            ResponseTemplate::new(200)
                .set_body_json(serde_json::json!({"access_token": value, "token_type": "Bearer", "expires_in": 300}))
        };
        Mock::given(method("POST"))
            .and(path("/oauth/token"))
            .respond_with(token("old"))
            .up_to_n_times(1)
            .expect(1)
            .mount(&server)
            .await;
        Mock::given(method("POST")).and(path("/oauth/token")).respond_with(token("new")).expect(1).mount(&server).await;
        Mock::given(method("GET"))
            .and(header("authorization", "Bearer old"))
            .respond_with(ResponseTemplate::new(401))
            .mount(&server)
            .await;
        Mock::given(method("GET"))
            .and(header("authorization", "Bearer new"))
            .respond_with(cob(TXID, "CONCLUIDA").set_delay(std::time::Duration::from_millis(20)))
            .mount(&server)
            .await;
        let pagstar = pagstar(&server);
        let calls = (0..8).map(|_| pagstar.api().cob(TXID));
        for answer in futures_util::future::join_all(calls).await {
            assert!(answer.expect("answered after one refresh").is_some());
        }
        // The token endpoint's expectations (one each) are checked when the server drops.
    }

    /// A token's lifetime is Pagstar's to say, within a day: the largest `expires_in` JSON
    /// can carry neither overflows the clock nor keeps a token for ever.
    #[tokio::test]
    async fn a_huge_token_lifetime_is_clamped() {
        let server = MockServer::start().await;
        let token = ResponseTemplate::new(200)
            .set_body_json(serde_json::json!({"access_token": "t", "token_type": "Bearer", "expires_in": u64::MAX}));
        Mock::given(method("POST")).and(path("/oauth/token")).respond_with(token).expect(1).mount(&server).await;
        Mock::given(method("GET")).respond_with(cob(TXID, "CONCLUIDA")).expect(2).mount(&server).await;
        let pagstar = pagstar(&server);
        for _ in 0..2 {
            let observations = receive(&pagstar, &pix(TXID)).await.expect("answered");
            assert_eq!(observations[0].status, Status::Completed);
        }
    }

    #[tokio::test]
    async fn a_second_401_is_an_upstream_failure_not_a_loop() {
        let server = MockServer::start().await;
        token_endpoint(&server, "t", 2).await;
        Mock::given(method("GET")).respond_with(ResponseTemplate::new(401)).expect(2).mount(&server).await;
        let error = receive(&pagstar(&server), &pix(TXID)).await.expect_err("401 twice");
        assert_eq!(error.status().as_u16(), 503);
    }

    #[tokio::test]
    async fn unknown_txids_and_statuses_are_suspicious_and_acknowledged() {
        let server = MockServer::start().await;
        token_endpoint(&server, "t", 1).await;
        Mock::given(method("GET"))
            .and(path("/cob/unknown1000000000000000000"))
            .respond_with(ResponseTemplate::new(404))
            .mount(&server)
            .await;
        Mock::given(method("GET"))
            .and(path("/cob/weird100000000000000000000"))
            .respond_with(cob("weird100000000000000000000", "EM_ANALISE"))
            .mount(&server)
            .await;
        Mock::given(method("GET"))
            .and(path("/cob/other100000000000000000000"))
            .respond_with(cob("someoneelse000000000000000", "CONCLUIDA"))
            .mount(&server)
            .await;
        let pagstar = pagstar(&server);
        // A txid Pagstar does not know yet: received again later (503 to the consumer),
        // then, on its third receive, acknowledged with nothing applied.
        let received = |count: u32, txid: &str| {
            webhook(&pix(txid)).with_header(shared::pipeline::HINT_RECEIVE_COUNT_HEADER, &count.to_string())
        };
        for count in [1, 2] {
            let request = received(count, "unknown1000000000000000000");
            let error = pagstar.receive(&request, OffsetDateTime::UNIX_EPOCH).await.expect_err("not yet known");
            assert_eq!((error.status().as_u16(), error.code()), (503, "retry_later"), "receive {count}");
        }
        let last = pagstar.receive(&received(3, "unknown1000000000000000000"), OffsetDateTime::UNIX_EPOCH).await;
        assert!(last.expect("acknowledged").is_empty());
        for txid in ["weird100000000000000000000", "other100000000000000000000"] {
            assert!(receive(&pagstar, &pix(txid)).await.expect(txid).is_empty(), "{txid}");
        }
    }

    /// However many hints name a txid, it is looked up once per interval; a failed lookup
    /// gives its turn back.
    #[tokio::test]
    async fn a_txid_is_looked_up_once_per_interval_however_many_hints_name_it() {
        let server = MockServer::start().await;
        token_endpoint(&server, "t", 1).await;
        Mock::given(method("GET"))
            .and(path(format!("/cob/{TXID}")))
            .respond_with(cob(TXID, "CONCLUIDA"))
            .expect(1)
            .mount(&server)
            .await;
        let pagstar = pagstar(&server).with_lookup_interval(std::time::Duration::from_secs(60));
        let body = pix(TXID);
        let hints = (0..20).map(|_| receive(&pagstar, &body));
        let results = futures_util::future::join_all(hints).await;
        let applied: usize = results.iter().filter_map(|r| r.as_ref().ok()).map(Vec::len).sum();
        assert_eq!(applied, 1, "one lookup for all twenty hints");
        for later in results.iter().filter_map(|r| r.as_ref().err()) {
            assert_eq!((later.status().as_u16(), later.code()), (503, "retry_later"), "received again later");
        }
        assert_eq!(results.iter().filter(|r| r.is_err()).count(), 19);
        // The mock's expect(1) is checked when the server drops.
    }

    #[tokio::test]
    async fn pagstar_failing_slow_or_unreachable_is_503() {
        let server = MockServer::start().await;
        token_endpoint(&server, "t", 1).await;
        Mock::given(method("GET"))
            .and(path("/cob/fivehundred000000000000000"))
            .respond_with(ResponseTemplate::new(502))
            .mount(&server)
            .await;
        Mock::given(method("GET"))
            .and(path("/cob/slow0000000000000000000000"))
            .respond_with(
                cob("slow0000000000000000000000", "CONCLUIDA")
                    .set_delay(client::REQUEST_TIMEOUT + std::time::Duration::from_secs(1)),
            )
            .mount(&server)
            .await;
        let pagstar = pagstar(&server);
        for txid in ["fivehundred000000000000000", "slow0000000000000000000000"] {
            let error = receive(&pagstar, &pix(txid)).await.expect_err(txid);
            assert_eq!(error.status().as_u16(), 503, "{txid}");
            assert_eq!(error.code(), "upstream_unavailable");
        }
        let closed = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
        let url = format!("http://127.0.0.1:{}", closed.local_addr().expect("addr").port());
        drop(closed);
        let unreachable = Pagstar::new(PagstarApi::new(config(&url)).expect("client"));
        assert_eq!(receive(&unreachable, &pix(TXID)).await.expect_err("refused").status().as_u16(), 503);
    }

    #[tokio::test]
    async fn one_failing_txid_fails_the_whole_webhook() {
        let server = MockServer::start().await;
        token_endpoint(&server, "t", 1).await;
        Mock::given(method("GET"))
            .and(path("/cob/good1000000000000000000000"))
            .respond_with(cob("good1000000000000000000000", "CONCLUIDA"))
            .mount(&server)
            .await;
        Mock::given(method("GET"))
            .and(path("/cob/bad10000000000000000000000"))
            .respond_with(ResponseTemplate::new(500))
            .mount(&server)
            .await;
        let body = r#"{"pix":[{"txid":"good1000000000000000000000"},{"txid":"bad10000000000000000000000"}]}"#;
        assert_eq!(receive(&pagstar(&server), body).await.expect_err("one fails").status().as_u16(), 503);
    }

    #[tokio::test]
    async fn bad_hints_are_rejected_before_any_call() {
        let server = MockServer::start().await;
        Mock::given(wiremock::matchers::any()).respond_with(ResponseTemplate::new(500)).expect(0).mount(&server).await;
        let pagstar = pagstar(&server);
        let cases = [
            ("malformed", "{", 400),
            ("no txid", r#"{"pix":[{"endToEndId":"E1"}]}"#, 400),
            ("empty", "{}", 400),
            ("path traversal", r#"{"txid":"../oauth/token"}"#, 400),
            ("too long", &format!(r#"{{"txid":"{}"}}"#, "a".repeat(36)), 400),
        ];
        for (name, body, status) in cases {
            assert_eq!(receive(&pagstar, body).await.expect_err(name).status().as_u16(), status, "{name}");
        }
    }

    /// What the webhook function queues: the checked txids, once each, and nothing else
    /// of the body; what the consumer's `authenticate` reads back is the same txids.
    #[test]
    fn a_hint_is_queued_as_its_txids_alone() {
        let body = r#"{"pix":[{"txid":"abc10000000000000000000000","valor":"9.99","infoPagador":"x"},{"txid":"abc10000000000000000000000"},{"txid":"xyz20000000000000000000000"}],"txid":"flat3000000000000000000000"}"#;
        let queued = hint(&webhook(body)).expect("a hint");
        assert_eq!(
            String::from_utf8_lossy(&queued),
            r#"{"pix":[{"txid":"abc10000000000000000000000"},{"txid":"xyz20000000000000000000000"},{"txid":"flat3000000000000000000000"}]}"#
        );
        let read: PagstarWebhook = parse_json(&queued).expect("what authenticate reads");
        assert_eq!(
            read.txids().expect("txids"),
            ["abc10000000000000000000000", "xyz20000000000000000000000", "flat3000000000000000000000"]
        );
        for bad in ["{", "{}", r#"{"txid":"../oauth/token"}"#, r#"{"pix":[{"endToEndId":"E1"}]}"#] {
            assert_eq!(hint(&webhook(bad)).expect_err(bad).status().as_u16(), 400, "{bad}");
        }
        assert!(Pagstar::HINT.is_some(), "Pagstar's webhook is a hint");
    }

    #[test]
    fn configuration() {
        let base = [
            ("PAGSTAR_API_URL", "https://api.pagstar.example/"),
            ("PAGSTAR_CLIENT_ID", "id"),
            ("PAGSTAR_CLIENT_SECRET", "secret"),
        ];
        let config = PagstarConfig::from_env(&base).expect("config");
        assert_eq!(config.api_url, "https://api.pagstar.example");
        assert!(config.client_identity.is_none());
        assert!(!format!("{config:?}").contains("secret\""));
        let plain = [
            ("PAGSTAR_API_URL", "http://api.pagstar.example"),
            ("PAGSTAR_CLIENT_ID", "id"),
            ("PAGSTAR_CLIENT_SECRET", "s"),
        ];
        assert!(matches!(PagstarConfig::from_env(&plain), Err(ConfigError::Invalid { name: "PAGSTAR_API_URL", .. })));
        let half = [
            ("PAGSTAR_API_URL", "https://x.example"),
            ("PAGSTAR_CLIENT_ID", "id"),
            ("PAGSTAR_CLIENT_SECRET", "s"),
            ("PAGSTAR_CLIENT_CERT", "-----BEGIN CERTIFICATE-----"),
        ];
        assert_eq!(PagstarConfig::from_env(&half).expect_err("half"), ConfigError::Missing("PAGSTAR_CLIENT_KEY"));
    }

    #[test]
    fn mutual_tls_identity_is_loaded_when_configured() {
        let cert = include_str!("../../../dev-keys/pagstar-dev-client.crt");
        let key = include_str!("../../../dev-keys/pagstar-dev-client.key");
        let mut config = config("https://api.pagstar.example");
        config.client_identity = Some((cert.to_owned(), Secret::new(key)));
        let api = PagstarApi::new(config.clone()).expect("identity loads");
        assert!(api.uses_client_certificate());
        config.client_identity =
            Some((cert.to_owned(), Secret::new("-----BEGIN PRIVATE KEY-----\nAAAA\n-----END PRIVATE KEY-----")));
        let result = PagstarApi::new(config);
        assert!(matches!(result, Err(ConfigError::Invalid { name: "PAGSTAR_CLIENT_CERT", .. })), "{result:?}");
        let plain = PagstarApi::new(self::config("https://api.pagstar.example")).expect("no identity");
        assert!(!plain.uses_client_certificate());
    }

    /// What was paid is read entry by entry: an odd `pix` never hides the charge's status,
    /// and an entry whose amount is missing makes the amount unreadable, not smaller.
    #[test]
    fn odd_pix_lists_never_hide_the_charge() {
        let charge = |pix: &str| {
            let cob: client::PagstarCob = serde_json::from_str(&format!(
                r#"{{"txid":"{TXID}","status":"CONCLUIDA","valor":{{"original":"10.00"}}{pix}}}"#
            ))
            .expect("the charge decodes");
            let charge = PagstarCharge { txid: TXID.into(), cob: Some(cob), checked_at: OffsetDateTime::UNIX_EPOCH };
            Pagstar::observe(charge, DEFAULT_EXPIRY_MARGIN).expect("observed").expect("applied")
        };
        for (pix, amount, unreadable, missing) in [
            (r#","pix":[{"valor":"4.00"},{"valor":6}]"#, Some("10.00"), false, false),
            (r#","pix":null"#, None, false, true),
            ("", None, false, true),
            (r#","pix":[]"#, None, false, true),
            (r#","pix":[null]"#, None, true, false),
            (r#","pix":[{"endToEndId":"E1"}]"#, None, true, false),
            (r#","pix":"x""#, None, true, false),
            (r#","pix":[{"valor":"4.00"},{"valor":"-1"}]"#, None, true, false),
        ] {
            let observation = charge(pix);
            assert_eq!(observation.status, Status::Completed, "{pix}");
            assert_eq!(observation.amount.as_ref().map(Amount::as_str), amount, "{pix}");
            assert_eq!(observation.unreadable_amount.is_some(), unreadable, "{pix}");
            assert_eq!(observation.amount_missing, missing, "{pix}");
            assert_eq!(observation.asked_amount.as_ref().map(Amount::as_str), Some("10.00"), "{pix}");
        }
    }
}
