//! The same scenarios for every provider (AZQR's, with its outage cases, are in azqr.rs),
//! against DynamoDB Local, the SQS server and, for Pagstar, the stand-in over HTTP:
//! a full sequence, every event twice, events out of order, conflicting finals, and
//! bad inputs that answer 4xx and write nothing.

use crate::support::{unique_number, Harness};
use jsonwebtoken::{Algorithm, EncodingKey, Header};
use lambda_http::{Body, Request, RequestExt};
use local_pipeline::pagstar_standin::{self, StandIn};
use serde_json::json;
use shared::model::{decide, event_id, Decision};
use shared::{Provider, Secret, Status, Webhook};
use time::OffsetDateTime;

fn at(seconds: i64) -> OffsetDateTime {
    OffsetDateTime::from_unix_timestamp(1_795_000_000 + seconds).expect("timestamp")
}

/// How to speak one provider's webhook.
trait Driver {
    type P: Provider;
    const NAME: &'static str;
    /// Provider status words from first to final.
    const SEQUENCE: &'static [&'static str];
    /// Two different final words.
    const CONFLICT: (&'static str, &'static str);
    fn provider(&self) -> Self::P;
    fn status_of(word: &str) -> Status;
    fn new_reference(&self) -> String;
    /// The key the transaction is stored under.
    fn stored_reference(reference: &str) -> String {
        reference.to_owned()
    }
    /// A genuine webhook saying `word` about `reference`, sent at `now`.
    fn request(&self, reference: &str, word: &str, now: OffsetDateTime) -> Request;
    /// A webhook that fails verification, and the answer that deserves.
    fn unverified(&self, reference: &str, now: OffsetDateTime) -> (Request, u16);
    /// A request that passes verification (signed where the provider signs) carrying `body`.
    fn with_body(&self, body: &str, now: OffsetDateTime) -> Request;
    /// Verified, with a status nobody knows, and the answer that deserves.
    fn unknown_status(&self, reference: &str, now: OffsetDateTime) -> (Request, u16);
    /// For a provider that is asked for the truth: fixes `reference` at `word` before
    /// any delivery (default: nothing to fix).
    fn settle(&self, _reference: &str, _word: &str) {}
    /// One delivery in the concurrency test (default: the genuine webhook for `word`).
    fn delivery(&self, reference: &str, word: &str, now: OffsetDateTime) -> Request {
        self.request(reference, word, now)
    }
}

async fn send<D: Driver>(d: &D, webhook: &Webhook<D::P>, reference: &str, word: &str, t: i64) -> u16 {
    webhook.handle(d.request(reference, word, at(t)), at(t)).await.status().as_u16()
}

/// The status and number of applied transitions that a sequence should leave.
fn fold<D: Driver>(words: &[&str]) -> (Status, usize) {
    let mut current = None;
    let mut applied = 0;
    for word in words {
        let status = D::status_of(word);
        if decide(current, status) == Decision::Apply {
            current = Some(status);
            applied += 1;
        }
    }
    (current.expect("at least one word"), applied)
}

async fn full_sequence<D: Driver>(d: D) {
    let h = Harness::new().await;
    let webhook = Webhook::new(d.provider(), h.store.clone(), h.queue.clone());
    let reference = d.new_reference();
    for (t, word) in D::SEQUENCE.iter().enumerate() {
        assert_eq!(send(&d, &webhook, &reference, word, t as i64).await / 100, 2, "{word}");
    }
    let record = h.store.get(D::NAME, &D::stored_reference(&reference)).await.expect("get").expect("item");
    let (status, applied) = fold::<D>(D::SEQUENCE);
    assert_eq!(record.status, status);
    assert_eq!(record.history.len(), applied);
    assert_eq!(record.provider_status, *D::SEQUENCE.last().expect("sequence"));
    let events = h.drain_events().await;
    assert_eq!(events.len(), 1, "{events:?}");
    assert_eq!(events[0].id, event_id(D::NAME, &D::stored_reference(&reference), status));
    assert_eq!(events[0].data, record);
}

