//! `scripts/attack [--flood-seconds 60]`: see `local_pipeline::attack`. Prints the figures
//! and exits 1 unless every one is as required.

use std::process::ExitCode;

use local_pipeline::{attack, DevEnv};

#[tokio::main]
async fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let options = match attack::options_from_args(&args, &DevEnv::default()) {
        Ok(options) => options,
        Err(error) => {
            eprintln!("attack: {error}");
            return ExitCode::from(2);
        }
    };
    println!("attack: seed {}; the pipeline's log: {}", options.seed, options.log.display());
    match attack::run(&options).await {
        Ok(report) => {
            println!("{report}");
            if report.violations.is_empty() {
                ExitCode::SUCCESS
            } else {
                ExitCode::FAILURE
            }
        }
        Err(error) => {
            eprintln!("attack: {error}");
            ExitCode::FAILURE
        }
    }
}
