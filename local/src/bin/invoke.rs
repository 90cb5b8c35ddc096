//! `scripts/invoke`: a Docker-free `sam local invoke`, with its arguments:
//! `scripts/invoke <LogicalId> -e <event.json> [--parameter-overrides K=V ...] [--env-vars file.json]`.
//!
//! Runs the function's built artifact (`.aws-sam/build/<LogicalId>/bootstrap`, arm64,
//! through qemu on x86_64) under AWS's Lambda Runtime Interface Emulator, with the
//! environment template.yaml gives it, against the emulators at DYNAMODB_ENDPOINT and
//! SQS_ENDPOINT (started by the script, or a running `scripts/run-local`'s). Prints the
//! Lambda response on stdout and the function's log on stderr; exits 1 when the
//! invocation fails (init error, crash, timeout).

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::{Command, ExitCode};
use std::time::Duration;

use local_pipeline::invoke::{self, Bindings, Endpoints, Launch};
use local_pipeline::{fixtures, merchant, stack, DevEnv, Template};
use shared::runtime::config::Env;

type Error = Box<dyn std::error::Error + Send + Sync>;

const USAGE: &str =
    "usage: scripts/invoke <LogicalId> -e <event.json> [--parameter-overrides Key=Value ...] [--env-vars file.json]";

#[derive(Debug, Default)]
struct Args {
    logical_id: String,
    event: PathBuf,
    overrides: BTreeMap<String, String>,
    env_vars: Option<PathBuf>,
}

fn parse_args(args: &[String]) -> Result<Args, String> {
    let mut parsed = Args::default();
    let mut event = None;
    let mut args = args.iter().peekable();
    while let Some(arg) = args.next() {
        match arg.as_str() {
            "-e" | "--event" => event = Some(PathBuf::from(args.next().ok_or("-e needs a file")?)),
            "-n" | "--env-vars" => parsed.env_vars = Some(PathBuf::from(args.next().ok_or("--env-vars needs a file")?)),
            "--parameter-overrides" => {
                while let Some(pair) = args.next_if(|a| !a.starts_with('-')) {
                    // SAM's long form too: ParameterKey=K,ParameterValue=V
                    let (key, value) =
                        match pair.strip_prefix("ParameterKey=").and_then(|r| r.split_once(",ParameterValue=")) {
                            Some(kv) => kv,
                            None => pair.split_once('=').ok_or_else(|| format!("{pair}: expected Key=Value"))?,
                        };
                    parsed.overrides.insert(key.to_owned(), value.to_owned());
                }
            }
            flag if flag.starts_with('-') => return Err(format!("unknown option {flag}")),
            id if parsed.logical_id.is_empty() => parsed.logical_id = id.to_owned(),
            extra => return Err(format!("unexpected argument {extra}")),
        }
    }
    if parsed.logical_id.is_empty() {
        return Err("no function logical id".into());
    }
    parsed.event = event.ok_or("no event: -e <event.json>")?;
    Ok(parsed)
}

/// The artifact to run: what `sam build` made (built first if missing and it can run
/// here), or, where an arm64 artifact cannot run here, an x86_64 release build of it.
fn artifact(root: &Path, logical_id: &str, binary: &str) -> Result<Launch, Error> {
    let bootstrap = invoke::built_artifact(root, logical_id);
    if !bootstrap.is_file() && Launch::can_run_arm64() {
        eprintln!("invoke: {} is missing; running `sam build {logical_id}`", bootstrap.display());
        // Its progress goes to stderr: stdout is for the Lambda response alone.
        let status = Command::new(root.join(".local/venv/bin/sam"))
            .args(["build", logical_id])
            .stdout(std::io::stderr())
            .status()?;
        if !status.success() {
            return Err(format!("sam build {logical_id} failed").into());
        }
    }
    match Launch::for_artifact(&bootstrap) {
        Ok(launch) => Ok(launch),
        Err(why) => {
            eprintln!(
                "invoke: {why}\ninvoke: falling back to an x86_64 release build (`cargo build --release --bin {binary}`): \
                 this is NOT the artifact `sam deploy` uploads"
            );
            let status = Command::new("cargo")
                .args(["build", "--release", "--quiet", "--bin", binary])
                .stdout(std::io::stderr())
                .status()?;
            if !status.success() {
                return Err(format!("cargo build --release --bin {binary} failed").into());
            }
            Ok(Launch::Native(root.join("target/release").join(binary)))
        }
    }
}