async fn every_event_twice<D: Driver>(d: D) {
    let h = Harness::new().await;
    let webhook = Webhook::new(d.provider(), h.store.clone(), h.queue.clone());
    let reference = d.new_reference();
    for (t, word) in D::SEQUENCE.iter().enumerate() {
        for repeat in 0..2 {
            let t = (t * 2 + repeat) as i64;
            assert_eq!(send(&d, &webhook, &reference, word, t).await / 100, 2, "{word}");
        }
    }
    let record = h.store.get(D::NAME, &D::stored_reference(&reference)).await.expect("get").expect("item");
    let (status, applied) = fold::<D>(D::SEQUENCE);
    assert_eq!((record.status, record.history.len()), (status, applied));
    assert_eq!(h.drain_events().await.len(), 1);
    assert_eq!(h.item_count().await, 1);
}

async fn out_of_order<D: Driver>(d: D) {
    let h = Harness::new().await;
    let webhook = Webhook::new(d.provider(), h.store.clone(), h.queue.clone());
    let reference = d.new_reference();
    let reversed: Vec<&str> = D::SEQUENCE.iter().rev().copied().collect();
    for (t, word) in reversed.iter().enumerate() {
        assert_eq!(send(&d, &webhook, &reference, word, t as i64).await / 100, 2, "{word}");
    }
    let record = h.store.get(D::NAME, &D::stored_reference(&reference)).await.expect("get").expect("item");
    assert_eq!(record.status, D::status_of(reversed[0]), "the final status, sent first, stays");
    assert_eq!(record.history.len(), 1);
    assert_eq!(h.drain_events().await.len(), 1);
}

async fn conflicting_finals<D: Driver>(d: D) {
    let h = Harness::new().await;
    let webhook = Webhook::new(d.provider(), h.store.clone(), h.queue.clone());
    let reference = d.new_reference();
    let (first, second) = D::CONFLICT;
    assert_eq!(send(&d, &webhook, &reference, first, 0).await / 100, 2);
    assert_eq!(send(&d, &webhook, &reference, second, 1).await / 100, 2, "a conflict is acknowledged");
    let record = h.store.get(D::NAME, &D::stored_reference(&reference)).await.expect("get").expect("item");
    assert_eq!(record.status, D::status_of(first));
    assert_eq!(record.history.len(), 1);
    let ids: Vec<String> = h.drain_events().await.into_iter().map(|e| e.id).collect();
    assert_eq!(ids, [event_id(D::NAME, &D::stored_reference(&reference), D::status_of(first))]);
}

