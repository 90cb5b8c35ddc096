#![no_main]
//! See local/src/fuzzing.rs for what this target checks.

use std::sync::LazyLock;

use libfuzzer_sys::fuzz_target;
use local_pipeline::fuzzing::Targets;

static TARGETS: LazyLock<Targets> = LazyLock::new(Targets::new);

fuzz_target!(|data: &[u8]| TARGETS.run("pay3", data));
