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
        list.dedup();
        list
    };
    // Every provider's webhook function (the registry's routes, found in the template).
    let template =
        local_pipeline::Template::load(&std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../template.yaml"))
            .expect("template");
    let webhook_actions = ["dynamodb:UpdateItem", "secretsmanager:GetSecretValue", "sqs:SendMessage"];
    for route in local_pipeline::registry::routes() {
        let webhook =
            template.function_for_route(&route.key()).unwrap_or_else(|| panic!("{}: no function", route.name));
        // A webhook that is a hint is only queued: no secret, no table, only its hint queue.
        let hint = template.function(&webhook).expect("function").variables.contains_key("HINT_QUEUE_URL");
        match hint {
            true => {
                assert_eq!(actions(&webhook), ["sqs:SendMessage"], "{webhook}");
                let (_, queue) = &grants()[&webhook][0];
                assert!(
                    queue.contains(local_pipeline::template::HINT_QUEUE),
                    "{webhook}: only its hint queue: {queue}"
                );
            }
            false => assert_eq!(actions(&webhook), webhook_actions, "{webhook}"),
        }
    }
    // The hint queue's consumer: the webhooks' write path, and its trigger's reads.
    let consumer = template.function_for_queue(local_pipeline::template::HINT_QUEUE).expect("a hint consumer");
    assert_eq!(
        actions(&consumer),
        [
            "dynamodb:UpdateItem",
            "secretsmanager:GetSecretValue",
            "sqs:ChangeMessageVisibility",
            "sqs:DeleteMessage",
            "sqs:GetQueueAttributes",
            "sqs:ReceiveMessage",
            "sqs:SendMessage"
        ]
    );
    assert_eq!(
        actions("NotifierFunction"),
        [
            "dynamodb:GetItem",
            "dynamodb:PutItem",
            "dynamodb:UpdateItem",
            "secretsmanager:GetSecretValue",
            "sqs:ChangeMessageVisibility",
            "sqs:DeleteMessage",
            "sqs:GetQueueAttributes",
            "sqs:ReceiveMessage",
            "sqs:SendMessage"
        ]
    );
    assert_eq!(actions("ReconcilerFunction"), ["dynamodb:Query", "dynamodb:UpdateItem", "sqs:SendMessage"]);
    // It reads the secrets of the providers that issue callback tokens (Key2Pay's), and
    // queries the Attention index (what needs a human).
    assert_eq!(
        actions("TransactionsApiFunction"),
        ["dynamodb:GetItem", "dynamodb:Query", "dynamodb:UpdateItem", "secretsmanager:GetSecretValue"]
    );
    // The indexes it queries (Attention: what needs a human; SyncShards: the syncs
    // running late), and no other: a route whose index is missing here fails on AWS only.
    let queried: Vec<String> = grants()["TransactionsApiFunction"]
        .iter()
        .filter(|(action, _)| action == "dynamodb:Query")
        .map(|(_, resource)| resource.clone())
        .collect();
    let queried = queried.join(" ");
    for index in ["/index/Attention", "/index/SyncShards"] {
        assert!(queried.contains(index), "the transactions API may query {index}: {queried}");
    }
    assert_eq!(queried.matches("/index/").count(), 2, "{queried}");
    // The status sync reads its indexes and the due records, and writes through the
    // webhooks' path (the conditional update, and the terminal event it causes); it takes
    // and gives back each provider's lease.
    assert_eq!(
        actions("StatusSyncFunction"),
        [
            "dynamodb:BatchGetItem",
            "dynamodb:DeleteItem",
            "dynamodb:Query",
            "dynamodb:UpdateItem",
            "secretsmanager:GetSecretValue",
            "sqs:SendMessage"
        ]
    );
    // The events API reads the log (an item, its index) and queues resends.
    assert_eq!(
        actions("EventsApiFunction"),
        [
            "dynamodb:BatchGetItem",
            "dynamodb:DeleteItem",
            "dynamodb:GetItem",
            "dynamodb:PutItem",
            "dynamodb:Query",
            "dynamodb:UpdateItem",
            "sqs:SendMessage"
        ]
    );
    let feed = grants()["EventsApiFunction"].iter().find(|(a, _)| a == "dynamodb:Query").cloned().expect("Query");
    assert!(feed.1.contains("/index/EventFeed"), "only its index: {}", feed.1);
    let query = grants()["StatusSyncFunction"].iter().find(|(a, _)| a == "dynamodb:Query").cloned().expect("Query");
    assert!(query.1.contains("/index/SyncShards"), "only its indexes: {}", query.1);
}