async fn bad_inputs_write_nothing<D: Driver>(d: D) {
    let h = Harness::new().await;
    let webhook = Webhook::new(d.provider(), h.store.clone(), h.queue.clone());
    let reference = d.new_reference();
    let final_word = D::SEQUENCE.last().expect("sequence");
    let mut oversized = d.request(&reference, final_word, at(0));
    *oversized.body_mut() = Body::Text(format!("{{\"padding\":\"{}\"}}", "x".repeat(300 * 1024)));
    let mut wrong_type = d.request(&reference, final_word, at(0));
    wrong_type.headers_mut().insert("content-type", http::HeaderValue::from_static("text/plain"));
    let (unknown, unknown_status) = d.unknown_status(&reference, at(0));
    let (unverified, unverified_status) = d.unverified(&reference, at(0));
    let cases = [
        ("unverified", unverified, unverified_status),
        ("malformed JSON", d.with_body("{\"a\":", at(0)), 400),
        ("empty body", d.with_body("", at(0)), 400),
        ("not JSON", d.with_body("status=completed", at(0)), 400),
        ("JSON of the wrong shape", d.with_body("[1, 2, 3]", at(0)), 400),
        ("missing fields", d.with_body("{}", at(0)), 400),
        (
            "wrong types",
            d.with_body(r#"{"payload": 7, "trackid": [], "txid": {}, "webhook_type": 1, "status": false}"#, at(0)),
            400,
        ),
        ("unknown status", unknown, unknown_status),
        ("oversized body", oversized, 413),
        ("wrong content type", wrong_type, 415),
    ];
    for (name, request, status) in cases {
        let response = webhook.handle(request, at(0)).await;
        assert_eq!(response.status().as_u16(), status, "{} {name}", D::NAME);
        if status >= 400 {
            let body: serde_json::Value = serde_json::from_slice(response.body().as_ref()).expect("JSON error");
            assert!(body["error"]["code"].is_string(), "{name}");
        }
    }
    assert_eq!(h.item_count().await, 0, "bad input wrote an item");
    assert!(h.drain_events().await.is_empty(), "bad input queued an event");
}

macro_rules! scenarios {
    ($module:ident, $driver:expr) => {
        mod $module {
            use super::*;
            #[tokio::test]
            async fn full_sequence() {
                super::full_sequence($driver).await
            }
            #[tokio::test]
            async fn every_event_twice() {
                super::every_event_twice($driver).await
            }
            #[tokio::test]
            async fn out_of_order() {
                super::out_of_order($driver).await
            }
            #[tokio::test]
            async fn conflicting_finals() {
                super::conflicting_finals($driver).await
            }
            #[tokio::test]
            async fn bad_inputs_write_nothing() {
                super::bad_inputs_write_nothing($driver).await
            }
        }
    };
}

fn post(path: &str) -> http::request::Builder {
    http::Request::builder().method("POST").uri(path).header("content-type", "application/json")
}

// --- Pay3 -------------------------------------------------------------------------

struct Pay3Driver;
const PAY3_SECRET: &str = "integration-pay3-secret";

impl Pay3Driver {
    fn jwt(reference: &str, word: &str, secret: &str) -> String {
        let claims = json!({"data": {"orderType": "CRYPTO", "orderId": reference, "orderStatus": word}, "type": "t"});
        jsonwebtoken::encode(&Header::new(Algorithm::HS384), &claims, &EncodingKey::from_secret(secret.as_bytes()))
            .expect("jwt")
    }
    fn with_payload(jwt: &str) -> Request {
        let body = json!({ "payload": jwt }).to_string();
        post(pay3_webhook::PATH).body(Body::Text(body)).expect("request")
    }
}

impl Driver for Pay3Driver {
    type P = pay3_webhook::Pay3;
    const NAME: &'static str = "pay3";
    const SEQUENCE: &'static [&'static str] = &["CREATED", "ORDER_STARTED", "ORDER_PAYMENT_PROCESSING", "COMPLETED"];
    const CONFLICT: (&'static str, &'static str) = ("COMPLETED", "FAILED");
    fn provider(&self) -> Self::P {
        pay3_webhook::Pay3::new(&Secret::new(PAY3_SECRET), Algorithm::HS384)
    }
    fn status_of(word: &str) -> Status {
        let status: pay3_webhook::Pay3OrderStatus = shared::parse_status(word).expect("known word");
        status.canonical(None).expect("not a sub-status")
    }
    fn new_reference(&self) -> String {
        format!("order-{}", unique_number())
    }
    fn stored_reference(reference: &str) -> String {
        format!("{reference}:CRYPTO")
    }
    fn request(&self, reference: &str, word: &str, _now: OffsetDateTime) -> Request {
        Self::with_payload(&Self::jwt(reference, word, PAY3_SECRET))
    }
    fn unverified(&self, reference: &str, _now: OffsetDateTime) -> (Request, u16) {
        (Self::with_payload(&Self::jwt(reference, "COMPLETED", "not-the-secret")), 401)
    }
    fn with_body(&self, body: &str, _now: OffsetDateTime) -> Request {
        post(pay3_webhook::PATH).body(Body::Text(body.into())).expect("request")
    }
    fn unknown_status(&self, reference: &str, _now: OffsetDateTime) -> (Request, u16) {
        (Self::with_payload(&Self::jwt(reference, "TELEPORTED", PAY3_SECRET)), 422)
    }
}

