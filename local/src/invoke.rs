//! A Docker-free `sam local invoke`: a function's built artifact runs under AWS's Lambda
//! Runtime Interface Emulator (the one SAM CLI runs inside its container, shipped in the
//! aws-sam-cli package), with the environment template.yaml gives it, and gets one event.
//!
//! The artifact is what `sam build` put in `.aws-sam/build/<LogicalId>/bootstrap`, the
//! file `sam deploy` uploads. An arm64 bootstrap runs on an x86_64 host through
//! `qemu-aarch64-static`. Its stdout and stderr (the function's log) are kept apart from
//! the emulator's own lines.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use shared::runtime::config::Env;

use crate::provision::Resources;
use crate::template::{EnvValue, Function, Template, TemplateError, DEAD_LETTER_QUEUE, HINT_QUEUE, QUEUE, TABLE};

/// Where `sam build` puts each function's artifact.
pub const BUILD_DIR: &str = ".aws-sam/build";
/// The root of the arm64 C library qemu loads the bootstrap's dynamic libraries from
/// (Debian's libc6-arm64-cross).
pub const ARM64_SYSROOT: &str = "/usr/aarch64-linux-gnu";
/// The credentials and region of the local emulators (see `dynamodb_client`): DynamoDB
/// Local keeps one database per access key and region, so the function must use these.
const LOCAL_CREDENTIALS: &str = "local";
const LOCAL_REGION: &str = "us-east-1";

pub const INSTALL_QEMU: &str = "apt-get install qemu-user-static libc6-arm64-cross";

#[derive(Debug, thiserror::Error)]
pub enum InvokeError {
    #[error(transparent)]
    Template(#[from] TemplateError),
    #[error(
        "parameter {parameter} (environment variable {variable}) has no value: pass \
         --parameter-overrides {parameter}=..., or set {variable} in local.env.example"
    )]
    MissingParameter { parameter: String, variable: String },
    #[error("{0}")]
    NotFound(String),
    #[error("{what}: {source}")]
    Io { what: String, source: std::io::Error },
    #[error("the runtime interface emulator exited before it listened (its log: {0})")]
    EmulatorExited(String),
    #[error("the invocation got no answer: {0}")]
    Request(String),
}

fn io(what: impl Into<String>) -> impl FnOnce(std::io::Error) -> InvokeError {
    let what = what.into();
    move |source| InvokeError::Io { what, source }
}

/// Where the function's AWS clients go: the local emulators.
#[derive(Debug, Clone)]
pub struct Endpoints {
    pub dynamodb: String,
    pub sqs: String,
}

/// What the environment is resolved from, besides the template.
#[derive(Debug)]
pub struct Bindings<'a, E: Env> {
    /// `--parameter-overrides`: parameter name → value.
    pub overrides: &'a BTreeMap<String, String>,
    /// Values by environment variable name (local.env.example under the process environment).
    pub dev_env: &'a E,
    pub resources: &'a Resources,
    pub endpoints: &'a Endpoints,
}

impl Function {
    /// The parameters this function's environment refers to, with the variable of each.
    pub fn parameters<'a>(&'a self, template: &'a Template) -> impl Iterator<Item = (&'a str, &'a str)> + 'a {
        self.variables.iter().filter_map(move |(variable, value)| match value {
            EnvValue::Ref(name) if template.parameters.contains_key(name.as_str()) => {
                Some((name.as_str(), variable.as_str()))
            }
            EnvValue::Ref(_) | EnvValue::Literal(_) => None,
        })
    }