async fn run(args: Args) -> Result<bool, Error> {
    let root = std::env::current_dir()?;
    let template = Template::load(&root.join("template.yaml"))?;
    let function = template.function(&args.logical_id)?;
    let mut dev_env = DevEnv::load(&root.join("local.env.example"))?;
    let endpoints =
        Endpoints { dynamodb: dev_env.required("DYNAMODB_ENDPOINT")?, sqs: dev_env.required("SQS_ENDPOINT")? };
    let prefix = dev_env.optional("LOCAL_RESOURCE_PREFIX").unwrap_or_else(|| "local-".into());
    // The function reads its secrets by ARN, as in AWS: they are created in moto from the
    // development values (local.env.example, or the environment). Outside services with a
    // local stand-in (a provider's API) are started as the run command starts them; a
    // value given in the environment or as an override wins.
    let (resources, simulated) = stack::bring_up(&template, &mut dev_env, &root, &prefix).await?;
    for (variable, value) in simulated {
        eprintln!("invoke: {variable}={value}, a local stand-in (not given)");
    }
    let needs = |dev_env: &DevEnv, parameter: &str, variable: &'static str| {
        function.parameters(&template).any(|(p, _)| p == parameter)
            && !args.overrides.contains_key(parameter)
            && dev_env.optional(variable).is_none()
    };
    if needs(&dev_env, "NotifyUrl", "NOTIFY_URL") {
        let url = merchant::start(&dev_env.required("NOTIFY_SECRET")?, http::StatusCode::NO_CONTENT).await?;
        eprintln!("invoke: local merchant endpoint on {url} (NotifyUrl not given)");
        dev_env.set_default("NOTIFY_URL", url);
    }

    let bindings =
        Bindings { overrides: &args.overrides, dev_env: &dev_env, resources: &resources, endpoints: &endpoints };
    let mut env = function.environment(&template, &bindings)?;
    if let Some(path) = &args.env_vars {
        // As sam local invoke: only the variables the template gives the function are overridden.
        for (name, value) in invoke::env_vars_file(&std::fs::read_to_string(path)?, &args.logical_id)? {
            if function.variables.contains_key(&name) {
                env.insert(name, value);
            } else {
                eprintln!(
                    "invoke: --env-vars {name} ignored: {} has no such variable in template.yaml",
                    args.logical_id
                );
            }
        }
    }

    let mut event: serde_json::Value = serde_json::from_str(&std::fs::read_to_string(&args.event)?)?;
    fixtures::resign_for(&mut event, &root, &dev_env, time::OffsetDateTime::now_utc())?;

    let launch = artifact(&root, &args.logical_id, &function.binary)?;
    let rie = invoke::runtime_interface_emulator(&root)?;
    eprintln!("invoke: {} = {} under {}", args.logical_id, launch.describe(), rie.display());
    let timeout = Duration::from_secs(function.timeout_seconds + 60);
    let invocation = invoke::invoke(&rie, &launch, &env, event.to_string().as_bytes(), timeout).await?;
    eprint!("{}", invocation.function_log);
    println!("{}", invocation.response);
    match invocation.failure() {
        Some(failure) => {
            eprintln!("invoke: the invocation failed: {failure}\n{}", invocation.emulator_log);
            Ok(false)
        }
        None => Ok(true),
    }
}

#[tokio::main]
async fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let args = match parse_args(&args) {
        Ok(args) => args,
        Err(error) => {
            eprintln!("invoke: {error}\n{USAGE}");
            return ExitCode::from(2);
        }
    };
    match run(args).await {
        Ok(true) => ExitCode::SUCCESS,
        Ok(false) => ExitCode::FAILURE,
        Err(error) => {
            eprintln!("invoke: {error}");
            ExitCode::FAILURE
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(args: &[&str]) -> Result<Args, String> {
        parse_args(&args.iter().map(|a| (*a).to_owned()).collect::<Vec<_>>())
    }

    #[test]
    fn parses_sam_local_invoke_arguments() {
        let args = parse(&[
            "AzqrWebhookFunction",
            "-e",
            "events/azqr/completed.json",
            "--parameter-overrides",
            "AzqrApiKey=k=1",
            "ParameterKey=Pay3JwtAlgorithm,ParameterValue=HS256",
            "--env-vars",
            "env.json",
        ])
        .expect("valid");
        assert_eq!(args.logical_id, "AzqrWebhookFunction");
        assert_eq!(args.event, PathBuf::from("events/azqr/completed.json"));
        assert_eq!(args.overrides["AzqrApiKey"], "k=1");
        assert_eq!(args.overrides["Pay3JwtAlgorithm"], "HS256");
        assert_eq!(args.env_vars, Some(PathBuf::from("env.json")));
        assert!(parse(&["AzqrWebhookFunction"]).is_err(), "no event");
        assert!(parse(&["-e", "x.json"]).is_err(), "no function");
        assert!(parse(&["F", "-e", "x.json", "--parameter-overrides", "novalue"]).is_err());
        assert!(parse(&["F", "-e", "x.json", "--debug-port", "1"]).is_err());
    }
}