scenarios!(pay3, Pay3Driver);

// --- QI Tech ----------------------------------------------------------------------

struct QiTechDriver;
const QITECH_CLIENT_KEY: &str = "integration-qitech-client-key";

impl QiTechDriver {
    fn signed(body: String, now: OffsetDateTime, client_key: &str) -> Request {
        let pem = std::fs::read_to_string(crate::support::root().join("dev-keys/qitech-dev-private.pem")).expect("key");
        let signer = qitech_webhook::signing::QiTechSigner::from_pkcs8_pem(&pem).expect("signer");
        let jwt = signer.sign(body.as_bytes(), "POST", qitech_webhook::PATH, now);
        post(qitech_webhook::PATH)
            .header("authorization", jwt)
            .header("api-client-key", client_key)
            .body(Body::Text(body))
            .expect("request")
    }
    fn body(reference: &str, word: &str) -> String {
        format!(
            r#"{{"webhook_type":"baas.invoice.payment_instrument_entry","data":{{"payment_instrument_entry_key":"{reference}","payment_instrument_entry_amount":99.90,"payment_instrument_entry_status":"{word}"}}}}"#
        )
    }
}

impl Driver for QiTechDriver {
    type P = qitech_webhook::QiTech;
    const NAME: &'static str = "qitech";
    const SEQUENCE: &'static [&'static str] = &["processing_conclusion", "concluded"];
    const CONFLICT: (&'static str, &'static str) = ("concluded", "canceled");
    fn provider(&self) -> Self::P {
        let pem = std::fs::read_to_string(crate::support::root().join("dev-keys/qitech-dev-public.pem")).expect("key");
        let key = qitech_webhook::parse_public_key(&pem).expect("public key");
        qitech_webhook::QiTech::new(key, Secret::new(QITECH_CLIENT_KEY), qitech_webhook::PATH)
    }
    fn status_of(word: &str) -> Status {
        shared::parse_status::<qitech_webhook::QiTechEntryStatus>(word).expect("known word").canonical()
    }
    fn new_reference(&self) -> String {
        format!("00000000-0000-4000-8000-{:012}", unique_number() % 1_000_000_000_000)
    }
    fn request(&self, reference: &str, word: &str, now: OffsetDateTime) -> Request {
        Self::signed(Self::body(reference, word), now, QITECH_CLIENT_KEY)
    }
    fn unverified(&self, reference: &str, now: OffsetDateTime) -> (Request, u16) {
        (Self::signed(Self::body(reference, "concluded"), now, "wrong-client-key"), 401)
    }
    fn with_body(&self, body: &str, now: OffsetDateTime) -> Request {
        Self::signed(body.into(), now, QITECH_CLIENT_KEY)
    }
    fn unknown_status(&self, reference: &str, now: OffsetDateTime) -> (Request, u16) {
        (Self::signed(Self::body(reference, "teleported"), now, QITECH_CLIENT_KEY), 422)
    }
}

scenarios!(qitech, QiTechDriver);

// --- Key2Pay ----------------------------------------------------------------------

struct Key2PayDriver;
const KEY2PAY_TOKEN: &str = "integration-key2pay-token";

impl Key2PayDriver {
    fn notification(reference: &str, word: &str, token: Option<&str>) -> Request {
        // Words: AUTHORIZATION, CAPTURE (successful) or CAPTURE_DECLINED.
        let (action, result, code) = match word {
            "CAPTURE_DECLINED" => ("CAPTURE", "Failed", "05"),
            other => (other, "Successful", "0"),
        };
        let body = json!({
            "transactionid": unique_number().to_string(), "trackid": reference, "action": action, "result": result,
            "responsecode": code, "responsedescription": "Do not honor", "amount": "2000.00", "currencycode": "PHP",
            "merchantcode": "INSTAPAYTEST001", "card": "20000000****0008"
        })
        .to_string();
        let query: std::collections::HashMap<String, String> =
            token.map(|t| ("token".to_owned(), t.to_owned())).into_iter().collect();
        post(key2pay_webhook::PATH).body(Body::Text(body)).expect("request").with_query_string_parameters(query)
    }
}

