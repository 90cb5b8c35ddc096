//! The catalog of providers: the only place the list of providers exists. The status
//! sync, the transactions API, the local pipeline, `scripts/invoke`, the fuzzing, the
//! benchmarks and every test that runs "every provider" take them from here.
//!
//! Adding a provider is one line in [`catalog!`] below, beside its folder, fixtures,
//! template block and docs page: the steps are in docs/development.md, "Adding a provider".

use std::sync::Arc;

use futures_util::future::BoxFuture;
use shared::pipeline::{CallbackTokens, KnownProvider, Provider, Webhook};
use shared::runtime::config::{ConfigError, Env};
use shared::runtime::SecretsClient;
use time::OffsetDateTime;

/// Something done once for each provider, given its type.
pub trait EachProvider {
    fn provider<P: Provider>(&mut self);
}

/// Something done once for each provider's simulator (`S::Provider` is the provider).
#[cfg(feature = "simulator")]
pub trait EachSimulator {
    fn simulator<S: provider_testkit::Simulator>(&mut self);
}

/// Writes [`for_each`] and [`for_each_simulator`] from one list of `Provider =>
/// Simulator` lines.
macro_rules! catalog {
    ($($provider:ty => $simulator:ty),+ $(,)?) => {
        /// Calls `each` for every provider, in the catalog's order.
        pub fn for_each(each: &mut impl EachProvider) {
            $(each.provider::<$provider>();)+
        }

        /// Calls `each` for every provider's simulator, in the catalog's order.
        #[cfg(feature = "simulator")]
        pub fn for_each_simulator(each: &mut impl EachSimulator) {
            // Each line's simulator simulates that line's provider (checked at compile time).
            fn simulates<P, S: provider_testkit::Simulator<Provider = P>>() {}
            $(simulates::<$provider, $simulator>();)+
            $(each.simulator::<$simulator>();)+
        }
    };
}

catalog! {
    azqr_webhook::Azqr => azqr_webhook::simulator::AzqrSimulator,
    pay3_webhook::Pay3 => pay3_webhook::simulator::Pay3Simulator,
    qitech_webhook::QiTech => qitech_webhook::simulator::QiTechSimulator,
    key2pay_webhook::Key2Pay => key2pay_webhook::simulator::Key2PaySimulator,
    pagstar_webhook::Pagstar => pagstar_webhook::simulator::PagstarSimulator,
}

/// Every provider: its name, whether it has a status API, and its reference format.
pub fn all() -> Vec<KnownProvider> {
    struct Collect(Vec<KnownProvider>);
    impl EachProvider for Collect {
        fn provider<P: Provider>(&mut self) {
            self.0.push(KnownProvider::new::<P>());
        }
    }
    let mut collect = Collect(Vec::new());
    for_each(&mut collect);
    collect.0
}

/// The callback tokens of every provider that issues them ([`Provider::CALLBACK_TOKEN`]),
/// each from its secret read as its webhook function reads it (Secrets Manager, kept
/// current; the plain variables in development).
pub async fn callback_tokens(
    env: Arc<dyn Env + Send + Sync>,
    secrets: &SecretsClient,
    now: OffsetDateTime,
) -> Result<Vec<Arc<dyn CallbackTokens>>, ConfigError> {
    type Loading = BoxFuture<'static, Result<Arc<dyn CallbackTokens>, ConfigError>>;
    struct Collect {
        env: Arc<dyn Env + Send + Sync>,
        secrets: SecretsClient,
        now: OffsetDateTime,
        loading: Vec<Loading>,
    }
    impl EachProvider for Collect {
        fn provider<P: Provider>(&mut self) {
            if P::CALLBACK_TOKEN {
                let (env, secrets, now) = (Arc::clone(&self.env), self.secrets.clone(), self.now);
                self.loading.push(Box::pin(async move {
                    let tokens = Webhook::<P>::provider_from_env(env, &secrets, now).await?;
                    Ok(Arc::new(tokens) as Arc<dyn CallbackTokens>)
                }));
            }
        }
    }
    let mut collect = Collect { env, secrets: secrets.clone(), now, loading: Vec::new() };
    for_each(&mut collect);
    let mut tokens = Vec::with_capacity(collect.loading.len());
    for loading in collect.loading {
        tokens.push(loading.await?);
    }
    Ok(tokens)
}

#[cfg(test)]
mod tests {
    /// Names are what keys, routes and events are told apart by.
    #[test]
    fn names_are_distinct_lowercase_and_short() {
        let known = super::all();
        assert!(!known.is_empty());
        let mut names: Vec<&str> = known.iter().map(|p| p.name).collect();
        for name in &names {
            assert!(
                (1..=16).contains(&name.len()) && name.bytes().all(|b| b.is_ascii_lowercase() || b.is_ascii_digit()),
                "{name}"
            );
        }
        names.sort_unstable();
        names.dedup();
        assert_eq!(names.len(), known.len(), "distinct");
    }
}
