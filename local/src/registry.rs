//! Every provider's simulation, routes and fixtures, from the catalog
//! (`provider_catalog`): the local pipeline, `make-events`, `scripts/send`, the
//! benchmarks and every test that runs "every provider" take them from here.

use std::path::Path;

use provider_catalog::EachSimulator;
use time::OffsetDateTime;

use crate::DevEnv;
use provider_testkit::{Expected, Fixture, Simulator};
use provider_testkit::{SimulatorError, Variables};
use shared::pipeline::Provider;

/// Starts every provider's simulation (the stand-ins of their APIs, each
/// unless its `*_API_URL` is set) and points `env` at what
/// they started; a variable the environment already sets wins. Returns the variables set.
pub async fn start_simulations(env: &mut DevEnv, root: &Path) -> Result<Variables, SimulatorError> {
    type Start<'a> =
        std::pin::Pin<Box<dyn std::future::Future<Output = Result<Variables, SimulatorError>> + Send + 'a>>;
    struct Collect<'a> {
        env: &'a DevEnv,
        root: &'a Path,
        starts: Vec<Start<'a>>,
    }
    impl EachSimulator for Collect<'_> {
        fn simulator<S: Simulator>(&mut self) {
            let (env, root) = (self.env, self.root);
            self.starts.push(Box::pin(async move { S::start(env, root).await.map(|(_, variables)| variables) }));
        }
    }
    let mut variables = Vec::new();
    {
        let mut collect = Collect { env, root, starts: Vec::new() };
        provider_catalog::for_each_simulator(&mut collect);
        for start in collect.starts {
            variables.extend(start.await?);
        }
    }
    variables.retain(|(name, _)| std::env::var(name).is_err());
    for (name, value) in &variables {
        env.set_default(name, value.clone());
    }
    Ok(variables)
}

/// A provider's name and route.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Route {
    pub name: &'static str,
    pub method: &'static str,
    pub path: &'static str,
    /// Other paths it is also served at.
    pub also_at: &'static [&'static str],
}

impl Route {
    /// The path `request` is sent to: the route's `{parameters}` filled in from its path
    /// parameters.
    pub fn path_of(&self, request: &shared::pipeline::Inbound) -> String {
        fill(self.path, request)
    }

    /// "METHOD /path", as API Gateway's `routeKey` writes it.
    pub fn key(&self) -> String {
        format!("{} {}", self.method, self.path)
    }
}

/// `P`'s name and route.
fn route_of<P: Provider>() -> Route {
    Route { name: P::NAME, method: P::METHOD, path: P::PATH, also_at: P::ALSO_AT }
}

/// `route` (a template.yaml path) with its `{parameters}` filled in from `request`.
pub fn fill(route: &str, request: &shared::pipeline::Inbound) -> String {
    route
        .split('/')
        .map(|part| match part.strip_prefix('{').and_then(|p| p.strip_suffix('}')) {
            Some(name) => request.path_parameter(name).unwrap_or_default(),
            None => part,
        })
        .collect::<Vec<_>>()
        .join("/")
}

/// Every provider's name and route.
pub fn routes() -> Vec<Route> {
    struct Collect(Vec<Route>);
    impl EachSimulator for Collect {
        fn simulator<S: Simulator>(&mut self) {
            self.0.push(route_of::<S::Provider>());
        }
    }
    let mut collect = Collect(Vec::new());
    provider_catalog::for_each_simulator(&mut collect);
    collect.0
}

/// One provider's fixture: its path under `events/` (`<provider>/<name>.json`), its
/// provider's route, the fixture with what it must give.
pub type ProviderFixture = (String, Route, Fixture);