impl Driver for Key2PayDriver {
    type P = key2pay_webhook::Key2Pay;
    const NAME: &'static str = "key2pay";
    const SEQUENCE: &'static [&'static str] = &["AUTHORIZATION", "CAPTURE"];
    const CONFLICT: (&'static str, &'static str) = ("CAPTURE", "CAPTURE_DECLINED");
    fn provider(&self) -> Self::P {
        key2pay_webhook::Key2Pay::new(Secret::new(KEY2PAY_TOKEN))
    }
    fn status_of(word: &str) -> Status {
        match word {
            "AUTHORIZATION" => Status::Processing,
            "CAPTURE" => Status::Completed,
            _ => Status::Failed,
        }
    }
    fn new_reference(&self) -> String {
        format!("track-{}", unique_number())
    }
    fn request(&self, reference: &str, word: &str, _now: OffsetDateTime) -> Request {
        Self::notification(reference, word, Some(KEY2PAY_TOKEN))
    }
    fn unverified(&self, reference: &str, _now: OffsetDateTime) -> (Request, u16) {
        (Self::notification(reference, "CAPTURE", Some("integration-key2pay-tokem")), 401)
    }
    fn with_body(&self, body: &str, _now: OffsetDateTime) -> Request {
        let query = std::collections::HashMap::from([("token".to_owned(), KEY2PAY_TOKEN.to_owned())]);
        post(key2pay_webhook::PATH).body(Body::Text(body.into())).expect("request").with_query_string_parameters(query)
    }
    fn unknown_status(&self, reference: &str, _now: OffsetDateTime) -> (Request, u16) {
        (Self::notification(reference, "VOID", Some(KEY2PAY_TOKEN)), 422)
    }
}

scenarios!(key2pay, Key2PayDriver);

// --- Pagstar ----------------------------------------------------------------------

/// Pagstar's webhook is only a hint: the driver sets the charge's status in the
/// stand-in (as Pagstar would after the payment), then sends the hint.
struct PagstarDriver {
    stand_in: StandIn,
}

impl PagstarDriver {
    fn hint(reference: &str) -> Request {
        let body = json!({ "pix": [{ "txid": reference, "endToEndId": "E1", "valor": "1.00" }] }).to_string();
        post(pagstar_webhook::PATH).body(Body::Text(body)).expect("request")
    }
}

impl Driver for PagstarDriver {
    type P = pagstar_webhook::Pagstar;
    const NAME: &'static str = "pagstar";
    const SEQUENCE: &'static [&'static str] = &["ATIVA", "CONCLUIDA"];
    const CONFLICT: (&'static str, &'static str) = ("CONCLUIDA", "REMOVIDA_PELO_PSP");
    fn provider(&self) -> Self::P {
        let config = pagstar_webhook::PagstarConfig {
            api_url: self.stand_in.url.clone(),
            client_id: "id".into(),
            client_secret: Secret::new("secret"),
            client_identity: None,
        };
        pagstar_webhook::Pagstar::new(pagstar_webhook::PagstarApi::new(config).expect("client"))
    }
    fn status_of(word: &str) -> Status {
        shared::parse_status::<pagstar_webhook::PagstarCobStatus>(word).expect("known word").canonical()
    }
    fn new_reference(&self) -> String {
        format!("pagstar{:022}", unique_number())
    }
    fn request(&self, reference: &str, word: &str, _now: OffsetDateTime) -> Request {
        self.stand_in.set(reference, word, "100.00");
        Self::hint(reference)
    }
    fn unverified(&self, _reference: &str, _now: OffsetDateTime) -> (Request, u16) {
        // The hint carries no credential; what can be forged is the txid: one that can
        // never be a txid is refused before any call to Pagstar.
        let body = json!({ "txid": "../../oauth/token" }).to_string();
        (post(pagstar_webhook::PATH).body(Body::Text(body)).expect("request"), 400)
    }
    fn with_body(&self, body: &str, _now: OffsetDateTime) -> Request {
        post(pagstar_webhook::PATH).body(Body::Text(body.into())).expect("request")
    }
    fn unknown_status(&self, reference: &str, _now: OffsetDateTime) -> (Request, u16) {
        self.stand_in.set(reference, "EM_PROCESSAMENTO", "100.00");
        (Self::hint(reference), 200)
    }
    fn settle(&self, reference: &str, word: &str) {
        self.stand_in.set(reference, word, "100.00");
    }
    fn delivery(&self, reference: &str, _word: &str, _now: OffsetDateTime) -> Request {
        Self::hint(reference)
    }
}

