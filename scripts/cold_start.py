#!/usr/bin/env python3
"""Cold start of each function's release bootstrap against a minimal fake Lambda
Runtime API on loopback: exec -> first `GET /runtime/invocation/next` (init) and ->
first response posted. Beside it, the same init measurement for a Python 3 process that
imports boto3 and builds DynamoDB and SQS clients. Prints medians and spread.

Run by scripts/bench, which builds the binaries, starts the emulators and provisions a
table and queues (the first invocation really writes). Environment in: the emulator
endpoints, TABLE_NAME, QUEUE_URL, DEAD_LETTER_QUEUE_URL, each *_SECRET_ARN (the secrets
provisioned in moto: init reads them from Secrets Manager, as on Lambda; SECRETS=plain
measures the development fallback instead), RUNS (default 15), ONLY (a comma list of
binaries)."""

import json, os, pathlib, re, statistics, subprocess, sys, threading, time
import yaml
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

ROOT = pathlib.Path(__file__).resolve().parent.parent
RUNS = int(os.environ.get("RUNS", "15"))


class Runtime:
    """One fake Runtime API serving one event, recording when things happen."""

    def __init__(self, event):
        self.event = json.dumps(event).encode()
        self.first_next = None
        self.response_at = None
        self.response = None
        self.served = False
        self.done = threading.Event()


def make_handler(state_ref):
    class Handler(BaseHTTPRequestHandler):
        # Keep-alive, as the real Runtime API: the runtime client reuses its connection.
        protocol_version = "HTTP/1.1"

        def log_message(self, *args):
            pass

        def empty(self, status):
            self.send_response(status)
            self.send_header("Content-Length", "0")
            self.end_headers()

        def do_GET(self):
            state = state_ref[0]
            if self.path.endswith("/runtime/invocation/next"):
                if state.first_next is None:
                    state.first_next = time.perf_counter()
                if state.served:
                    # Hold the second poll: the measurement is over and the process is killed.
                    state.done.wait(30)
                    time.sleep(5)
                    self.close_connection = True
                    return
                state.served = True
                self.send_response(200)
                self.send_header("Lambda-Runtime-Aws-Request-Id", "bench-request-1")
                self.send_header("Lambda-Runtime-Deadline-Ms", str(int(time.time() * 1000) + 30000))
                self.send_header("Lambda-Runtime-Invoked-Function-Arn", "arn:aws:lambda:us-east-1:123456789012:function:bench")
                self.send_header("Lambda-Runtime-Trace-Id", "Root=1-00000000-000000000000000000000000")
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(state.event)))
                self.end_headers()
                self.wfile.write(state.event)
            else:
                self.empty(404)

        def do_POST(self):
            state = state_ref[0]
            length = int(self.headers.get("Content-Length", "0"))
            body = self.rfile.read(length)
            if "/response" in self.path or "/error" in self.path:
                state.response_at = time.perf_counter()
                state.response = (self.path.rsplit("/", 1)[-1], body[:200])
                state.done.set()
            self.empty(202)

    return Handler


def fixture(path):
    return json.loads((ROOT / path).read_text())  # path: absolute, or under the root


def sqs_event():
    record = {"provider": "azqr", "reference": "100000000006", "status": "completed", "provider_status": "completed",
              "history": [], "first_seen_at": "2026-11-22T10:00:00Z", "updated_at": "2026-11-22T10:00:00Z",
              "final_at": "2026-11-22T10:00:00Z"}
    body = json.dumps({"id": "evt_bench", "type": "transaction.completed", "created_at": "2026-11-22T10:00:00Z", "data": record})
    return {"Records": [{"messageId": "m1", "receiptHandle": "r1", "body": body, "attributes": {"ApproximateReceiveCount": "1"},
                         "messageAttributes": {}, "eventSource": "aws:sqs", "awsRegion": "us-east-1"}]}


def status_api_event():
    event = fixture("events/azqr/completed.json")
    event.update({"routeKey": "GET /transactions/{provider}/{reference}", "rawPath": "/transactions/azqr/100000000006",
                  "body": None, "pathParameters": {"provider": "azqr", "reference": "100000000006"}})
    event["requestContext"]["http"].update({"method": "GET", "path": "/transactions/azqr/100000000006"})
    return event