/// Every provider's fixtures, made at `at` by its simulator (started with `env`).
pub async fn fixtures(env: &DevEnv, root: &Path, at: OffsetDateTime) -> Result<Vec<ProviderFixture>, SimulatorError> {
    type Made<'a> =
        std::pin::Pin<Box<dyn std::future::Future<Output = Result<Vec<ProviderFixture>, SimulatorError>> + Send + 'a>>;
    struct Make<'a> {
        env: &'a DevEnv,
        root: &'a Path,
        at: OffsetDateTime,
        made: Vec<Made<'a>>,
    }
    impl EachSimulator for Make<'_> {
        fn simulator<S: Simulator>(&mut self) {
            let (env, root, at) = (self.env, self.root, self.at);
            self.made.push(Box::pin(async move {
                let (simulator, _) = S::start(env, root).await?;
                let route = route_of::<S::Provider>();
                Ok(simulator
                    .fixtures(at)?
                    .into_iter()
                    .map(|fixture| (format!("{}/{}.json", route.name, fixture.name), route, fixture))
                    .collect())
            }));
        }
    }
    let mut make = Make { env, root, at, made: Vec::new() };
    provider_catalog::for_each_simulator(&mut make);
    let mut all = Vec::new();
    for made in make.made {
        all.extend(made.await?);
    }
    Ok(all)
}

