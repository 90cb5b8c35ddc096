//! Writes `events/<provider>/*.json`: API Gateway HTTP API (payload 2.0) events for every
//! webhook, signed with the dev secrets and keys of `local.env.example` and `dev-keys/`,
//! at a fixed time (`FIXTURE_TIME`). Run from the workspace root:
//! `cargo run -p local-pipeline --bin make-events`.

use std::path::Path;

use jsonwebtoken::{Algorithm, EncodingKey, Header};
use local_pipeline::DevEnv;
use qitech_webhook::signing::QiTechSigner;
use serde_json::{json, Value};
use shared::Env;
use time::macros::datetime;
use time::OffsetDateTime;

type Error = Box<dyn std::error::Error>;

/// When every fixture was "sent"; tests run them with the clock at this time.
const FIXTURE_TIME: OffsetDateTime = datetime!(2026-11-22 10:00:00 UTC);

/// One API Gateway HTTP API event.
fn event(method: &str, route: &str, path: &str, query: &str, headers: &[(&str, &str)], body: &str) -> Value {
    let mut header_map = serde_json::Map::new();
    header_map.insert("host".into(), json!("abc123.execute-api.eu-central-1.amazonaws.com"));
    for (name, value) in headers {
        header_map.insert(name.to_ascii_lowercase(), json!(value));
    }
    let mut path_parameters = serde_json::Map::new();
    for (template, actual) in route.split('/').zip(path.split('/')) {
        if let Some(name) = template.strip_prefix('{').and_then(|t| t.strip_suffix('}')) {
            path_parameters.insert(name.into(), json!(actual));
        }
    }
    let query_parameters: serde_json::Map<String, Value> =
        query.split('&').filter_map(|pair| pair.split_once('=')).map(|(k, v)| (k.to_owned(), json!(v))).collect();
    let route_key = format!("{method} {route}");
    let mut event = json!({
        "version": "2.0",
        "routeKey": route_key,
        "rawPath": path,
        "rawQueryString": query,
        "headers": header_map,
        "requestContext": {
            "accountId": "123456789012", "apiId": "abc123",
            "domainName": "abc123.execute-api.eu-central-1.amazonaws.com", "domainPrefix": "abc123",
            "http": { "method": method, "path": path, "protocol": "HTTP/1.1", "sourceIp": "203.0.113.10", "userAgent": "provider" },
            "requestId": "fixture", "routeKey": route_key, "stage": "$default",
            "time": "22/Nov/2026:10:00:00 +0000", "timeEpoch": FIXTURE_TIME.unix_timestamp() * 1000
        },
        "body": body,
        "isBase64Encoded": false
    });
    if !path_parameters.is_empty() {
        event["pathParameters"] = Value::Object(path_parameters);
    }
    if !query_parameters.is_empty() {
        event["queryStringParameters"] = Value::Object(query_parameters);
    }
    event
}

const JSON: (&str, &str) = ("content-type", "application/json");

fn azqr(env: &DevEnv) -> Result<Vec<(&'static str, Value)>, Error> {
    let key = env.required("AZQR_API_KEY")?;
    let route = azqr_webhook::PATH;
    let put = |rrn: &str, api_key: Option<&str>, body: Value| {
        let path = format!("/webhooks/azqr/qr/{rrn}/status");
        let mut headers = vec![JSON];
        headers.extend(api_key.map(|k| ("apikey", k)));
        event("PUT", route, &path, "", &headers, &body.to_string())
    };
    let status = |s: &str, d: &str| json!({ "status": s, "description": d });
    Ok(vec![
        ("read", put("100000000001", Some(&key), status("read", "QR code read"))),
        ("paid", put("100000000002", Some(&key), status("paid", "Payment confirmed by payer"))),
        ("canceled", put("100000000003", Some(&key), status("canceled", "Payer canceled"))),
        ("expired", put("100000000004", Some(&key), status("expired", "QR code expired"))),
        ("incompleted", put("100000000005", Some(&key), status("incompleted", "AM04 InsufficientFunds"))),
        ("completed", put("100000000006", Some(&key), status("completed", "Payment completed"))),
        ("bad-wrong-key", put("100000000007", Some("not-the-right-key"), status("completed", ""))),
        ("bad-missing-key", put("100000000008", None, status("completed", ""))),
        ("bad-rrn", put("12345", Some(&key), status("completed", ""))),
        ("bad-unknown-status", put("100000000009", Some(&key), status("refunded", ""))),
        (
            "bad-malformed-json",
            event(
                "PUT",
                route,
                "/webhooks/azqr/qr/100000000010/status",
                "",
                &[JSON, ("apikey", &key)],
                r#"{"status": "completed""#,
            ),
        ),
    ])
}

