//! `payhooks`: the command line of the people who run the stack. See
//! `local_pipeline::cli` for the commands and exit codes.

use std::process::ExitCode;

#[tokio::main]
async fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let code = local_pipeline::cli::run(&args, &mut std::io::stdout(), &mut std::io::stderr()).await;
    ExitCode::from(code)
}