/// What every provider's fixture must give, by its path under `events/`, with the
/// development configuration (`local.env.example` in `root`).
pub async fn expectations(root: &Path) -> Result<Vec<(String, Expected)>, SimulatorError> {
    let env = DevEnv::load(&root.join("local.env.example"))?;
    let made = fixtures(&env, root, OffsetDateTime::now_utc()).await?;
    Ok(made.into_iter().map(|(file, _, fixture)| (file, fixture.expected)).collect())
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Every provider's route is a function's HttpApi route in template.yaml and a path in
    /// openapi.yaml, and the names are distinct.
    #[test]
    fn every_route_is_in_the_template_and_the_openapi_description() {
        let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("..");
        let template = crate::Template::load(&root.join("template.yaml")).expect("template.yaml");
        let openapi: serde_yaml_ng::Value =
            serde_yaml_ng::from_str(&std::fs::read_to_string(root.join("openapi.yaml")).expect("openapi.yaml"))
                .expect("YAML");
        let routes = routes();
        let mut names: Vec<_> = routes.iter().map(|r| r.name).collect();
        names.sort_unstable();
        names.dedup();
        assert_eq!(names.len(), routes.len(), "names are distinct");
        for route in routes {
            let function = template.function_for_route(&route.key());
            assert!(function.is_some(), "{}: no function for {}", route.name, route.key());
            for path in std::iter::once(route.path).chain(route.also_at.iter().copied()) {
                let route_key = format!("{} {path}", route.method);
                assert_eq!(template.function_for_route(&route_key), function, "{}: {route_key}", route.name);
                let operation = &openapi["paths"][path][route.method.to_ascii_lowercase().as_str()];
                assert!(operation.is_mapping(), "{}: openapi.yaml has no {route_key}", route.name);
                assert!(path.contains(route.name), "{}: its path {path} names it", route.name);
            }
        }
    }

    /// Every provider of the catalog has its secret in template.yaml (the variable its
    /// functions read its ARN from, with its keys), every template secret but the
    /// merchant's is a provider's, and openapi.yaml's provider enums are the catalog's names.
    #[test]
    fn the_template_and_the_openapi_description_list_the_catalog() {
        let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("..");
        let template = crate::Template::load(&root.join("template.yaml")).expect("template.yaml");
        struct Secrets(Vec<(&'static str, &'static str, Vec<String>)>);
        impl provider_catalog::EachProvider for Secrets {
            fn provider<P: Provider>(&mut self) {
                let mut keys: Vec<String> = P::SECRET.keys.iter().map(|k| (*k).to_owned()).collect();
                keys.sort();
                self.0.push((P::NAME, P::SECRET.arn, keys));
            }
        }
        let mut secrets = Secrets(Vec::new());
        provider_catalog::for_each(&mut secrets);
        let (template_secrets, variables) = (template.secrets(), template.secret_arn_variables());
        let mut providers_secrets = vec!["NotifySecret".to_owned()];
        for (name, arn, keys) in secrets.0 {
            let secret = variables.get(arn).unwrap_or_else(|| panic!("{name}: no function reads {arn}"));
            let mut template_keys = template_secrets[secret].clone();
            template_keys.sort();
            assert_eq!(template_keys, keys, "{name}: {secret}'s keys");
            providers_secrets.push(secret.clone());
        }
        providers_secrets.sort();
        assert_eq!(template_secrets.keys().cloned().collect::<Vec<_>>(), providers_secrets, "no other secret");

        let openapi: serde_yaml_ng::Value =
            serde_yaml_ng::from_str(&std::fs::read_to_string(root.join("openapi.yaml")).expect("openapi.yaml"))
                .expect("YAML");
        let names: Vec<&str> = provider_catalog::all().iter().map(|p| p.name).collect();
        let mut enums = 0;
        for (path, item) in openapi["paths"].as_mapping().expect("paths") {
            for operation in item.as_mapping().expect("path item").values() {
                for parameter in operation["parameters"].as_sequence().into_iter().flatten() {
                    if parameter["name"].as_str() == Some("provider") {
                        let values: Vec<&str> = parameter["schema"]["enum"]
                            .as_sequence()
                            .unwrap_or_else(|| panic!("{path:?}: provider has no enum"))
                            .iter()
                            .filter_map(|v| v.as_str())
                            .collect();
                        assert_eq!(values, names, "{path:?}: openapi.yaml's providers");
                        enums += 1;
                    }
                }
            }
        }
        assert!(enums >= 2, "GET and PUT /transactions/{{provider}}/{{reference}}");
    }

    /// edge-waf.yaml has a source-IP allowlist for every provider of the catalog and no
    /// other: a rule that lets its IPs through on its routes and one that blocks anyone
    /// else there, both matching a prefix of every path it is served at.
    #[test]
    fn the_edge_has_an_allowlist_per_provider() {
        use serde_yaml_ng::Value;
        fn rules(value: &Value, found: &mut Vec<(String, Vec<String>)>) {
            match value {
                Value::Mapping(map) => {
                    if let (Some(name), Some(_)) = (map.get("Name").and_then(Value::as_str), map.get("Priority")) {
                        let mut prefixes = Vec::new();
                        search_strings(value, &mut prefixes);
                        found.push((name.to_owned(), prefixes));
                    } else {
                        map.values().for_each(|v| rules(v, found));
                    }
                }
                Value::Sequence(items) => items.iter().for_each(|v| rules(v, found)),
                Value::Tagged(tagged) => rules(&tagged.value, found),
                Value::Null | Value::Bool(_) | Value::Number(_) | Value::String(_) => {}
            }
        }
        fn search_strings(value: &Value, found: &mut Vec<String>) {
            match value {
                Value::Mapping(map) => {
                    for (key, v) in map {
                        match (key.as_str(), v.as_str()) {
                            (Some("SearchString"), Some(prefix)) => found.push(prefix.to_owned()),
                            _ => search_strings(v, found),
                        }
                    }
                }
                Value::Sequence(items) => items.iter().for_each(|v| search_strings(v, found)),
                Value::Tagged(tagged) => search_strings(&tagged.value, found),
                Value::Null | Value::Bool(_) | Value::Number(_) | Value::String(_) => {}
            }
        }
        let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("..");
        let waf: Value =
            serde_yaml_ng::from_str(&std::fs::read_to_string(root.join("edge-waf.yaml")).expect("edge-waf.yaml"))
                .expect("YAML");
        let mut found = Vec::new();
        rules(&waf["Resources"]["WebAcl"]["Properties"]["Rules"], &mut found);
        let routes = routes();
        for route in &routes {
            for kind in ["allowlisted", "others"] {
                let name = format!("{}-{kind}", route.name);
                let prefixes = found.iter().find(|(n, _)| *n == name).map(|(_, p)| p.clone());
                let prefixes = prefixes.unwrap_or_else(|| panic!("edge-waf.yaml has no rule {name}"));
                assert_eq!(prefixes.len(), 1, "{name}: one path prefix");
                for path in std::iter::once(route.path).chain(route.also_at.iter().copied()) {
                    assert!(prefixes.iter().all(|p| path.starts_with(p.as_str())), "{name}: {prefixes:?} and {path}");
                }
            }
        }
        let names: Vec<&str> = found.iter().map(|(n, _)| n.as_str()).collect();
        assert_eq!(names.len(), 2 * routes.len() + 1, "an allowlist per provider, and the rate limit: {names:?}");
        assert!(names.contains(&"rate-per-ip"), "{names:?}");
    }

    /// Every alarm of template.yaml notifies the alarm topic on alarm and on recovery, and
    /// the dashboard is JSON whose log widget reads every provider's webhook function.
    #[test]
    fn every_alarm_notifies_and_the_dashboard_reads_every_provider() {
        use serde_yaml_ng::Value;
        let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("..");
        let template = crate::Template::load(&root.join("template.yaml")).expect("template.yaml");
        let mut alarms = 0;
        for (id, resource) in &template.resources {
            if resource["Type"].as_str() != Some("AWS::CloudWatch::Alarm") {
                continue;
            }
            alarms += 1;
            for key in ["AlarmActions", "OKActions"] {
                let actions = serde_yaml_ng::to_string(&resource["Properties"][key]).expect("YAML");
                let expected = ["AlarmsNotify", "AlarmTopicGiven", "AlarmTopicArn", "AlarmTopic", "AWS::NoValue"];
                assert!(expected.iter().all(|e| actions.contains(e)), "{id:?}: {key} is {actions}");
            }
        }
        assert!(alarms >= 9, "{alarms} alarms");

        let Value::Tagged(sub) = &template.resources["Dashboard"]["Properties"]["DashboardBody"] else {
            panic!("DashboardBody is not a !Sub");
        };
        let body = sub.value.as_str().expect("!Sub of a string").to_owned();
        // ${...} as !Sub fills it in: names of resources and pseudo parameters.
        let filled = regex_lite_fill(&body);
        let dashboard: serde_json::Value = serde_json::from_str(&filled).expect("the dashboard is JSON");
        let widgets = dashboard["widgets"].as_array().expect("widgets");
        assert!(widgets.len() >= 8, "{} widgets", widgets.len());
        let queries: Vec<&str> = widgets.iter().filter_map(|w| w["properties"]["query"].as_str()).collect();
        for route in routes() {
            let function = template.function_for_route(&route.key()).expect("function");
            let source = format!("SOURCE '/aws/lambda/<{function}>'");
            assert!(
                queries.first().is_some_and(|q| q.contains(&source)),
                "{}: no {source} in the webhooks widget",
                route.name
            );
        }
    }

    /// `text` with each `${Name}` or `${Name.Attribute}` of a !Sub as `<Name>`.
    fn regex_lite_fill(text: &str) -> String {
        let mut out = String::new();
        let mut rest = text;
        while let Some(start) = rest.find("${") {
            out.push_str(&rest[..start]);
            let end = rest[start..].find('}').expect("closed") + start;
            let name = rest[start + 2..end].split('.').next().unwrap_or_default();
            out.push_str(&format!("<{name}>"));
            rest = &rest[end + 1..];
        }
        out.push_str(rest);
        out
    }

    /// Every provider accepts the references its simulator makes and its fixtures store,
    /// and refuses what could leave a URL's path segment or is not its format.
    #[test]
    fn every_provider_checks_its_reference_format() {
        struct Check;
        impl EachSimulator for Check {
            fn simulator<S: Simulator>(&mut self) {
                let name = S::Provider::NAME;
                for n in [0, 1, 42, 999_999] {
                    let reference = S::stored_reference(&S::new_reference(n));
                    assert!(S::Provider::check_reference(&reference).is_ok(), "{name}: {reference}");
                }
                for bad in ["", "..", "../x", "a b", "x?y=1", "x#y", "x/y", "ü", &"9".repeat(101)] {
                    let error = S::Provider::check_reference(bad).expect_err(bad);
                    assert_eq!(error.code(), "invalid_field", "{name}: {bad:?}");
                }
            }
        }
        provider_catalog::for_each_simulator(&mut Check);
    }

    /// Every reference a fixture stores is in its provider's format.
    #[tokio::test]
    async fn every_stored_fixture_reference_is_in_its_providers_format() {
        let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("..");
        let known = provider_catalog::all();
        let expectations = expectations(&root).await.expect("fixtures");
        let mut checked = 0;
        for (file, expected) in expectations {
            let Some((reference, _)) = expected.stored else { continue };
            let provider = known.iter().find(|p| file.starts_with(&format!("{}/", p.name))).expect("its provider");
            assert!((provider.check_reference)(reference).is_ok(), "{file}: {reference}");
            checked += 1;
        }
        assert!(checked >= known.len(), "every provider stores at least one fixture: {checked}");
    }
}