/// Each function may read only its own secrets: `secretsmanager:GetSecretValue` on
/// exactly the secrets whose ARNs its environment holds (one statement each, on the
/// secret's ARN), and no function that reads none may read any.
#[test]
fn each_function_reads_only_its_own_secrets() {
    let template = template();
    let resources = template["Resources"].as_mapping().expect("Resources");
    let is_secret =
        |name: &str| resources.get(name).is_some_and(|r| r["Type"].as_str() == Some("AWS::SecretsManager::Secret"));
    let reference = |value: &Value| match value {
        Value::Tagged(tagged) if tagged.tag == "!Ref" || tagged.tag == "Ref" => {
            tagged.value.as_str().map(str::to_owned)
        }
        Value::Mapping(map) => map.get("Ref").and_then(Value::as_str).map(str::to_owned),
        Value::Null | Value::Bool(_) | Value::Number(_) | Value::String(_) | Value::Sequence(_) | Value::Tagged(_) => {
            None
        }
    };
    let mut readers = 0;
    for (id, list) in grants() {
        let variables = &resources[id.as_str()]["Properties"]["Environment"]["Variables"];
        let mut own: Vec<String> = variables
            .as_mapping()
            .map(|map| {
                map.iter()
                    .filter_map(|(name, value)| {
                        let target = reference(value).filter(|target| is_secret(target))?;
                        assert!(
                            name.as_str().is_some_and(|n| n.ends_with("_SECRET_ARN")),
                            "{id}: {name:?} names a secret"
                        );
                        Some(target)
                    })
                    .collect()
            })
            .unwrap_or_default();
        own.sort();
        let mut granted: Vec<String> = list
            .iter()
            .filter(|(action, _)| action.starts_with("secretsmanager:"))
            .map(|(action, resource)| {
                assert_eq!(action, "secretsmanager:GetSecretValue", "{id}: only reads");
                let target = resources
                    .keys()
                    .filter_map(Value::as_str)
                    .find(|name| is_secret(name) && resource.contains(&format!("\"{name}\"")))
                    .unwrap_or_else(|| panic!("{id}: GetSecretValue on {resource}, not on one secret"));
                target.to_owned()
            })
            .collect();
        granted.sort();
        assert_eq!(granted, own, "{id}: reads exactly the secrets its environment names");
        readers += usize::from(!own.is_empty());
    }
    let providers = provider_catalog::all().len();
    assert_eq!(
        readers,
        providers + 3,
        "each provider's function, the notifier, the status sync and the transactions API read secrets"
    );
    // The status sync reads the secret of every provider of the catalog it can ask, and no other.
    struct Synced(Vec<&'static str>);
    impl provider_catalog::EachProvider for Synced {
        fn provider<P: shared::pipeline::Provider>(&mut self) {
            if P::HAS_STATUS_API {
                self.0.push(P::SECRET.arn);
            }
        }
    }
    let mut synced = Synced(Vec::new());
    provider_catalog::for_each(&mut synced);
    let variables =
        local_pipeline::Template::load(std::path::Path::new(concat!(env!("CARGO_MANIFEST_DIR"), "/../template.yaml")))
            .expect("template.yaml")
            .secret_arn_variables();
    let mut sync: Vec<String> = synced
        .0
        .iter()
        .map(|arn| variables.get(*arn).cloned().unwrap_or_else(|| panic!("no function reads {arn}")))
        .collect();
    sync.sort();
    assert!(!sync.is_empty(), "some provider has a status API");
    let sync_reads: Vec<String> = {
        let mut list: Vec<String> = grants()["StatusSyncFunction"]
            .iter()
            .filter(|(a, _)| a.starts_with("secretsmanager:"))
            .map(|(_, r)| sync.iter().find(|s| r.contains(s.as_str())).cloned().expect("a provider with a status API"))
            .collect();
        list.sort();
        list
    };
    assert_eq!(sync_reads, sync, "the status sync reads only the providers it can ask");
    // The transactions API reads the secret of every provider that issues callback tokens,
    // and no other.
    struct Issuers(Vec<&'static str>);
    impl provider_catalog::EachProvider for Issuers {
        fn provider<P: shared::pipeline::Provider>(&mut self) {
            if P::CALLBACK_TOKEN {
                self.0.push(P::SECRET.arn);
            }
        }
    }
    let mut issuers = Issuers(Vec::new());
    provider_catalog::for_each(&mut issuers);
    let mut issuing: Vec<String> = issuers.0.iter().map(|arn| variables[*arn].clone()).collect();
    issuing.sort();
    assert!(!issuing.is_empty(), "some provider issues callback tokens");
    let mut api_reads: Vec<String> = grants()["TransactionsApiFunction"]
        .iter()
        .filter(|(a, _)| a.starts_with("secretsmanager:"))
        .map(|(_, r)| issuing.iter().find(|s| r.contains(s.as_str())).cloned().expect("a provider issuing tokens"))
        .collect();
    api_reads.sort();
    assert_eq!(api_reads, issuing, "the transactions API reads only the secrets of providers issuing tokens");
}

/// No secret is a stack parameter any more (they are readable in the Lambda console):
/// no parameter is NoEcho or named like a secret, and no function's environment holds a
/// key of a secret.
#[test]
fn no_secret_is_a_parameter_or_an_environment_value() {
    let template = template();
    for (name, parameter) in template["Parameters"].as_mapping().expect("Parameters") {
        let name = name.as_str().expect("parameter name");
        assert_ne!(parameter["NoEcho"].as_bool(), Some(true), "{name} is NoEcho: put it in a secret");
        let secret_like = ["Secret", "Token", "Key"].iter().any(|suffix| name.ends_with(suffix));
        assert!(!secret_like, "{name} looks like a secret");
    }
    let keys: Vec<String> =
        local_pipeline::Template::load(&std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../template.yaml"))
            .expect("template")
            .secrets()
            .into_values()
            .flatten()
            .collect();
    assert!(keys.len() >= 10, "{keys:?}");
    let text = std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/../template.yaml")).expect("template");
    for key in keys {
        assert!(!text.contains(&format!("{key}: ")), "{key} is an environment variable in template.yaml");
    }
}

/// The longest value a `!Ref` may give, as template.yaml bounds it: a parameter's
/// `MaxLength`, longest `AllowedValues` or `MaxValue`; a resource's longest name or ARN as
/// CloudFormation generates it (the longest partition and region, a 12-digit account).
fn longest(template: &Value, name: &str) -> usize {
    const PREFIX: usize = "arn:aws-us-gov:secretsmanager:ap-southeast-4:123456789012:secret:".len();
    const QUEUE_URL: usize = "https://sqs.ap-southeast-4.amazonaws.com/123456789012/".len();
    if let Some(parameter) = template["Parameters"].get(name) {
        if let Some(max) = parameter["MaxLength"].as_u64() {
            return max as usize;
        }
        if let Some(values) = parameter["AllowedValues"].as_sequence() {
            return values.iter().filter_map(Value::as_str).map(str::len).max().unwrap_or(0);
        }
        if let Some(max) = parameter["MaxValue"].as_u64() {
            return max.to_string().len();
        }
        panic!("parameter {name} has no MaxLength, AllowedValues or MaxValue: its value is unbounded");
    }
    match template["Resources"][name]["Type"].as_str() {
        // <stack name (128)>-<logical id>-<12 characters>, at most 255.
        Some("AWS::DynamoDB::Table") => (128 + 1 + name.len() + 1 + 12).min(255),
        // A queue name is at most 80 characters, .fifo included.
        Some("AWS::SQS::Queue") => QUEUE_URL + 80,
        // <logical id>-<12 characters>, and the 6 characters Secrets Manager appends.
        Some("AWS::SecretsManager::Secret") => PREFIX + name.len() + 1 + 12 + 1 + 6,
        other => panic!("!Ref {name}: no bound for {other:?}"),
    }
}

/// Lambda caps a function's whole environment (names and values) at 4 KB. Each function's,
/// as template.yaml defines it with the longest values its parameters and resources
/// allow, stays under 2 KB: secrets are ARNs now, never PEM certificates or keys.
#[test]
fn every_function_environment_stays_under_2_kb_with_the_longest_values() {
    let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("..");
    let parsed = local_pipeline::Template::load(&root.join("template.yaml")).expect("template");
    let template = template();
    let mut sizes = Vec::new();
    for id in parsed.function_ids() {
        let function = parsed.function(&id).expect("function");
        let size: usize = function
            .variables
            .iter()
            .map(|(variable, value)| {
                variable.len()
                    + match value {
                        local_pipeline::template::EnvValue::Literal(text) => text.len(),
                        local_pipeline::template::EnvValue::Ref(name) => longest(&template, name),
                    }
            })
            .sum();
        sizes.push((id, size));
    }
    sizes.sort_by_key(|(_, size)| std::cmp::Reverse(*size));
    for (id, size) in &sizes {
        println!("environment: {id:28} at most {size:5} bytes");
    }
    assert_eq!(sizes.len(), 11);
    for (id, size) in &sizes {
        assert!(*size < 2048, "{id}: its environment may reach {size} bytes");
    }
}

/// IAM by default: the HTTP API's default authorizer is IAM, and the only routes open
/// (`Authorizer: NONE`) are the providers' webhooks, exactly as the catalog declares them.
/// A route added without a word is IAM-authorized; one opened by mistake fails here.
#[test]
fn only_the_webhook_routes_are_open_and_every_other_route_takes_iam() {
    let template = template();
    let resources = template["Resources"].as_mapping().expect("Resources");
    let mut apis = 0;
    for (id, resource) in resources {
        if resource["Type"].as_str() == Some("AWS::Serverless::HttpApi") {
            apis += 1;
            let auth = &resource["Properties"]["Auth"];
            assert_eq!(auth["DefaultAuthorizer"].as_str(), Some("AWS_IAM"), "{id:?}: IAM by default");
            assert_eq!(auth["EnableIamAuthorizer"].as_bool(), Some(true), "{id:?}");
        }
    }
    assert_eq!(apis, 1, "one HTTP API");
    struct Webhooks(Vec<String>);
    impl provider_catalog::EachProvider for Webhooks {
        fn provider<P: shared::pipeline::Provider>(&mut self) {
            for path in std::iter::once(P::PATH).chain(P::ALSO_AT.iter().copied()) {
                self.0.push(format!("{} {path}", P::METHOD));
            }
        }
    }
    let mut webhooks = Webhooks(Vec::new());
    provider_catalog::for_each(&mut webhooks);
    webhooks.0.sort();
    let (mut open, mut iam) = (Vec::new(), 0);
    for (id, resource) in resources {
        let events = resource["Properties"]["Events"].as_mapping().into_iter().flatten();
        for (_, event) in events.filter(|(_, event)| event["Type"].as_str() == Some("HttpApi")) {
            let properties = &event["Properties"];
            let route = format!(
                "{} {}",
                properties["Method"].as_str().expect("Method").to_uppercase(),
                properties["Path"].as_str().expect("Path")
            );
            match properties["Auth"]["Authorizer"].as_str() {
                Some("NONE") => open.push(route),
                None | Some("AWS_IAM") => iam += 1,
                Some(other) => panic!("{id:?} {route}: authorizer {other}"),
            }
        }
    }
    open.sort();
    assert_eq!(open, webhooks.0, "the open routes are the providers' webhooks");
    assert!(iam >= 7, "the transactions and events APIs' routes: {iam}");
}
