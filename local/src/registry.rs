//! The one list of providers. The local pipeline, `scripts/send` and the tests that run
//! "every provider" take them from here; adding a provider is one line below (and its
//! crate in the workspace).

use shared::{Expected, Provider};

/// Something done once for each provider type.
pub trait EachProvider {
    fn provider<P: Provider + 'static>(&mut self);
}

/// Calls `each` for every provider, in this order.
pub fn for_each(each: &mut impl EachProvider) {
    each.provider::<azqr_webhook::Azqr>();
    each.provider::<pay3_webhook::Pay3>();
    each.provider::<qitech_webhook::QiTech>();
    each.provider::<key2pay_webhook::Key2Pay>();
    each.provider::<pagstar_webhook::Pagstar>();
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
        fn provider<P: Provider + 'static>(&mut self) {
            self.0.push(Route { name: P::NAME, method: P::METHOD, path: P::PATH });
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
        fn provider<P: Provider + 'static>(&mut self) {
            self.0.extend(P::FIXTURES.iter().map(|e| (format!("{}/{}", P::NAME, e.file), *e)));
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
