//! `scripts/chaos --transactions 5000 --seed 1`: see `local_pipeline::chaos`. Prints the
//! figures and exits 1 on any violation.

use std::process::ExitCode;

use local_pipeline::{chaos, DevEnv};

#[tokio::main]
async fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let options = match chaos::options_from_args(&args, &DevEnv::default()) {
        Ok(options) => options,
        Err(error) => {
            eprintln!("chaos: {error}");
            return ExitCode::from(2);
        }
    };
    println!(
        "chaos: {} transactions, seed {}, {} kills; the pipeline's log: {}",
        options.transactions,
        options.seed,
        options.kills,
        options.log.display()
    );
    match chaos::run(&options).await {
        Ok(report) => {
            println!("{report}");
            if report.violations.is_empty() {
                ExitCode::SUCCESS
            } else {
                ExitCode::FAILURE
            }
        }
        Err(error) => {
            eprintln!("chaos: {error}");
            ExitCode::FAILURE
        }
    }
}
