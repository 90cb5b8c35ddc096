#![no_main]
//! Every provider's webhook, the provider named by the input's first line. See
//! local/src/fuzzing.rs for what this target checks.

use std::sync::LazyLock;

use libfuzzer_sys::fuzz_target;
use local_pipeline::fuzzing::{Targets, WEBHOOK};

static TARGETS: LazyLock<Targets> = LazyLock::new(Targets::new);

fuzz_target!(|data: &[u8]| TARGETS.run(WEBHOOK, data));