    /// The environment the function gets: its variables, resolved as the stack would
    /// (parameters from the overrides, else local.env.example, else the parameter's
    /// default; the table and queues are the local ones), and what Lambda itself sets.
    pub fn environment<E: Env>(
        &self,
        template: &Template,
        bindings: &Bindings<'_, E>,
    ) -> Result<BTreeMap<String, String>, InvokeError> {
        let mut env = BTreeMap::new();
        for (variable, value) in &self.variables {
            let resolved = match value {
                EnvValue::Literal(text) => text.clone(),
                EnvValue::Ref(name) => resolve_ref(name, variable, template, bindings)?,
            };
            env.insert(variable.clone(), resolved);
        }
        let timeout = self.timeout_seconds.to_string();
        let memory = self.memory_mb.to_string();
        let lambda = [
            ("AWS_LAMBDA_FUNCTION_NAME", self.logical_id.as_str()),
            // The emulator runs with the development secrets; on AWS they are refused.
            ("ALLOW_DEVELOPMENT_SECRETS", "true"),
            ("AWS_LAMBDA_FUNCTION_VERSION", "$LATEST"),
            ("AWS_LAMBDA_FUNCTION_TIMEOUT", timeout.as_str()),
            ("AWS_LAMBDA_FUNCTION_MEMORY_SIZE", memory.as_str()),
            ("AWS_REGION", LOCAL_REGION),
            ("AWS_DEFAULT_REGION", LOCAL_REGION),
            ("AWS_ACCESS_KEY_ID", LOCAL_CREDENTIALS),
            ("AWS_SECRET_ACCESS_KEY", LOCAL_CREDENTIALS),
            ("AWS_EC2_METADATA_DISABLED", "true"),
            ("AWS_ENDPOINT_URL_DYNAMODB", bindings.endpoints.dynamodb.as_str()),
            ("AWS_ENDPOINT_URL_SQS", bindings.endpoints.sqs.as_str()),
            // moto's server answers Secrets Manager as well as SQS.
            ("AWS_ENDPOINT_URL_SECRETS_MANAGER", bindings.endpoints.sqs.as_str()),
            ("_HANDLER", "bootstrap"),
        ];
        env.extend(lambda.iter().map(|(k, v)| ((*k).to_owned(), (*v).to_owned())));
        if let Some(format) = &self.log_format {
            env.insert("AWS_LAMBDA_LOG_FORMAT".into(), format.clone());
        }
        if let Some(level) = &self.log_level {
            env.insert("AWS_LAMBDA_LOG_LEVEL".into(), level.clone());
        }
        Ok(env)
    }
}

fn resolve_ref<E: Env>(
    name: &str,
    variable: &str,
    template: &Template,
    bindings: &Bindings<'_, E>,
) -> Result<String, InvokeError> {
    match name {
        TABLE => return Ok(bindings.resources.table_name.clone()),
        QUEUE => return Ok(bindings.resources.queue_url.clone()),
        DEAD_LETTER_QUEUE => return Ok(bindings.resources.dead_letter_queue_url.clone()),
        HINT_QUEUE => return Ok(bindings.resources.hint_queue_url.clone()),
        _ => {}
    }
    if let Some(arn) = bindings.resources.secrets.get(name) {
        return Ok(arn.clone());
    }
    let declared = template.parameters.get(name).ok_or_else(|| {
        InvokeError::Template(TemplateError::Unsupported(format!(
            "!Ref {name} is neither a parameter nor a local resource"
        )))
    })?;
    bindings
        .overrides
        .get(name)
        .cloned()
        .or_else(|| bindings.dev_env.var(variable))
        .or_else(|| match &declared["Default"] {
            serde_yaml_ng::Value::String(text) => Some(text.clone()),
            serde_yaml_ng::Value::Number(number) => Some(number.to_string()),
            serde_yaml_ng::Value::Null
            | serde_yaml_ng::Value::Bool(_)
            | serde_yaml_ng::Value::Sequence(_)
            | serde_yaml_ng::Value::Mapping(_)
            | serde_yaml_ng::Value::Tagged(_) => None,
        })
        .ok_or_else(|| InvokeError::MissingParameter { parameter: name.to_owned(), variable: variable.to_owned() })
}