async fn pagstar_driver() -> PagstarDriver {
    PagstarDriver { stand_in: pagstar_standin::start(Default::default()).await.expect("stand-in") }
}

mod pagstar {
    use super::*;
    #[tokio::test]
    async fn full_sequence() {
        super::full_sequence(pagstar_driver().await).await
    }
    #[tokio::test]
    async fn every_event_twice() {
        super::every_event_twice(pagstar_driver().await).await
    }
    #[tokio::test]
    async fn out_of_order() {
        // Pagstar is asked each time, so "out of order" is the charge's status going
        // back: a removed charge later reported ATIVA stays canceled.
        let d = pagstar_driver().await;
        let h = Harness::new().await;
        let webhook = Webhook::new(d.provider(), h.store.clone(), h.queue.clone());
        let reference = d.new_reference();
        assert_eq!(send(&d, &webhook, &reference, "REMOVIDA_PELO_USUARIO_RECEBEDOR", 0).await, 200);
        assert_eq!(send(&d, &webhook, &reference, "ATIVA", 1).await, 200);
        let record = h.store.get("pagstar", &reference).await.expect("get").expect("item");
        assert_eq!((record.status, record.history.len()), (Status::Canceled, 1));
        assert_eq!(h.drain_events().await.len(), 1);
    }
    #[tokio::test]
    async fn conflicting_finals() {
        super::conflicting_finals(pagstar_driver().await).await
    }
    #[tokio::test]
    async fn bad_inputs_write_nothing() {
        super::bad_inputs_write_nothing(pagstar_driver().await).await
    }
    #[tokio::test]
    async fn pagstar_unreachable_answers_503_and_writes_nothing() {
        let h = Harness::new().await;
        let config = pagstar_webhook::PagstarConfig {
            api_url: crate::support::closed_port_endpoint(),
            client_id: "id".into(),
            client_secret: Secret::new("secret"),
            client_identity: None,
        };
        let pagstar = pagstar_webhook::Pagstar::new(pagstar_webhook::PagstarApi::new(config).expect("client"));
        let webhook = Webhook::new(pagstar, h.store.clone(), h.queue.clone());
        let response = webhook.handle(PagstarDriver::hint(&format!("pagstar{:022}", unique_number())), at(0)).await;
        assert_eq!(response.status().as_u16(), 503);
        assert_eq!(h.item_count().await, 0);
        assert!(h.drain_events().await.is_empty());
    }

