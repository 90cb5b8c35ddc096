//! The integration tests: one test binary (one link of the AWS SDK), one module per area,
//! and `support` for what they share. Storage tests run against DynamoDB Local and the SQS
//! server that `scripts/test` starts; every test prints how to get them when they are missing.
// Tests: a panic is a failed test.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::indexing_slicing)]

mod support;

mod attack;
mod attention;
mod docs;
mod events;
mod fuzz;
mod layout;
mod logs;
mod merchant_events;
mod money;
mod notifier;
mod properties;
mod providers;
mod reconciler_and_status;
mod request_count;
mod scale;
mod secrets;
mod sync;

/// Each provider's own scenarios, from its folder (`functions/<provider>/scenarios.rs`),
/// found by build.rs.
mod provider_scenarios {
    include!(concat!(env!("OUT_DIR"), "/provider_scenarios.rs"));
}
