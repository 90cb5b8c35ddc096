//! Fuzzing of every provider's verify-and-parse entry point (`Provider::receive`) with
//! proptest: arbitrary bytes and mutations of the fixtures' bodies, sent by the
//! provider's simulator with the credentials a genuine request carries (a key, a token,
//! a signature over the body), so the parsers behind verification are reached; and, where
//! the provider signs something inside the body (Pay3's JWT claims), arbitrary content
//! behind a valid signature. Nothing may panic or answer 5xx. `FUZZ_CASES` sets the cases
//! per target (default 256).

use crate::support::{dev_env, root};
use proptest::collection::vec;
use proptest::prelude::*;
use proptest::test_runner::{Config, TestRunner};
use provider_catalog::EachSimulator;
use provider_testkit::Simulator;
use shared::pipeline::{Inbound, Provider};
use time::OffsetDateTime;

/// The clock of every case; the simulators sign their requests (QI Tech's) for it.
fn now() -> OffsetDateTime {
    OffsetDateTime::from_unix_timestamp(1_795_341_600).expect("time")
}

fn cases() -> u32 {
    std::env::var("FUZZ_CASES").ok().and_then(|c| c.parse().ok()).unwrap_or(256)
}

/// Fixture bodies of a provider, as seeds for mutation.
fn seeds(provider: &str) -> Vec<Vec<u8>> {
    crate::support::fixture_files()
        .into_iter()
        .filter(|f| f.starts_with(&format!("{provider}/")))
        .map(|f| {
            let text = std::fs::read_to_string(root().join("events").join(f)).expect("fixture");
            let event: serde_json::Value = serde_json::from_str(&text).expect("JSON");
            event["body"].as_str().unwrap_or_default().as_bytes().to_vec()
        })
        .collect()
}

/// Arbitrary bytes, or a seed with bytes flipped, cut or inserted.
fn body(seeds: Vec<Vec<u8>>) -> impl Strategy<Value = Vec<u8>> {
    let mutated = (proptest::sample::select(seeds), vec((any::<usize>(), any::<u8>(), 0u8..3), 1..8)).prop_map(
        |(mut seed, edits)| {
            for (at, byte, kind) in edits {
                let at = if seed.is_empty() { 0 } else { at % seed.len() };
                match kind {
                    0 if !seed.is_empty() => seed[at] = byte,
                    1 => seed.truncate(at),
                    _ => seed.insert(at, byte),
                }
            }
            seed
        },
    );
    prop_oneof![vec(any::<u8>(), 0..512), mutated]
}

/// Runs `strategy`'s cases through `provider.receive` of the request `request` makes.
fn fuzz<P: Provider>(
    runtime: &tokio::runtime::Runtime,
    target: &str,
    provider: &P,
    strategy: impl Strategy<Value = Vec<u8>>,
    request: impl Fn(&[u8]) -> Inbound,
) {
    let now = now();
    let mut runner = TestRunner::new(Config { cases: cases(), failure_persistence: None, ..Config::default() });
    runner
        .run(&strategy, |bytes| {
            let (request, at) = local_pipeline::fuzzing::as_received::<P>(&request(&bytes), now);
            let result = runtime.block_on(provider.receive(&request, at));
            if let Err(error) = result {
                prop_assert!(error.status().is_client_error(), "{target}: {} {error}", error.status());
            }
            Ok(())
        })
        .unwrap_or_else(|e| panic!("{target}: {e}"));
}

/// Both targets of one provider.
fn fuzz_provider<S: Simulator>(runtime: &tokio::runtime::Runtime) {
    let name = S::Provider::NAME;
    let mut env = dev_env();
    let (simulator, variables) = runtime.block_on(S::start(&env, &root())).expect("simulator");
    for (variable, value) in variables {
        env.set_default(variable, value);
    }
    let provider = S::Provider::from_env(&env).unwrap_or_else(|e| panic!("{name}: {e}"));
    let now = now();
    fuzz(runtime, name, &provider, body(seeds(name)), |bytes| simulator.with_body(bytes, now));
    let reference = S::new_reference(1);
    let contents: Vec<Vec<u8>> =
        S::SEQUENCE.iter().filter_map(|word| simulator.signed_content(&reference, word)).collect();
    if !contents.is_empty() {
        let target = format!("{name} signed content");
        fuzz(runtime, &target, &provider, body(contents), |bytes| simulator.sign_content(bytes, now));
    }
}

#[test]
fn every_provider_answers_arbitrary_input_with_a_4xx_at_worst() {
    // Multi-threaded: a simulated API (Pagstar's) keeps serving on the workers while a
    // case blocks on the provider.
    let runtime = tokio::runtime::Runtime::new().expect("runtime");
    struct Each<'a>(&'a tokio::runtime::Runtime, usize);
    impl EachSimulator for Each<'_> {
        fn simulator<S: Simulator>(&mut self) {
            fuzz_provider::<S>(self.0);
            self.1 += 1;
        }
    }
    let mut each = Each(&runtime, 0);
    provider_catalog::for_each_simulator(&mut each);
    assert_eq!(each.1, provider_catalog::all().len(), "every provider");
}

/// The coverage-guided fuzz targets (`fuzz/`, run by `scripts/fuzz` with cargo fuzz) on
/// stable: every target has its cargo-fuzz file, and its seed corpus (the fixtures'
/// bodies) and every input saved under `fuzz/regressions/<target>/` run through it
/// without a violation. A crash `scripts/fuzz` finds is saved there, so it stays fixed.
#[test]
fn fuzz_seeds_and_saved_regressions_replay_without_a_violation() {
    use local_pipeline::fuzzing::{regressions, Targets};
    let targets = Targets::new();
    let names = targets.names();
    assert_eq!(names, ["events-query", "notifier-decode", "registration", "status-api", "webhook"]);
    let mut replayed = 0;
    for name in &names {
        let file = root().join("fuzz/fuzz_targets").join(format!("{name}.rs"));
        assert!(file.is_file(), "{name}: no {}", file.display());
        for seed in Targets::seeds(name) {
            targets.run(name, &seed);
            replayed += 1;
        }
    }
    for (target, files) in regressions() {
        assert!(names.contains(&target.as_str()), "fuzz/regressions/{target}: no such target");
        for file in files {
            targets.run(&target, &std::fs::read(&file).expect("regression input"));
            replayed += 1;
        }
    }
    assert!(replayed >= 40, "{replayed} inputs");
    println!("fuzz: {} targets, {replayed} seed and regression inputs replayed", names.len());
}