    #[tokio::test]
    async fn a_txid_pagstar_does_not_know_writes_nothing() {
        let d = pagstar_driver().await;
        let h = Harness::new().await;
        let webhook = Webhook::new(d.provider(), h.store.clone(), h.queue.clone());
        let response = webhook.handle(PagstarDriver::hint(&d.new_reference()), at(0)).await;
        assert_eq!(response.status().as_u16(), 200);
        assert_eq!(h.item_count().await, 0);
    }
    #[tokio::test]
    async fn the_amount_comes_from_pagstar_not_the_hint() {
        let d = pagstar_driver().await;
        let h = Harness::new().await;
        let webhook = Webhook::new(d.provider(), h.store.clone(), h.queue.clone());
        let reference = d.new_reference();
        d.stand_in.set(&reference, "CONCLUIDA", "42.10");
        let hint = json!({ "pix": [{ "txid": reference, "valor": "9999.99" }] }).to_string();
        let request = post(pagstar_webhook::PATH).body(Body::Text(hint)).expect("request");
        assert_eq!(webhook.handle(request, at(0)).await.status().as_u16(), 200);
        let record = h.store.get("pagstar", &reference).await.expect("get").expect("item");
        assert_eq!(record.amount.as_ref().map(shared::Amount::as_str), Some("42.10"));
        assert_eq!(record.currency.as_deref(), Some("BRL"));
    }
}

// --- AZQR (for the mixed concurrency test; its own scenarios are in azqr.rs) ---------

struct AzqrDriver;
const AZQR_KEY: &str = "integration-azqr-key";

impl Driver for AzqrDriver {
    type P = azqr_webhook::Azqr;
    const NAME: &'static str = "azqr";
    const SEQUENCE: &'static [&'static str] = &["read", "paid", "canceled", "completed"];
    const CONFLICT: (&'static str, &'static str) = ("completed", "expired");
    fn provider(&self) -> Self::P {
        azqr_webhook::Azqr::new(Secret::new(AZQR_KEY))
    }
    fn status_of(word: &str) -> Status {
        shared::parse_status::<azqr_webhook::AzqrStatus>(word).expect("known word").canonical()
    }
    fn new_reference(&self) -> String {
        crate::support::unique_rrn()
    }
    fn request(&self, reference: &str, word: &str, _now: OffsetDateTime) -> Request {
        crate::support::azqr_put(reference, Some(AZQR_KEY), &format!(r#"{{"status":"{word}"}}"#))
    }
    fn unverified(&self, reference: &str, now: OffsetDateTime) -> (Request, u16) {
        let mut request = self.request(reference, "completed", now);
        request.headers_mut().insert("apikey", http::HeaderValue::from_static("wrong"));
        (request, 401)
    }
    fn with_body(&self, body: &str, _now: OffsetDateTime) -> Request {
        let mut request = self.request("123456789012", "x", at(0));
        *request.body_mut() = Body::Text(body.into());
        request
    }
    fn unknown_status(&self, reference: &str, now: OffsetDateTime) -> (Request, u16) {
        (self.request(reference, "refunded", now), 422)
    }
}

// --- Many transactions, all providers, concurrently --------------------------------

/// A small deterministic generator, so a failure can be replayed from its seed.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0
    }
    fn below(&mut self, n: usize) -> usize {
        (self.next() % n as u64) as usize
    }
    fn shuffle<T>(&mut self, items: &mut [T]) {
        for i in (1..items.len()).rev() {
            items.swap(i, self.below(i + 1));
        }
    }
}

type Delivery<'a> = std::pin::Pin<Box<dyn std::future::Future<Output = (String, u16)> + Send + 'a>>;

/// What the concurrency test expects of one transaction.
struct Expected {
    provider: &'static str,
    reference: String,
    status: Status,
}