fn pay3(env: &DevEnv) -> Result<Vec<(&'static str, Value)>, Error> {
    let secret = env.required("PAY3_JWT_SECRET")?;
    let sign = |claims: &Value, algorithm: Algorithm, secret: &str| {
        jsonwebtoken::encode(&Header::new(algorithm), claims, &EncodingKey::from_secret(secret.as_bytes()))
    };
    let claims = |order: &str, status: &str, payment_status: Option<&str>| {
        json!({
            "data": {
                "orderType": "CHECKOUT", "orderId": order, "orderStatus": status, "paymentStatus": payment_status,
                "error": if status == "FAILED" { json!({"code": 4001, "message": "Declined by payment partner"}) } else { Value::Null }
            },
            "requestId": format!("req-{order}"), "type": "pay3-sdk-transaction-status", "iat": FIXTURE_TIME.unix_timestamp()
        })
    };
    let post = |jwt: &str| {
        event("POST", pay3_webhook::PATH, pay3_webhook::PATH, "", &[JSON], &json!({ "payload": jwt }).to_string())
    };
    let good = |order: &str, status: &str, payment: Option<&str>| -> Result<Value, Error> {
        Ok(post(&sign(&claims(order, status, payment), Algorithm::HS384, &secret)?))
    };
    let mut expired = claims("pay3-order-bad-4", "COMPLETED", None);
    expired["exp"] = json!(FIXTURE_TIME.unix_timestamp() - 60);
    let valid = sign(&claims("pay3-order-bad-5", "COMPLETED", None), Algorithm::HS384, &secret)?;
    let forged = sign(&claims("pay3-order-bad-5", "FAILED", None), Algorithm::HS384, "another-secret")?;
    let tampered = {
        let (valid_parts, forged_parts): (Vec<&str>, Vec<&str>) =
            (valid.split('.').collect(), forged.split('.').collect());
        format!("{}.{}.{}", valid_parts[0], forged_parts[1], valid_parts[2])
    };
    let none_header = "eyJhbGciOiJub25lIiwidHlwIjoiSldUIn0"; // {"alg":"none","typ":"JWT"}
    let unsigned = format!("{none_header}.{}.", valid.split('.').nth(1).unwrap_or_default());
    Ok(vec![
        ("created", good("pay3-order-1", "CREATED", None)?),
        ("order-started", good("pay3-order-2", "ORDER_STARTED", None)?),
        ("order-payment-awaiting", good("pay3-order-3", "ORDER_PAYMENT_AWAITING", None)?),
        ("order-payment-processing", good("pay3-order-4", "ORDER_PAYMENT_PROCESSING", None)?),
        ("order-payment-initiated", good("pay3-order-5", "ORDER_PAYMENT_INITIATED", None)?),
        ("completed", good("pay3-order-6", "COMPLETED", Some("SUCCESS"))?),
        ("failed", good("pay3-order-7", "FAILED", Some("DECLINED"))?),
        ("failed-canceled", good("pay3-order-8", "FAILED", Some("CANCELED"))?),
        ("abandoned", good("pay3-order-9", "ABANDONED", Some("MAX_RETRIES_REACHED"))?),
        ("refunded-after-final", good("pay3-order-10", "REFUNDED", None)?),
        (
            "bad-signature",
            post(&sign(&claims("pay3-order-bad-1", "COMPLETED", None), Algorithm::HS384, "another-secret")?),
        ),
        ("bad-algorithm", post(&sign(&claims("pay3-order-bad-2", "COMPLETED", None), Algorithm::HS256, &secret)?)),
        ("bad-alg-none", post(&unsigned)),
        ("bad-expired", post(&sign(&expired, Algorithm::HS384, &secret)?)),
        ("bad-tampered", post(&tampered)),
        ("bad-unknown-status", good("pay3-order-bad-6", "TELEPORTED", None)?),
        ("bad-malformed-json", event("POST", pay3_webhook::PATH, pay3_webhook::PATH, "", &[JSON], r#"{"payload": "#)),
    ])
}

fn qitech(env: &DevEnv, root: &Path) -> Result<Vec<(&'static str, Value)>, Error> {
    let client_key = env.required("QITECH_API_CLIENT_KEY")?;
    let signer = QiTechSigner::from_pkcs8_pem(&std::fs::read_to_string(root.join("dev-keys/qitech-dev-private.pem"))?)?;
    let other_signer = QiTechSigner::generate()?;
    let path = qitech_webhook::PATH;
    let body = |entry: &str, status: &str| {
        json!({
            "webhook_type": "baas.invoice.payment_instrument_entry",
            "webhook_datetime": "2026-11-22T10:00:00.000Z",
            "data": {
                "payment_instrument_key": "ecf87b4b-fa6e-49c0-a7f0-f2cad6b42d79",
                "payment_instrument_entry_key": entry,
                "payment_instrument_entry_amount": 150.00,
                "payment_instrument_entry_type": "purchase",
                "payment_instrument_entry_status": status
            }
        })
        .to_string()
        // serde_json writes 150.0; QI Tech writes 150.00, which must survive exactly.
        .replace("150.0,", "150.00,")
    };
    let post = |signer: &QiTechSigner, body: &str, method: &str, uri: &str, at: OffsetDateTime, key: &str| {
        let jwt = signer.sign(body.as_bytes(), method, uri, at);
        event("POST", path, path, "", &[JSON, ("authorization", &jwt), ("api-client-key", key)], body)
    };
    let good = |entry: &str, status: &str| post(&signer, &body(entry, status), "POST", path, FIXTURE_TIME, &client_key);
    let tampered = {
        let original = body("00000000-0000-4000-8000-0000000000b1", "concluded");
        let mut event = post(&signer, &original, "POST", path, FIXTURE_TIME, &client_key);
        event["body"] = json!(original.replace("150.00", "1500.00"));
        event
    };
    let ten_minutes_ago = FIXTURE_TIME - time::Duration::minutes(10);
    let other_type = r#"{"webhook_type":"baas.account.balance_update","data":{"account_key":"x"}}"#;
    Ok(vec![
        ("processing-conclusion", good("00000000-0000-4000-8000-000000000001", "processing_conclusion")),
        ("processing-cancellation", good("00000000-0000-4000-8000-000000000002", "processing_cancellation")),
        ("concluded", good("00000000-0000-4000-8000-000000000003", "concluded")),
        ("canceled", good("00000000-0000-4000-8000-000000000004", "canceled")),
        ("other-webhook-type", post(&signer, other_type, "POST", path, FIXTURE_TIME, &client_key)),
        ("bad-tampered-body", tampered),
        (
            "bad-signature",
            post(
                &other_signer,
                &body("00000000-0000-4000-8000-0000000000b2", "concluded"),
                "POST",
                path,
                FIXTURE_TIME,
                &client_key,
            ),
        ),
        (
            "bad-wrong-uri",
            post(
                &signer,
                &body("00000000-0000-4000-8000-0000000000b3", "concluded"),
                "POST",
                "/other",
                FIXTURE_TIME,
                &client_key,
            ),
        ),
        (
            "bad-wrong-client-key",
            post(
                &signer,
                &body("00000000-0000-4000-8000-0000000000b4", "concluded"),
                "POST",
                path,
                FIXTURE_TIME,
                "wrong",
            ),
        ),
        (
            "bad-stale-timestamp",
            post(
                &signer,
                &body("00000000-0000-4000-8000-0000000000b5", "concluded"),
                "POST",
                path,
                ten_minutes_ago,
                &client_key,
            ),
        ),
        ("bad-unknown-status", good("00000000-0000-4000-8000-0000000000b6", "teleported")),
        ("bad-malformed-json", post(&signer, r#"{"webhook_type": "#, "POST", path, FIXTURE_TIME, &client_key)),
    ])
}

fn key2pay(env: &DevEnv) -> Result<Vec<(&'static str, Value)>, Error> {
    let token = env.required("KEY2PAY_WEBHOOK_TOKEN")?;
    let path = key2pay_webhook::PATH;
    let body = |trackid: &str, transaction: &str, action: &str, result: &str, code: &str, description: &str| {
        json!({
            "transactionid": transaction, "transactiondate": "2026-11-22 10:00:00Z", "cardholder": "INSTAPAY",
            "merchantcustomerid": null, "trackid": trackid, "currencycode": "PHP", "amount": "2000.00",
            "card": "20000000****0008", "cardtype": "PHQR", "action": action, "result": result, "authcode": "",
            "responsecode": code, "error_code_tag": "", "avs": "", "extendedresponse": "", "descriptor": "test",
            "message": null, "merchantcode": "INSTAPAYTEST001", "responsedescription": description
        })
        .to_string()
    };
    let ok = "Approved or completed available successfully";
    let post = |query: &str, body: &str| event("POST", path, path, query, &[JSON], body);
    let with_token = format!("token={token}");
    Ok(vec![
        ("authorization", post(&with_token, &body("k2p-track-1", "1049766", "AUTHORIZATION", "Successful", "0", ok))),
        ("capture", post(&with_token, &body("k2p-track-2", "1049767", "CAPTURE", "Successful", "0", ok))),
        (
            "failed",
            post(&with_token, &body("k2p-track-3", "1049768", "AUTHORIZATION", "Failed", "51", "Insufficient funds")),
        ),
        ("bad-wrong-token", post("token=not-the-token", &body("k2p-track-b1", "1", "CAPTURE", "Successful", "0", ok))),
        ("bad-missing-token", post("", &body("k2p-track-b2", "2", "CAPTURE", "Successful", "0", ok))),
        ("bad-unknown-action", post(&with_token, &body("k2p-track-b3", "3", "REFUND", "Successful", "0", ok))),
        ("bad-malformed-json", post(&with_token, r#"{"trackid": "k2p-track-b4""#)),
    ])
}

fn pagstar() -> Vec<(&'static str, Value)> {
    let path = pagstar_webhook::PATH;
    let pix = |txid: &str| {
        json!({ "pix": [{ "endToEndId": "E18236120202611221000s0000000001", "txid": txid, "valor": "100.00",
                          "horario": "2026-11-22T10:00:00.000Z", "infoPagador": "fixture" }] })
        .to_string()
    };
    let post = |body: &str| event("POST", path, path, "", &[JSON], body);
    vec![
        ("ativa", post(&pix("pagstarativa00000000000000001"))),
        ("concluida", post(&pix("pagstarconcluida0000000000001"))),
        ("removida-pelo-usuario-recebedor", post(&json!({ "txid": "pagstarremovidausuario0000001" }).to_string())),
        ("removida-pelo-psp", post(&pix("pagstarremovidapsp00000000001"))),
        ("unknown-txid", post(&pix("pagstarnaoexiste0000000000001"))),
        ("unknown-status", post(&pix("pagstarstatusdesconhecido0001"))),
        ("bad-no-txid", post(r#"{"pix":[{"endToEndId":"E1","valor":"1.00"}]}"#)),
        ("bad-malformed-json", post(r#"{"pix": ["#)),
    ]
}

/// The status API: the AZQR fixture's completed transaction, and one that does not exist.
fn transactions() -> Vec<(&'static str, Value)> {
    let route = transactions_api::PATH;
    let get = |path: &str| {
        let mut event = event("GET", route, path, "", &[], "");
        event["body"] = Value::Null;
        event
    };
    vec![
        ("get-completed", get("/transactions/azqr/100000000006")),
        ("get-unknown", get("/transactions/azqr/999999999999")),
    ]
}

fn main() -> Result<(), Error> {
    let root = Path::new(".");
    let env = DevEnv::load(&root.join("local.env.example"))?;
    let providers = [
        ("azqr", azqr(&env)?),
        ("pay3", pay3(&env)?),
        ("qitech", qitech(&env, root)?),
        ("key2pay", key2pay(&env)?),
        ("pagstar", pagstar()),
        ("transactions", transactions()),
    ];
    for (provider, events) in providers {
        let dir = root.join("events").join(provider);
        std::fs::create_dir_all(&dir)?;
        for entry in std::fs::read_dir(&dir)? {
            std::fs::remove_file(entry?.path())?;
        }
        for (name, event) in &events {
            std::fs::write(dir.join(format!("{name}.json")), serde_json::to_string_pretty(event)? + "\n")?;
        }
        println!("events/{provider}: {} fixtures", events.len());
    }
    Ok(())
}
