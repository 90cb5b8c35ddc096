//! Property tests of the transition rule: on the model, and through DynamoDB Local's own
//! evaluation of the conditional update (which is what production runs).

use crate::support::{unique_number, Harness};
use proptest::collection::vec;
use proptest::prelude::*;
use proptest::test_runner::{Config, TestRunner};
use shared::model::{decide, Decision, Observation, Status};
use time::OffsetDateTime;

fn status() -> impl Strategy<Value = Status> {
    proptest::sample::select(Status::ALL.to_vec())
}

/// The rule, stated independently of `decide`: the highest-ranked status seen until the
/// first final one, which then stays.
fn monotone_fold(sequence: &[Status]) -> (Option<Status>, usize) {
    let mut current: Option<Status> = None;
    let mut applied = 0;
    for &status in sequence {
        let apply = match current {
            None => true,
            Some(c) if c.is_final() => false,
            Some(c) => status.is_final() || status.rank() > c.rank(),
        };
        if apply {
            current = Some(status);
            applied += 1;
        }
    }
    (current, applied)
}

fn fold_with_decide(sequence: &[Status]) -> (Option<Status>, usize) {
    sequence.iter().fold((None, 0), |(current, applied), &status| match decide(current, status) {
        Decision::Apply => (Some(status), applied + 1),
        Decision::Duplicate | Decision::Stale | Decision::Conflict => (current, applied),
    })
}

fn config(cases: u32) -> Config {
    Config { cases, failure_persistence: None, ..Config::default() }
}

proptest! {
    #![proptest_config(config(512))]

    #[test]
    fn decide_is_the_monotone_fold(sequence in vec(status(), 1..16)) {
        prop_assert_eq!(fold_with_decide(&sequence), monotone_fold(&sequence));
    }

    #[test]
    fn applying_each_event_twice_equals_applying_it_once(sequence in vec(status(), 1..16)) {
        let doubled: Vec<Status> = sequence.iter().flat_map(|s| [*s, *s]).collect();
        prop_assert_eq!(fold_with_decide(&doubled), fold_with_decide(&sequence));
    }

    #[test]
    fn a_final_status_never_changes(sequence in vec(status(), 1..16), tail in vec(status(), 0..16)) {
        let (reached, _) = fold_with_decide(&sequence);
        if let Some(final_status) = reached.filter(|s| s.is_final()) {
            let mut longer = sequence.clone();
            longer.extend(tail);
            prop_assert_eq!(fold_with_decide(&longer).0, Some(final_status));
        }
    }
}

#[test]
fn dynamodb_stores_the_monotone_fold_of_any_sequence() {
    let runtime = tokio::runtime::Runtime::new().expect("runtime");
    let h = runtime.block_on(Harness::new());
    let mut runner = TestRunner::new(config(40));
    runner
        .run(&vec(status(), 1..10), |sequence| {
            let reference = format!("prop-{}", unique_number());
            let (expected, applied) = monotone_fold(&sequence);
            let record = runtime.block_on(async {
                for (i, status) in sequence.iter().enumerate() {
                    let at = OffsetDateTime::from_unix_timestamp(1_795_000_000 + i as i64).expect("time");
                    let observation = Observation::new(reference.clone(), *status, status.as_str());
                    let (stored_decision, _) =
                        h.store.record("prop", &observation, at, Default::default()).await.expect("write");
                    let model = decide(fold_with_decide(&sequence[..i]).0, *status);
                    assert_eq!(stored_decision, model, "step {i} of {sequence:?}");
                }
                h.store.get("prop", &reference).await.expect("get").expect("item")
            });
            prop_assert_eq!(Some(record.status), expected);
            prop_assert_eq!(record.history.len(), applied);
            prop_assert_eq!(record.final_at.is_some(), expected.is_some_and(Status::is_final));
            Ok(())
        })
        .expect("DynamoDB agrees with the rule");
}
