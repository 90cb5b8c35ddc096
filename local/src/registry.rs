//! The one list of providers. The local pipeline, `make-events`, `scripts/send`, the
//! benchmarks and every test that runs "every provider" take them from here; adding a
//! provider is one line below (and its crate in the workspace).
//!
//! Each entry is the provider's simulator, which names the provider it simulates.

use shared::simulator::{SimulatorError, Variables};
use shared::{Expected, Provider, Simulator};

/// Something done once for each provider, given its simulator type (`S::Provider` is the
/// provider).
pub trait EachProvider {
    fn provider<S: Simulator>(&mut self);
}

/// Calls `each` for every provider, in this order.
pub fn for_each(each: &mut impl EachProvider) {
    each.provider::<azqr_webhook::simulator::AzqrSimulator>();
    each.provider::<pay3_webhook::simulator::Pay3Simulator>();
    each.provider::<qitech_webhook::simulator::QiTechSimulator>();
    each.provider::<key2pay_webhook::simulator::Key2PaySimulator>();
    each.provider::<pagstar_webhook::simulator::PagstarSimulator>();
}

/// Starts every provider's simulation (the stand-ins of AZQR's, Pay3's and Pagstar's APIs, each
/// unless its `*_API_URL` is set) and points `env` at what
/// they started; a variable the environment already sets wins. Returns the variables set.
pub async fn start_simulations(env: &mut crate::DevEnv, root: &std::path::Path) -> Result<Variables, SimulatorError> {
    type Start<'a> =
        std::pin::Pin<Box<dyn std::future::Future<Output = Result<Variables, SimulatorError>> + Send + 'a>>;
    struct Collect<'a> {
        env: &'a crate::DevEnv,
        root: &'a std::path::Path,
        starts: Vec<Start<'a>>,
    }
    impl EachProvider for Collect<'_> {
        fn provider<S: Simulator>(&mut self) {
            let (env, root) = (self.env, self.root);
            self.starts.push(Box::pin(async move { S::start(env, root).await.map(|(_, variables)| variables) }));
        }
    }
    let mut variables = Vec::new();
    {
        let mut collect = Collect { env, root, starts: Vec::new() };
        for_each(&mut collect);
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
    pub fn path_of(&self, request: &shared::Inbound) -> String {
        fill(self.path, request)
    }

    /// "METHOD /path", as API Gateway's `routeKey` writes it.
    pub fn key(&self) -> String {
        format!("{} {}", self.method, self.path)
    }
}

/// `route` (a template.yaml path) with its `{parameters}` filled in from `request`.
pub fn fill(route: &str, request: &shared::Inbound) -> String {
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
    impl EachProvider for Collect {
        fn provider<S: Simulator>(&mut self) {
            type P<S> = <S as Simulator>::Provider;
            self.0.push(Route {
                name: P::<S>::NAME,
                method: P::<S>::METHOD,
                path: P::<S>::PATH,
                also_at: P::<S>::ALSO_AT,
            });
        }
    }
    let mut collect = Collect(Vec::new());
    for_each(&mut collect);
    collect.0
}

/// Every provider as the status sync sees it, configured from `env` (the local pipeline
/// and the tests; the Lambda function lists the same providers in `status_sync::providers`).
pub fn synced_providers(env: &impl shared::Env) -> Result<Vec<status_sync::SyncedProvider>, shared::ConfigError> {
    struct Collect<'a, E> {
        env: &'a E,
        synced: Result<Vec<status_sync::SyncedProvider>, shared::ConfigError>,
    }
    impl<E: shared::Env> EachProvider for Collect<'_, E> {
        fn provider<S: Simulator>(&mut self) {
            if let Ok(synced) = &mut self.synced {
                match status_sync::SyncedProvider::of::<S::Provider>(self.env) {
                    Ok(provider) => synced.push(provider),
                    Err(error) => self.synced = Err(error),
                }
            }
        }
    }
    let mut collect = Collect { env, synced: Ok(Vec::new()) };
    for_each(&mut collect);
    collect.synced
}

/// Every provider's fixture expectations, each with its path under `events/`
/// (`<provider>/<file>`).
pub fn fixtures() -> Vec<(String, Expected)> {
    struct Collect(Vec<(String, Expected)>);
    impl EachProvider for Collect {
        fn provider<S: Simulator>(&mut self) {
            let name = S::Provider::NAME;
            self.0.extend(S::Provider::FIXTURES.iter().map(|e| (format!("{name}/{}", e.file), *e)));
        }
    }
    let mut collect = Collect(Vec::new());
    for_each(&mut collect);
    collect.0
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
        assert_eq!(routes.len(), 5);
        let mut names: Vec<_> = routes.iter().map(|r| r.name).collect();
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

    /// Every provider accepts the references its simulator makes and its fixtures store,
    /// and refuses what could leave a URL's path segment or is not its format.
    #[test]
    fn every_provider_checks_its_reference_format() {
        struct Check;
        impl EachProvider for Check {
            fn provider<S: Simulator>(&mut self) {
                let name = S::Provider::NAME;
                for n in [0, 1, 42, 999_999] {
                    let reference = S::stored_reference(&S::new_reference(n));
                    assert!(S::Provider::check_reference(&reference).is_ok(), "{name}: {reference}");
                }
                for (reference, _) in S::Provider::FIXTURES.iter().filter_map(|e| e.stored) {
                    assert!(S::Provider::check_reference(reference).is_ok(), "{name}: fixture {reference}");
                }
                for bad in ["", "..", "../x", "a b", "x?y=1", "x#y", "x/y", "ü", &"9".repeat(101)] {
                    let error = S::Provider::check_reference(bad).expect_err(bad);
                    assert_eq!(error.code(), "invalid_field", "{name}: {bad:?}");
                }
            }
        }
        for_each(&mut Check);
    }

    /// The Lambda function syncs exactly the registry's providers, in the same order.
    #[test]
    fn the_status_sync_lists_the_registry() {
        let none: [(&str, &str); 0] = [];
        let registry: Vec<(&str, bool)> =
            synced_providers(&none).expect("no configuration").iter().map(|p| (p.name, p.has_status_api)).collect();
        let known: Vec<(&str, bool)> = status_sync::known().iter().map(|p| (p.name, p.has_status_api)).collect();
        assert_eq!(registry, known);
    }
}
