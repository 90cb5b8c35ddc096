//! `scripts/capacity`: the capacity model's tables at 1,000, 10,000 and 100,000 webhooks
//! a second, for the reference and the Pix mix and each merchant behaviour; with
//! `--verify`, its check against DynamoDB Local (`DYNAMODB_ENDPOINT`, `SQS_ENDPOINT`).
//! Exits 1 when the check fails or a limit is passed at a load the design holds to
//! ([`capacity::held`]: both mixes up to 10,000 webhooks a second); the others are
//! reported with every limit they pass. The model:
//! `local_pipeline::capacity`.

use local_pipeline::capacity::{self, Merchant, Mix};

#[tokio::main]
async fn main() -> std::process::ExitCode {
    match run().await {
        Ok(true) => std::process::ExitCode::SUCCESS,
        Ok(false) => std::process::ExitCode::FAILURE,
        Err(error) => {
            eprintln!("capacity: {error}");
            std::process::ExitCode::FAILURE
        }
    }
}

async fn run() -> Result<bool, Box<dyn std::error::Error + Send + Sync>> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let template = local_pipeline::Template::load(std::path::Path::new("template.yaml"))?;
    let table = capacity::Table::from_template(&template)?;
    let mut ok = true;
    let mut summary = Vec::new();
    for rate in [1_000.0, 10_000.0, 100_000.0] {
        for mix in [Mix::reference as fn(f64, Merchant) -> Mix, Mix::pix] {
            for merchant in Merchant::ALL {
                let figures = capacity::model(&table, &template, &mix(rate, merchant))?;
                println!("{figures}");
                summary.push(capacity::summary_row(&figures));
                if capacity::held(&figures.mix) {
                    ok &= figures.violations.is_empty();
                }
            }
        }
    }
    println!("## Summary\n\n{}", capacity::SUMMARY_HEADER);
    for row in summary {
        println!("{row}");
    }
    if args.iter().any(|a| a == "--verify") {
        let endpoint = std::env::var("DYNAMODB_ENDPOINT").map_err(|_| "--verify needs DYNAMODB_ENDPOINT")?;
        let report = capacity::verify(&endpoint, &template, &table).await?;
        println!("\n{report}");
        ok &= report.matches();
    }
    println!("\n{}", if ok { "capacity: every checked limit holds" } else { "capacity: LIMITS PASSED (see above)" });
    Ok(ok)
}