def scheduled_event():
    return {"source": "aws.scheduler", "detail-type": "Scheduled Event", "detail": {}}


def webhook_event(binary, route):
    """The fixture the provider's simulator names as BENCH_FIXTURE (the one criterion times
    too); a provider without one (every genuine webhook calls its API) gets its first
    fixture refused before any call."""
    simulator = (ROOT / "functions" / binary / "src" / "simulator.rs").read_text()
    named = re.search(r'BENCH_FIXTURE: Option<&\'static str> = Some\("([^"]+)"\)', simulator)
    fixtures = sorted(p for p in (ROOT / "events").glob("*/*.json") if fixture(p)["routeKey"] == route)
    if named:
        chosen = [p for p in fixtures if p.stem == named.group(1)]
    else:
        chosen = [p for p in fixtures if p.stem.startswith("bad-")]
    if not chosen:
        sys.exit(f"{binary}: no fixture for {route} in events/")
    return lambda: fixture(chosen[0])


def functions():
    """Every function of template.yaml: its cargo binary, and a first event of the kind
    its trigger sends (an API Gateway request, an SQS batch, a schedule)."""
    class Loader(yaml.SafeLoader):
        pass
    Loader.add_multi_constructor("!", lambda loader, suffix, node: None)  # !Ref, !GetAtt, ...
    template = yaml.load((ROOT / "template.yaml").read_text(), Loader=Loader)
    found = []
    for resource in template["Resources"].values():
        if resource.get("Type") != "AWS::Serverless::Function":
            continue
        binary = resource["Metadata"]["BuildProperties"]["Binary"]
        events = list((resource["Properties"].get("Events") or {}).values())
        kinds = {e["Type"] for e in events}
        if "SQS" in kinds:
            event = sqs_event
        elif kinds & {"Schedule", "ScheduleV2"}:
            event = scheduled_event
        else:
            api = next(e["Properties"] for e in events if e["Type"] == "HttpApi")
            method = api["Method"].upper()
            event = status_api_event if method == "GET" else webhook_event(binary, f"{method} {api['Path']}")
        found.append((binary, event))
    return found


def env_for(port):
    dev = {}
    for line in (ROOT / "local.env.example").read_text().splitlines():
        if "=" in line and not line.lstrip().startswith("#"):
            key, value = line.split("=", 1)
            value = value.strip()
            if len(value) >= 2 and value[0] == value[-1] == '"':  # dotenv quoting, as dotenvy reads it
                value = value[1:-1].replace("\\n", "\n")
            dev[key.strip()] = value
    env = dict(os.environ)
    env.update(dev)
    env.update({
        "AWS_LAMBDA_RUNTIME_API": f"127.0.0.1:{port}",
        "AWS_LAMBDA_FUNCTION_NAME": "bench", "AWS_LAMBDA_FUNCTION_MEMORY_SIZE": "128",
        "ALLOW_DEVELOPMENT_SECRETS": "true",  # the development secrets, refused on AWS
        "AWS_LAMBDA_FUNCTION_VERSION": "$LATEST", "AWS_LAMBDA_LOG_STREAM_NAME": "bench", "AWS_LAMBDA_LOG_GROUP_NAME": "bench",
        "AWS_LAMBDA_LOG_FORMAT": "JSON", "AWS_REGION": "us-east-1", "AWS_DEFAULT_REGION": "us-east-1",
        "AWS_ACCESS_KEY_ID": "local", "AWS_SECRET_ACCESS_KEY": "local",  # DynamoDB Local keeps one database per access key
        "AWS_ENDPOINT_URL_DYNAMODB": os.environ["DYNAMODB_ENDPOINT"], "AWS_ENDPOINT_URL_SQS": os.environ["SQS_ENDPOINT"],
        "PAGSTAR_API_URL": "http://127.0.0.1:9", "NOTIFY_URL": "http://127.0.0.1:9/merchant",
        "AWS_ENDPOINT_URL_SECRETS_MANAGER": os.environ["SQS_ENDPOINT"],
    })
    # As deployed, each function reads its secret by ARN from Secrets Manager (moto, set
    # up by target/release/provision): the plain values go. SECRETS=plain measures the
    # development fallback instead (no Secrets Manager call at init).
    arns = [k for k in env if k.endswith("_SECRET_ARN")]
    if os.environ.get("SECRETS") == "plain":
        for k in arns:
            env.pop(k)
    else:
        for k in secret_keys():
            env.pop(k, None)
    return env


