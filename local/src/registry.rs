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

/// Starts every provider's simulation (Pagstar's API stand-in) and points `env` at what
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
}

impl Route {
    /// "METHOD /path", as API Gateway's `routeKey` writes it.
    pub fn key(&self) -> String {
        format!("{} {}", self.method, self.path)
    }
}

/// Every provider's name and route.
pub fn routes() -> Vec<Route> {
    struct Collect(Vec<Route>);
    impl EachProvider for Collect {
        fn provider<S: Simulator>(&mut self) {
            type P<S> = <S as Simulator>::Provider;
            self.0.push(Route { name: P::<S>::NAME, method: P::<S>::METHOD, path: P::<S>::PATH });
        }
    }
    let mut collect = Collect(Vec::new());
    for_each(&mut collect);
    collect.0
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
            let route_key = route.key();
            assert!(template.function_for_route(&route_key).is_some(), "{}: no function for {route_key}", route.name);
            let operation = &openapi["paths"][route.path][route.method.to_ascii_lowercase().as_str()];
            assert!(operation.is_mapping(), "{}: openapi.yaml has no {route_key}", route.name);
            assert!(route.path.contains(route.name), "{}: its path {} names it", route.name, route.path);
        }
    }
}