/// A SAM CLI `--env-vars` file: `{"Parameters": {VAR: value}, "<LogicalId>": {VAR: value}}`.
/// Returns what applies to `logical_id`, the function's own entries last.
pub fn env_vars_file(text: &str, logical_id: &str) -> Result<BTreeMap<String, String>, String> {
    let document: serde_json::Value = serde_json::from_str(text).map_err(|e| format!("not JSON: {e}"))?;
    let mut vars = BTreeMap::new();
    for section in ["Parameters", logical_id] {
        for (name, value) in document[section].as_object().into_iter().flatten() {
            let value = match value {
                serde_json::Value::String(s) => s.clone(),
                serde_json::Value::Null => String::new(),
                other @ (serde_json::Value::Bool(_)
                | serde_json::Value::Number(_)
                | serde_json::Value::Array(_)
                | serde_json::Value::Object(_)) => other.to_string(),
            };
            vars.insert(name.clone(), value);
        }
    }
    Ok(vars)
}

/// How the artifact is started.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Launch {
    /// A binary of this host's architecture.
    Native(PathBuf),
    /// An arm64 binary on an x86_64 host, through qemu's user-mode emulator.
    Qemu { qemu: PathBuf, sysroot: PathBuf, bootstrap: PathBuf },
}

impl Launch {
    /// How to start `bootstrap`: natively when it is built for this host, through
    /// `qemu-aarch64-static` when it is arm64 and this host is not.
    pub fn for_artifact(bootstrap: &Path) -> Result<Launch, InvokeError> {
        let arch = elf_architecture(bootstrap)?;
        if arch == std::env::consts::ARCH {
            return Ok(Launch::Native(bootstrap.to_owned()));
        }
        if arch != "aarch64" {
            return Err(InvokeError::NotFound(format!(
                "{} is a {arch} binary; this host cannot run it",
                bootstrap.display()
            )));
        }
        let (qemu, sysroot) = Launch::qemu()
            .map_err(|why| InvokeError::NotFound(format!("{} is an arm64 binary and {why}", bootstrap.display())))?;
        Ok(Launch::Qemu { qemu, sysroot, bootstrap: bootstrap.to_owned() })
    }

    /// Whether an arm64 artifact can run here: natively, or through qemu.
    pub fn can_run_arm64() -> bool {
        std::env::consts::ARCH == "aarch64" || Launch::qemu().is_ok()
    }

    /// qemu's user-mode emulator and the arm64 C library it loads, or why they are missing.
    fn qemu() -> Result<(PathBuf, PathBuf), String> {
        let qemu = find_in_path("qemu-aarch64-static")
            .ok_or_else(|| format!("qemu-aarch64-static is not installed: {INSTALL_QEMU}"))?;
        let sysroot = PathBuf::from(ARM64_SYSROOT);
        if !sysroot.join("lib").is_dir() {
            return Err(format!("{ARM64_SYSROOT} (the arm64 C library) is missing: {INSTALL_QEMU}"));
        }
        Ok((qemu, sysroot))
    }

    fn argv(&self) -> Vec<String> {
        match self {
            Launch::Native(path) => vec![path.display().to_string()],
            Launch::Qemu { qemu, sysroot, bootstrap } => vec![
                qemu.display().to_string(),
                "-L".into(),
                sysroot.display().to_string(),
                bootstrap.display().to_string(),
            ],
        }
    }

    pub fn describe(&self) -> String {
        match self {
            Launch::Native(path) => format!("{} ({})", path.display(), std::env::consts::ARCH),
            Launch::Qemu { bootstrap, .. } => format!("{} (arm64, through qemu-aarch64-static)", bootstrap.display()),
        }
    }
}