def secret_keys():
    """The keys of every secret in template.yaml (its SecretString's, and its
    GenerateStringKey), as target/release/provision reads them."""
    class Loader(yaml.SafeLoader):
        pass
    Loader.add_multi_constructor("!", lambda loader, suffix, node: None)  # !Ref, !GetAtt, ...
    template = yaml.load((ROOT / "template.yaml").read_text(), Loader=Loader)
    keys = []
    for resource in template["Resources"].values():
        if resource.get("Type") != "AWS::SecretsManager::Secret":
            continue
        properties = resource["Properties"]
        generate = properties.get("GenerateSecretString") or {}
        keys += json.loads(properties.get("SecretString") or generate.get("SecretStringTemplate") or "{}")
        keys += [generate["GenerateStringKey"]] if "GenerateStringKey" in generate else []
    return keys


def summary(values):
    values = sorted(values)
    return f"median {statistics.median(values):7.1f} ms  (min {values[0]:6.1f}, max {values[-1]:6.1f})"


class Server(ThreadingHTTPServer):
    daemon_threads = True

    def handle_error(self, request, client_address):
        pass  # a killed bootstrap's held poll: nothing to report


def run_once(binary, event, timeout):
    """One cold start against a fresh fake Runtime API on its own port, so nothing from
    an earlier (killed) process can reach this run. Returns (init ms, first response ms, kind)."""
    state_ref = [Runtime(event)]
    server = Server(("127.0.0.1", 0), make_handler(state_ref))
    threading.Thread(target=server.serve_forever, daemon=True).start()
    env = env_for(server.server_address[1])
    quiet = None if os.environ.get("BENCH_DEBUG") else subprocess.DEVNULL
    start = time.perf_counter()
    process = subprocess.Popen([str(binary)], env=env, stdout=quiet, stderr=quiet)
    finished = state_ref[0].done.wait(timeout)
    process.kill()
    process.wait()
    state = state_ref[0]
    state.done.set()
    server.shutdown()
    server.server_close()
    if not finished or state.first_next is None:
        sys.exit(f"{binary.name}: no response from the bootstrap")
    return (state.first_next - start) * 1000, (state.response_at - start) * 1000, state.response[0]


def main():
    results = {}
    only = [n for n in os.environ.get("ONLY", "").split(",") if n]  # e.g. ONLY=azqr-webhook,notifier
    for name, event in functions():
        if only and name not in only:
            continue
        binary = ROOT / "target" / "release" / name
        # One discarded run first: it warms the emulators (a fresh DynamoDB Local's first
        # requests are slow), which is not the function's cold start.
        run_once(binary, event(), 120)
        runs = [run_once(binary, event(), 30) for _ in range(RUNS)]
        inits, firsts, kind = [r[0] for r in runs], [r[1] for r in runs], runs[-1][2]
        results[name] = (inits, firsts, kind)
        print(f"{name:18} init {summary(inits)} | first response {summary(firsts)} [{kind}]")

    python = os.environ.get("PYTHON_BASELINE", str(ROOT / ".local/venv/bin/python"))
    code = "import boto3; boto3.client('dynamodb', region_name='us-east-1'); boto3.client('sqs', region_name='us-east-1')"
    baseline = []
    for _ in range(RUNS):
        start = time.perf_counter()
        subprocess.run([python, "-c", code], check=True)
        baseline.append((time.perf_counter() - start) * 1000)
    print(f"{'python3 + boto3':18} init {summary(baseline)}")
    rust = statistics.median([statistics.median(r[0]) for r in results.values()])
    print(f"ratio: Python boto3 init median / Rust init median (over functions) = {statistics.median(baseline) / rust:.0f}x")


if __name__ == "__main__":
    main()
