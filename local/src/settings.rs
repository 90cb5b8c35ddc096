//! Every function's settings (the variables it reads), by the binary template.yaml builds
//! it from, and the local pipeline's own: what template.yaml and the documentation are
//! checked against.

use shared::pipeline::Provider;
use shared::pipeline::{HintRelay, Webhook};
use shared::runtime::config::Setting;

use crate::timing;

/// How often the run command runs the status sync (on AWS: every minute).
pub const STATUS_SYNC_INTERVAL: Setting =
    Setting::positive("STATUS_SYNC_INTERVAL_SECONDS", 30, "how often the run command runs the status sync");

/// The variables the run command, the scripts and the tests read (besides each function's).
pub const LOCAL: [Setting; 15] = [
    Setting::optional("PORT", Some("3000"), "the run command's HTTP port"),
    Setting::optional("RUST_LOG", Some("info"), "the run command's log filter"),
    Setting::required("DYNAMODB_ENDPOINT", "DynamoDB Local's endpoint (set by the scripts)"),
    Setting::required("SQS_ENDPOINT", "moto's endpoint: SQS and Secrets Manager (set by the scripts)"),
    Setting::optional("LOCAL_RESOURCE_PREFIX", Some("local-"), "prefix of the local table, queue and secret names"),
    Setting::optional("LOCAL_MERCHANT_STATUS", Some("204"), "what the local merchant endpoint answers"),
    STATUS_SYNC_INTERVAL,
    timing::NOTIFIER_POLLERS,
    timing::NOTIFY_TIMEOUT,
    timing::NOTIFY_BACKOFF,
    timing::RECONCILER_GRACE,
    timing::RECONCILER_INTERVAL,
    timing::RECONCILER_REPEAT,
    timing::QUEUE_VISIBILITY,
    Setting::optional(
        "ALLOW_DEVELOPMENT_SECRETS",
        None,
        "true lets a function under the Lambda emulator start with the development secrets",
    ),
];

/// The settings of the function template.yaml builds from `binary`, or `None` for a
/// binary no function is built from.
pub fn of_binary(binary: &str) -> Option<Vec<Setting>> {
    match binary {
        "notifier" => Some(notifier::SETTINGS.to_vec()),
        "reconciler" => Some(reconciler::SETTINGS.to_vec()),
        "transactions-api" => Some(transactions_api::settings()),
        "events-api" => Some(events_api::SETTINGS.to_vec()),
        "status-sync" => Some(status_sync::settings()),
        other => {
            // A provider's webhook function, `<name>-webhook`, and for a webhook that is a
            // hint, its consumer, `<name>-confirm`.
            struct Find<'a>(&'a str, Option<Vec<Setting>>);
            impl provider_catalog::EachProvider for Find<'_> {
                fn provider<P: Provider>(&mut self) {
                    let hint = P::HINT.is_some();
                    if self.0 == format!("{}-webhook", P::NAME) {
                        self.1 = Some(if hint { HintRelay::<P>::settings() } else { Webhook::<P>::settings() });
                    } else if hint && self.0 == format!("{}-confirm", P::NAME) {
                        self.1 = Some(Webhook::<P>::settings());
                    }
                }
            }
            let mut find = Find(other, None);
            provider_catalog::for_each(&mut find);
            find.1
        }
    }
}

#[cfg(test)]
mod tests {
    use std::collections::{BTreeMap, BTreeSet};

    use shared::runtime::config::SettingKind;

    use super::*;
    use crate::template::Template;

    fn root() -> std::path::PathBuf {
        std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("..")
    }

    /// Each function's variables in template.yaml are its settings, and it gets every one
    /// it requires (from its own block or the globals).
    #[test]
    fn template_yaml_gives_each_function_its_settings() {
        let template = Template::load(&root().join("template.yaml")).expect("template.yaml");
        let globals: BTreeSet<String> = template.globals["Function"]["Environment"]["Variables"]
            .as_mapping()
            .into_iter()
            .flatten()
            .filter_map(|(name, _)| name.as_str().map(str::to_owned))
            .collect();
        let ids = template.function_ids();
        assert!(!ids.is_empty());
        for id in ids {
            let function = template.function(&id).expect("function");
            let settings =
                of_binary(&function.binary).unwrap_or_else(|| panic!("{id}: no settings for {}", function.binary));
            let names: BTreeSet<&str> = settings.iter().map(|s| s.name).collect();
            for variable in function.variables.keys().filter(|v| !globals.contains(*v)) {
                assert!(
                    names.contains(variable.as_str()),
                    "{id} sets {variable}, which {} does not read",
                    function.binary
                );
            }
            for setting in settings.iter().filter(|s| s.kind == SettingKind::Required) {
                assert!(
                    function.variables.contains_key(setting.name),
                    "{id} lacks {}, which it requires",
                    setting.name
                );
            }
        }
    }

    /// The documentation's variable tables (docs/configuration.md and each provider's
    /// page) list every setting, and nothing else but the secrets' keys; where a row
    /// names a function's binary as a user, that function reads the variable.
    #[test]
    fn the_documentation_lists_every_setting() {
        let mut pages = vec![root().join("docs/configuration.md")];
        for entry in std::fs::read_dir(root().join("docs/providers")).expect("docs/providers").flatten() {
            pages.push(entry.path());
        }
        let mut documented: BTreeMap<String, Vec<String>> = BTreeMap::new();
        for page in pages {
            let text = std::fs::read_to_string(&page).expect("page");
            for line in text.lines().filter(|l| l.starts_with("| `")) {
                let cells: Vec<&str> = line.split('|').map(str::trim).collect();
                let (variables, users) = (cells.get(1).copied().unwrap_or(""), cells.get(2).copied().unwrap_or(""));
                let users: Vec<String> = users.split(',').map(|u| u.trim().to_owned()).collect();
                for name in variables.split('`').filter(|n| {
                    n.len() > 2 && n.chars().all(|c| c.is_ascii_uppercase() || c.is_ascii_digit() || c == '_')
                }) {
                    documented.entry(name.to_owned()).or_default().extend(users.iter().cloned());
                }
            }
        }
        struct Keys(Vec<&'static str>);
        impl provider_catalog::EachProvider for Keys {
            fn provider<P: Provider>(&mut self) {
                self.0.extend(P::SECRET.keys);
            }
        }
        let mut keys = Keys(notifier::SECRET.keys.to_vec());
        provider_catalog::for_each(&mut keys);
        let template = Template::load(&root().join("template.yaml")).expect("template.yaml");
        let binaries: BTreeSet<String> =
            template.function_ids().iter().filter_map(|id| template.function(id).ok()).map(|f| f.binary).collect();
        let mut all: BTreeSet<&str> = LOCAL.iter().map(|s| s.name).collect();
        for binary in &binaries {
            let settings = of_binary(binary).unwrap_or_default();
            for setting in &settings {
                assert!(
                    documented.contains_key(setting.name),
                    "{binary} reads {}, which no docs table lists",
                    setting.name
                );
            }
            all.extend(settings.iter().map(|s| s.name).collect::<Vec<_>>());
        }
        for (name, users) in &documented {
            assert!(
                all.contains(name.as_str()) || keys.0.contains(&name.as_str()),
                "the docs list {name}, which nothing reads"
            );
            for binary in users.iter().filter(|u| binaries.contains(*u)) {
                let reads = of_binary(binary).unwrap_or_default().iter().any(|s| s.name == name);
                assert!(reads, "the docs say {binary} reads {name}; it does not");
            }
        }
    }
}