/// The architecture of an ELF executable, named as `std::env::consts::ARCH` names it.
pub fn elf_architecture(path: &Path) -> Result<&'static str, InvokeError> {
    use std::io::Read;
    let mut header = [0u8; 20];
    std::fs::File::open(path)
        .and_then(|mut file| file.read_exact(&mut header))
        .map_err(io(format!("cannot read {}", path.display())))?;
    if &header[..4] != b"\x7fELF" {
        return Err(InvokeError::NotFound(format!("{} is not an ELF executable", path.display())));
    }
    match u16::from_le_bytes([header[18], header[19]]) {
        0xB7 => Ok("aarch64"),
        0x3E => Ok("x86_64"),
        other => Err(InvokeError::NotFound(format!("{}: unsupported ELF machine {other:#x}", path.display()))),
    }
}

fn find_in_path(name: &str) -> Option<PathBuf> {
    let path = std::env::var_os("PATH")?;
    std::env::split_paths(&path).map(|dir| dir.join(name)).find(|candidate| candidate.is_file())
}

/// The artifact `sam build` made for `logical_id` under `root`.
pub fn built_artifact(root: &Path, logical_id: &str) -> PathBuf {
    root.join(BUILD_DIR).join(logical_id).join("bootstrap")
}

/// AWS's Lambda Runtime Interface Emulator for this host, as the pinned aws-sam-cli ships
/// it in `.local/venv` (installed by `scripts/test`, `scripts/run-local` or `scripts/invoke`).
pub fn runtime_interface_emulator(root: &Path) -> Result<PathBuf, InvokeError> {
    let name = format!("aws-lambda-rie-{}", if std::env::consts::ARCH == "aarch64" { "arm64" } else { "x86_64" });
    let lib = root.join(".local/venv/lib");
    let found = std::fs::read_dir(&lib).ok().into_iter().flatten().flatten().find_map(|python| {
        let candidate = python.path().join("site-packages/samcli/local/rapid").join(&name);
        candidate.is_file().then_some(candidate)
    });
    found.ok_or_else(|| {
        InvokeError::NotFound(format!(
            "{name} not found under {}: it ships with aws-sam-cli; run scripts/test or scripts/invoke, which install \
             scripts/requirements-dev.txt into .local/venv",
            lib.display()
        ))
    })
}

/// One finished invocation.
#[derive(Debug)]
pub struct Invocation {
    /// What the emulator answered: the function's response, or its error.
    pub response: String,
    /// Everything the function wrote to stdout and stderr.
    pub function_log: String,
    /// The emulator's own log (START/END/REPORT lines and its diagnostics).
    pub emulator_log: String,
}

impl Invocation {
    /// Why the invocation failed (an init error, a crash, a timeout, an error returned by
    /// the handler), or None when the function answered.
    pub fn failure(&self) -> Option<String> {
        if self.response.trim().is_empty() {
            // The emulator answers nothing when the runtime dies; its own log says why.
            let errors: Vec<&str> = self.emulator_log.lines().filter(|l| l.contains("[ERROR]")).collect();
            return Some(format!("no answer: {}", errors.join("; ")));
        }
        match serde_json::from_str::<serde_json::Value>(&self.response) {
            Ok(value) if value.get("errorType").is_some() || value.get("errorMessage").is_some() => Some(format!(
                "{}: {}",
                value["errorType"].as_str().unwrap_or("error"),
                value["errorMessage"].as_str().unwrap_or_default()
            )),
            Ok(_) => None,
            Err(_) => Some(format!("the answer is not JSON: {}", self.response)),
        }
    }

    /// The function log's lines that are not one JSON object each.
    pub fn non_json_log_lines(&self) -> Vec<&str> {
        self.function_log
            .lines()
            .filter(|line| !matches!(serde_json::from_str::<serde_json::Value>(line), Ok(serde_json::Value::Object(_))))
            .collect()
    }
}

/// The emulator with the function under it; killed with its process group when dropped.
struct Running {
    child: Child,
}

