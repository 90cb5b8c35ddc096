//! An attacker's inputs (issue 26), against DynamoDB Local, the SQS server and Secrets
//! Manager on moto: what a forged or hostile request can make the stack do.

use crate::support::{dev_env, unique_number, DevWebhooks, Harness};
use shared::model::Status;
use shared::runtime::config::Env;

/// Key2Pay's capture fixture for `trackid`, with `token` in its callback URL.
fn key2pay_capture(trackid: &str, token: &str) -> String {
    let text = std::fs::read_to_string(crate::support::root().join("events/key2pay/capture.json")).expect("fixture");
    let mut event: serde_json::Value = serde_json::from_str(&text).expect("JSON");
    let body = event["body"].as_str().expect("body").replace("k2p-track-2", trackid);
    assert!(body.contains(trackid));
    event["body"] = body.into();
    event["queryStringParameters"]["token"] = token.into();
    event["rawQueryString"] = format!("token={token}").into();
    event.to_string()
}

/// A Key2Pay callback verifies with its own payment's token, which the registration
/// answers: not with another payment's, nor with the static token of old.
#[tokio::test]
async fn a_key2pay_callback_verifies_with_its_own_payments_token_only() {
    let h = Harness::new().await;
    let dev = DevWebhooks::new(&h).await;
    let (paid, forged) = (format!("track-{}", unique_number()), format!("track-{}", unique_number()));

    let (status, answer) = dev.register("key2pay", &paid).await;
    assert_eq!(status, 201, "{answer}");
    let token = answer["callback_token"].as_str().expect("callback_token").to_owned();
    assert!(token.len() == 64 && token.bytes().all(|b| b.is_ascii_hexdigit()), "{token}");
    let (again, answer) = dev.register("key2pay", &paid).await;
    assert_eq!((again, answer["callback_token"].as_str()), (200, Some(token.as_str())), "the same token again");
    let (_, other) = dev.register("key2pay", &forged).await;
    assert_ne!(other["callback_token"], answer["callback_token"], "a token per payment");
    let (_, azqr) = dev.register("azqr", &crate::support::unique_rrn()).await;
    assert!(azqr.get("callback_token").is_none(), "only a provider that issues them: {azqr}");

    // Forgeries: another payment's token, the static token, none of its own.
    let static_token = dev_env().required("KEY2PAY_WEBHOOK_TOKEN").expect("dev token");
    for token in [token.as_str(), static_token.as_str(), "0".repeat(64).as_str()] {
        assert_eq!(dev.run_event("key2pay", &key2pay_capture(&forged, token)).await, 401, "{token}");
    }
    let record = h.store.get("key2pay", &forged).await.expect("get").expect("registered");
    assert_eq!(record.status, Status::Created, "no forged capture applied");

    assert_eq!(dev.run_event("key2pay", &key2pay_capture(&paid, &token)).await, 200);
    let record = h.store.get("key2pay", &paid).await.expect("get").expect("item");
    assert_eq!(record.status, Status::Completed);
    let (status, answer) = dev.register("key2pay", &paid).await;
    assert_eq!(status, 200);
    assert!(answer.get("callback_token").is_none(), "no token for a final transaction: {answer}");
}
