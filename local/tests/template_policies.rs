//! Least privilege in template.yaml: every function's policy names explicit actions on
//! explicit resources, and each function gets only the actions its code uses.

use std::collections::BTreeMap;

use serde_yaml_ng::Value;

fn template() -> Value {
    let text = std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/../template.yaml")).expect("template");
    serde_yaml_ng::from_str(&text).expect("YAML")
}

/// Function logical id → every (action, resource) its inline policies grant.
fn grants() -> BTreeMap<String, Vec<(String, String)>> {
    let template = template();
    let resources = template["Resources"].as_mapping().expect("Resources");
    let mut grants = BTreeMap::new();
    for (id, resource) in resources {
        if resource["Type"].as_str() != Some("AWS::Serverless::Function") {
            continue;
        }
        let id = id.as_str().expect("id").to_owned();
        let mut list = Vec::new();
        for policy in resource["Properties"]["Policies"].as_sequence().expect("inline Policies") {
            let statements =
                policy["Statement"].as_sequence().unwrap_or_else(|| panic!("{id}: only inline statements"));
            for statement in statements {
                assert_eq!(statement["Effect"].as_str(), Some("Allow"), "{id}");
                let actions: Vec<String> = match &statement["Action"] {
                    Value::String(a) => vec![a.clone()],
                    Value::Sequence(list) => list.iter().map(|a| a.as_str().expect("action").to_owned()).collect(),
                    other
                    @ (Value::Null | Value::Bool(_) | Value::Number(_) | Value::Mapping(_) | Value::Tagged(_)) => {
                        panic!("{id}: unexpected Action {other:?}")
                    }
                };
                let resource = format!("{:?}", statement["Resource"]);
                for action in actions {
                    list.push((action, resource.clone()));
                }
            }
        }
        grants.insert(id, list);
    }
    grants
}

#[test]
fn no_policy_grants_wildcard_actions_or_resources() {
    let grants = grants();
    assert!(grants.len() >= 8, "every function has a policy: {:?}", grants.keys());
    for (function, list) in &grants {
        for (action, resource) in list {
            assert!(!action.contains('*'), "{function} grants wildcard action {action}");
            assert!(
                !resource.contains("\"*\"") && !resource.contains(":*"),
                "{function} grants {action} on {resource}"
            );
        }
    }
}

#[test]
fn each_function_gets_only_the_actions_it_uses() {
    let actions = |function: &str| -> Vec<String> {
        let mut list: Vec<String> = grants()[function].iter().map(|(a, _)| a.clone()).collect();
        list.sort();
        list
    };
    // Every provider's webhook function (the registry's routes, found in the template).
    let template =
        local_pipeline::Template::load(&std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../template.yaml"))
            .expect("template");
    for route in local_pipeline::registry::routes() {
        let webhook =
            template.function_for_route(&route.key()).unwrap_or_else(|| panic!("{}: no function", route.name));
        assert_eq!(actions(&webhook), ["dynamodb:UpdateItem", "sqs:SendMessage"], "{webhook}");
    }
    assert_eq!(
        actions("NotifierFunction"),
        [
            "dynamodb:GetItem",
            "dynamodb:UpdateItem",
            "sqs:ChangeMessageVisibility",
            "sqs:DeleteMessage",
            "sqs:GetQueueAttributes",
            "sqs:ReceiveMessage",
            "sqs:SendMessage"
        ]
    );
    assert_eq!(actions("ReconcilerFunction"), ["dynamodb:Query", "sqs:SendMessage"]);
    assert_eq!(actions("TransactionsApiFunction"), ["dynamodb:GetItem", "dynamodb:UpdateItem"]);
    // The status sync reads its index and writes through the webhooks' path (the
    // conditional update, and the terminal event it causes).
    assert_eq!(actions("StatusSyncFunction"), ["dynamodb:Query", "dynamodb:UpdateItem", "sqs:SendMessage"]);
    // The events API reads the log (an item, its index) and queues resends.
    assert_eq!(actions("EventsApiFunction"), ["dynamodb:GetItem", "dynamodb:Query", "sqs:SendMessage"]);
    let feed = grants()["EventsApiFunction"].iter().find(|(a, _)| a == "dynamodb:Query").cloned().expect("Query");
    assert!(feed.1.contains("/index/EventFeed"), "only its index: {}", feed.1);
    let query = grants()["StatusSyncFunction"].iter().find(|(a, _)| a == "dynamodb:Query").cloned().expect("Query");
    assert!(query.1.contains("/index/SyncSchedule"), "only its index: {}", query.1);
}

/// Every parameter named like a secret (…Secret, …Token, …Key, but not …PublicKey) is
/// NoEcho, and a NoEcho parameter has no default but an empty one (an optional secret,
/// such as Pagstar's mutual-TLS key).
#[test]
fn secrets_are_no_echo_parameters_without_defaults() {
    let template = template();
    let parameters = template["Parameters"].as_mapping().expect("Parameters");
    let mut secrets = 0;
    for (name, parameter) in parameters {
        let name = name.as_str().expect("parameter name");
        let secret_like =
            ["Secret", "Token", "Key"].iter().any(|suffix| name.ends_with(suffix)) && !name.ends_with("PublicKey");
        let no_echo = parameter["NoEcho"].as_bool() == Some(true);
        assert!(!secret_like || no_echo, "{name} looks like a secret and is not NoEcho");
        if no_echo {
            secrets += 1;
            let default = parameter.get("Default").map(|d| d.as_str().unwrap_or("not a string"));
            assert!(matches!(default, None | Some("")), "{name} has a default");
        }
    }
    assert!(secrets >= 6, "the providers' secrets and the notify secret: {secrets}");
}