impl Drop for Running {
    fn drop(&mut self) {
        // The emulator, the shell and the function (under qemu or not) share one process group.
        let _ = Command::new("kill").args(["-KILL", "--", &format!("-{}", self.child.id())]).status();
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Runs `launch` under the emulator at `rie` with exactly `env` (nothing else of this
/// process's environment), posts `event` and returns the answer and both logs. `timeout`
/// bounds the whole invocation, init included.
pub async fn invoke(
    rie: &Path,
    launch: &Launch,
    env: &BTreeMap<String, String>,
    event: &[u8],
    timeout: Duration,
) -> Result<Invocation, InvokeError> {
    let scratch = Scratch::new()?;
    let function_log = scratch.0.join("function.log");
    let emulator_log = scratch.0.join("emulator.log");
    // A free port can be taken by someone else between our check and the emulator's bind:
    // then the emulator exits at once, and another port is tried.
    let mut attempt = 0;
    let (running, port) = loop {
        attempt += 1;
        match start(rie, launch, env, &function_log, &emulator_log).await {
            Err(InvokeError::EmulatorExited(_)) if attempt < 3 => continue,
            other => break other?,
        }
    };
    let url = format!("http://127.0.0.1:{port}/2015-03-31/functions/function/invocations");
    let client =
        reqwest::Client::builder().timeout(timeout).build().map_err(|e| InvokeError::Request(e.to_string()))?;
    let answer = client.post(&url).body(event.to_vec()).send().await;
    let response = match answer {
        Ok(response) => response.text().await.map_err(|e| InvokeError::Request(e.to_string())),
        Err(error) => Err(InvokeError::Request(format!("{error} (emulator log: {})", read_lossy(&emulator_log)))),
    };
    drop(running);
    response.map(|response| Invocation {
        response,
        function_log: read_lossy(&function_log),
        emulator_log: read_lossy(&emulator_log),
    })
}

/// Starts the emulator on a free port and waits until it listens.
async fn start(
    rie: &Path,
    launch: &Launch,
    env: &BTreeMap<String, String>,
    function_log: &Path,
    emulator_log: &Path,
) -> Result<(Running, u16), InvokeError> {
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map_err(io("no free port on loopback"))?
        .port();
    let log_file = std::fs::File::create(emulator_log).map_err(io("cannot create the emulator log"))?;
    let log_file_err = log_file.try_clone().map_err(io("cannot create the emulator log"))?;
    // The shell sends the function's stdout and stderr to its own file, so that its log
    // lines are never mixed with the emulator's.
    let mut command = Command::new(rie);
    command
        .arg("--runtime-interface-emulator-address")
        .arg(format!("127.0.0.1:{port}"))
        .args(["/bin/sh", "-c", r#"exec "$@" >>"$0" 2>&1"#])
        .arg(function_log)
        .args(launch.argv())
        .env_clear()
        .env("PATH", "/usr/local/bin:/usr/bin:/bin")
        .envs(env)
        .stdin(Stdio::null())
        .stdout(log_file)
        .stderr(log_file_err);
    std::os::unix::process::CommandExt::process_group(&mut command, 0);
    let child = command.spawn().map_err(io(format!("cannot start {}", rie.display())))?;
    let mut running = Running { child };
    let deadline = Instant::now() + Duration::from_secs(10);
    while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
        if running.child.try_wait().map_err(io("emulator"))?.is_some() || Instant::now() > deadline {
            return Err(InvokeError::EmulatorExited(read_lossy(emulator_log)));
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    Ok((running, port))
}

/// A scratch directory for one invocation's logs, removed when dropped.
struct Scratch(PathBuf);

impl Scratch {
    fn new() -> Result<Scratch, InvokeError> {
        static COUNTER: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);
        let n = COUNTER.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        let dir = std::env::temp_dir().join(format!("invoke-{}-{n}", std::process::id()));
        std::fs::create_dir_all(&dir).map_err(io(format!("cannot create {}", dir.display())))?;
        Ok(Scratch(dir))
    }
}

impl Drop for Scratch {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

fn read_lossy(path: &Path) -> String {
    std::fs::read(path).map(|bytes| String::from_utf8_lossy(&bytes).into_owned()).unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn template() -> Template {
        Template::load(&Path::new(env!("CARGO_MANIFEST_DIR")).join("../template.yaml")).expect("template.yaml")
    }

    fn resources() -> Resources {
        Resources {
            table_name: "local-TransactionsTable".into(),
            queue_url: "http://sqs/q.fifo".into(),
            dead_letter_queue_url: "http://sqs/dlq.fifo".into(),
            hint_queue_url: "http://sqs/hints".into(),
            secrets: BTreeMap::from([(
                "PagstarSecret".to_owned(),
                "arn:aws:secretsmanager:us-east-1:123456789012:secret:local-PagstarSecret-AbCdEf".to_owned(),
            )]),
        }
    }

    #[test]
    fn a_function_gets_globals_its_own_variables_and_lambdas() {
        let template = template();
        let function = template.function("PagstarConfirmFunction").expect("function");
        assert_eq!(function.binary, "pagstar-confirm");
        assert_eq!(function.timeout_seconds, 30, "its own Timeout wins over Globals");
        assert_eq!(function.memory_mb, 128, "MemorySize from Globals");
        let overrides = BTreeMap::from([("PagstarApiUrl".to_owned(), "http://127.0.0.1:9/".to_owned())]);
        let dev_env = [("PAGSTAR_CLIENT_ID", "id"), ("PAGSTAR_API_URL", "ignored")];
        let endpoints = Endpoints { dynamodb: "http://127.0.0.1:1".into(), sqs: "http://127.0.0.1:2".into() };
        let resources = resources();
        let bindings =
            Bindings { overrides: &overrides, dev_env: &dev_env, resources: &resources, endpoints: &endpoints };
        let env = function.environment(&template, &bindings).expect("environment");
        assert_eq!(env["TABLE_NAME"], "local-TransactionsTable");
        assert_eq!(env["QUEUE_URL"], "http://sqs/q.fifo");
        assert_eq!(env["PAGSTAR_API_URL"], "http://127.0.0.1:9/", "an override beats the env file");
        assert!(env["PAGSTAR_SECRET_ARN"].ends_with(":secret:local-PagstarSecret-AbCdEf"), "the secret's ARN");
        assert!(!env.contains_key("PAGSTAR_CLIENT_SECRET"), "no secret value in the environment");
        assert_eq!(env["SECRET_PREVIOUS_GRACE_MINUTES"], "60", "the parameter's default");
        assert_eq!(env["AWS_ENDPOINT_URL_SECRETS_MANAGER"], "http://127.0.0.1:2", "moto");
        assert_eq!(env["AWS_LAMBDA_LOG_FORMAT"], "JSON", "LoggingConfig.LogFormat");
        assert_eq!(env["AWS_LAMBDA_FUNCTION_TIMEOUT"], "30");
        assert_eq!(env["AWS_ENDPOINT_URL_DYNAMODB"], "http://127.0.0.1:1");
        assert_eq!(env["STATUS_SYNC_AFTER_SECONDS"], "300", "a number parameter's default");
    }

    #[test]
    fn a_parameter_without_a_value_is_an_error_naming_it() {
        let template = template();
        let function = template.function("PagstarConfirmFunction").expect("function");
        let endpoints = Endpoints { dynamodb: String::new(), sqs: String::new() };
        let resources = resources();
        let none: [(&str, &str); 0] = [];
        let bindings =
            Bindings { overrides: &BTreeMap::new(), dev_env: &none, resources: &resources, endpoints: &endpoints };
        let error = function.environment(&template, &bindings).expect_err("PagstarApiUrl has no default");
        assert!(
            error.to_string().contains("PagstarApiUrl") && error.to_string().contains("PAGSTAR_API_URL"),
            "{error}"
        );
    }

    #[test]
    fn every_template_function_is_described() {
        let template = template();
        let ids = template.function_ids();
        for core in ["NotifierFunction", "ReconcilerFunction", "TransactionsApiFunction", "StatusSyncFunction"] {
            assert!(ids.iter().any(|id| id == core), "{core}: {ids:?}");
        }
        for id in ids {
            let function = template.function(&id).expect("function");
            assert!(function.variables.contains_key("TABLE_NAME"), "{id}: Globals applied");
        }
        assert!(matches!(template.function("TransactionsTable"), Err(TemplateError::NoFunction(_))));
        assert_eq!(
            template.function_for_route("PUT /webhooks/azqr/qr/{rrn}/status").as_deref(),
            Some("AzqrWebhookFunction")
        );
        assert_eq!(
            template.function_for_route("GET /transactions/{provider}/{reference}").as_deref(),
            Some("TransactionsApiFunction")
        );
        assert_eq!(template.function_for_route("POST /webhooks/azqr/qr/{rrn}/status"), None);
        assert_eq!(template.function_for_queue(HINT_QUEUE).as_deref(), Some("PagstarConfirmFunction"));
        assert_eq!(template.function_for_queue(QUEUE).as_deref(), Some("NotifierFunction"));
        assert_eq!(template.function_for_queue(DEAD_LETTER_QUEUE), None);
        let secrets = template.secrets();
        assert_eq!(secrets["NotifySecret"], ["NOTIFY_SECRET"], "the generated key");
        assert_eq!(secrets["PagstarSecret"], ["PAGSTAR_CLIENT_CERT", "PAGSTAR_CLIENT_KEY", "PAGSTAR_CLIENT_SECRET"]);
        let variables = template.secret_arn_variables();
        assert_eq!(variables["NOTIFY_SECRET_ARN"], "NotifySecret");
        assert_eq!(variables.len(), secrets.len(), "{variables:?}");
    }

    #[test]
    fn env_vars_file_as_sam_reads_it() {
        let text = r#"{"Parameters": {"A": "1", "B": "global"}, "Fn": {"B": "mine", "C": 3}, "Other": {"D": "x"}}"#;
        let vars = env_vars_file(text, "Fn").expect("parses");
        assert_eq!(
            vars,
            BTreeMap::from([("A".into(), "1".into()), ("B".into(), "mine".into()), ("C".into(), "3".into())])
        );
        assert!(env_vars_file("{", "Fn").is_err());
    }

    #[test]
    fn reads_the_architecture_of_an_elf_file() {
        let this = std::env::current_exe().expect("test binary");
        assert_eq!(elf_architecture(&this).expect("ELF"), std::env::consts::ARCH);
        assert_eq!(Launch::for_artifact(&this).expect("native"), Launch::Native(this.clone()));
        let not_elf = Path::new(env!("CARGO_MANIFEST_DIR")).join("Cargo.toml");
        assert!(elf_architecture(&not_elf).is_err());
    }

    #[test]
    fn failures_and_log_lines_are_told_apart() {
        let ok = Invocation {
            response: r#"{"statusCode":204,"headers":{}}"#.into(),
            function_log: "{\"level\":\"INFO\"}\nnot json\n[1]\n".into(),
            emulator_log: String::new(),
        };
        assert_eq!(ok.failure(), None);
        assert_eq!(ok.non_json_log_lines(), ["not json", "[1]"]);
        let failed = Invocation {
            response: r#"{"errorType":"Runtime.ExitError","errorMessage":"exit status 1"}"#.into(),
            function_log: String::new(),
            emulator_log: String::new(),
        };
        assert_eq!(failed.failure().as_deref(), Some("Runtime.ExitError: exit status 1"));
        let died = Invocation {
            response: String::new(),
            function_log: String::new(),
            emulator_log: "[INFO] (rapid) INIT START\n[ERROR] (rapid) Init failed error=exit status 1\n".into(),
        };
        assert_eq!(died.failure().as_deref(), Some("no answer: [ERROR] (rapid) Init failed error=exit status 1"));
    }
}