/// Plans `count` transactions of one provider: each one's words shuffled (a fifth of
/// them never reach a final status), each word delivered one to three times.
fn plan<'a, D: Driver + Sync>(
    d: &'a D,
    webhook: &'a Webhook<D::P>,
    count: usize,
    rng: &mut Rng,
    deliveries: &mut Vec<Delivery<'a>>,
    distinct_events: &mut usize,
) -> Vec<Expected>
where
    D::P: Provider,
{
    let mut expected = Vec::new();
    for i in 0..count {
        let reference = d.new_reference();
        let mut words: Vec<&'static str> = D::SEQUENCE.to_vec();
        if i % 5 == 0 {
            words.retain(|w| !D::status_of(w).is_final());
        }
        let truth = *words.iter().max_by_key(|w| D::status_of(w).rank()).expect("words");
        d.settle(&reference, truth);
        rng.shuffle(&mut words);
        *distinct_events += words.len();
        for word in words {
            for _ in 0..=rng.below(3) {
                let (reference, label) = (reference.clone(), format!("{} {reference} {word}", D::NAME));
                deliveries.push(Box::pin(async move {
                    let now = OffsetDateTime::now_utc();
                    (label, webhook.handle(d.delivery(&reference, word, now), now).await.status().as_u16())
                }));
            }
        }
        expected.push(Expected {
            provider: D::NAME,
            reference: D::stored_reference(&reference),
            status: D::status_of(truth),
        });
    }
    expected
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn five_hundred_transactions_shuffled_duplicated_and_concurrent() {
    use futures_util::StreamExt;
    const PER_PROVIDER: usize = 100;
    const CONCURRENCY: usize = 16;
    let seed = std::env::var("CONCURRENCY_SEED").ok().and_then(|s| s.parse().ok()).unwrap_or(0x5eed_1234_u64);
    let mut rng = Rng(seed);
    let h = Harness::new().await;
    let (store, queue) = (&h.store, &h.queue);
    let (azqr, pay3, qitech, key2pay, pagstar) =
        (AzqrDriver, Pay3Driver, QiTechDriver, Key2PayDriver, pagstar_driver().await);
    let webhooks = (
        Webhook::new(azqr.provider(), store.clone(), queue.clone()),
        Webhook::new(pay3.provider(), store.clone(), queue.clone()),
        Webhook::new(qitech.provider(), store.clone(), queue.clone()),
        Webhook::new(key2pay.provider(), store.clone(), queue.clone()),
        Webhook::new(pagstar.provider(), store.clone(), queue.clone()),
    );
    let mut deliveries = Vec::new();
    let mut distinct = 0;
    let mut expected = plan(&azqr, &webhooks.0, PER_PROVIDER, &mut rng, &mut deliveries, &mut distinct);
    expected.extend(plan(&pay3, &webhooks.1, PER_PROVIDER, &mut rng, &mut deliveries, &mut distinct));
    expected.extend(plan(&qitech, &webhooks.2, PER_PROVIDER, &mut rng, &mut deliveries, &mut distinct));
    expected.extend(plan(&key2pay, &webhooks.3, PER_PROVIDER, &mut rng, &mut deliveries, &mut distinct));
    expected.extend(plan(&pagstar, &webhooks.4, PER_PROVIDER, &mut rng, &mut deliveries, &mut distinct));
    rng.shuffle(&mut deliveries);
    let total = deliveries.len();

    let started = std::time::Instant::now();
    let answers: Vec<(String, u16)> =
        futures_util::stream::iter(deliveries).buffer_unordered(CONCURRENCY).collect().await;
    let elapsed = started.elapsed();
    for (label, status) in &answers {
        assert!(*status / 100 == 2, "{label} answered {status} (seed {seed})");
    }

    let mut finals = std::collections::BTreeSet::new();
    for e in &expected {
        let record = h.store.get(e.provider, &e.reference).await.expect("get").expect("item");
        assert_eq!(record.status, e.status, "{} {} (seed {seed})", e.provider, e.reference);
        if e.status.is_final() {
            finals.insert(event_id(e.provider, &e.reference, e.status));
        }
    }
    let events = h.drain_events().await;
    let ids: std::collections::BTreeSet<String> = events.iter().map(|e| e.id.clone()).collect();
    assert_eq!(events.len(), ids.len(), "a terminal event was queued twice (seed {seed})");
    assert_eq!(ids, finals, "exactly one terminal event per final transaction, none for the others (seed {seed})");
    println!(
        "reliability: {} transactions, {total} deliveries ({} duplicates) at concurrency {CONCURRENCY} in {:.1} s; {} final, {} terminal events, 0 lost, 0 duplicated",
        expected.len(),
        total - distinct,
        elapsed.as_secs_f64(),
        finals.len(),
        events.len()
    );
}
