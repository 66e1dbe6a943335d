"""Helpers for end-to-end tests: a private PostgreSQL, the real binaries, a webhook sink.

Everything runs on loopback ports chosen at start; every process is a child of the test and
is reaped (waitpid) when stopped.
"""
import json
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
import unittest
import urllib.parse
import urllib.request
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
BIN = os.environ.get("VIGIE_BIN", os.path.join(ROOT, "build", "bin"))
BUF = os.environ.get("VIGIE_BUF", os.path.join(ROOT, ".vigie", "tools", "bin", "buf"))


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_for(predicate, timeout, what):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(0.1)
    raise AssertionError(f"timed out after {timeout}s waiting for {what}")


def http_get(url, timeout=5):
    with urllib.request.urlopen(url, timeout=timeout) as r:
        return r.read().decode()


def parse_metrics(text):
    """Prometheus text format -> {'name{a="b"}': value} (labels as written)."""
    out = {}
    for line in text.splitlines():
        if not line or line.startswith("#"):
            continue
        m = re.match(r"^(\S+?(?:\{.*\})?)\s+(\S+)(?:\s+\d+)?$", line)
        if m:
            out[m.group(1)] = float(m.group(2))
    return out


class Postgres:
    """A private cluster through scripts/pg-cluster.sh (the same path dev-env uses): password
    authentication, the control plane connecting as the ordinary role "vigie"."""

    def __init__(self, tmp):
        self.dir = os.path.join(tmp, "pg")
        out = subprocess.run([os.path.join(ROOT, "scripts", "pg-cluster.sh"), "start", self.dir],
                             check=True, capture_output=True, text=True).stdout
        env = dict(line.split("=", 1) for line in out.splitlines() if "=" in line)
        self.env = env
        self.url = env["DATABASE_URL"]
        self.url_file = env["DATABASE_URL_FILE"]
        with open(os.path.join(self.dir, "app.password")) as f:
            self.password = f.read().strip()

    def query(self, sql):
        out = subprocess.run(["psql", self.url, "-v", "ON_ERROR_STOP=1", "-AtXqc", sql],
                             check=True, capture_output=True, text=True).stdout
        return [line.split("|") for line in out.splitlines() if line]

    def _pg_ctl(self, *args):
        cmd = [f"/usr/lib/postgresql/15/bin/pg_ctl", "-D", self.env["PGDATA"], *args]
        if os.geteuid() == 0:
            cmd = ["runuser", "-u", "postgres", "--"] + cmd
        subprocess.run(cmd, check=True, capture_output=True, cwd="/")

    def stop_server(self):
        """Stops the server (fast shutdown: sessions are cut), keeping the cluster."""
        self._pg_ctl("-m", "fast", "-w", "stop")

    def start_server(self):
        """Starts it again on the same port, as scripts/pg-cluster.sh did."""
        self._pg_ctl("-l", os.path.join(self.env["PGDATA"], "server.log"), "-w", "-o",
                     f"-c listen_addresses=127.0.0.1 -p {self.env['PGPORT']} "
                     f"-k {self.env['PGSOCKET']} "
                     f"-c fsync={os.environ.get('VIGIE_PG_FSYNC', 'off')}", "start")

    def stop(self):
        subprocess.run([os.path.join(ROOT, "scripts", "pg-cluster.sh"), "stop", self.dir],
                       check=False, capture_output=True)


class RecordingSink:
    """Records every request (method, path with query, headers, body); answers 200/201."""

    def __init__(self):
        self.requests = []
        self.refused = 0
        self.fail_status = None  # set to e.g. 503 to refuse (and not record) requests
        self.lock = threading.Lock()
        server = self

        class Handler(BaseHTTPRequestHandler):
            def _record(self):
                n = int(self.headers.get("Content-Length") or 0)
                body = self.rfile.read(n) if n else b""
                with server.lock:
                    status = server.fail_status
                    if status:
                        server.refused += 1
                    else:
                        server.requests.append((self.command, self.path, dict(self.headers), body))
                self.send_response(status or (201 if "/Messages.json" in self.path else 200))
                self.send_header("Content-Length", "0")
                self.end_headers()

            do_GET = do_POST = do_PUT = _record

            def log_message(self, *args):
                pass

        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.httpd.server_address[1]}"
        threading.Thread(target=self.httpd.serve_forever, daemon=True).start()

    def matching(self, fragment):
        with self.lock:
            return [r for r in self.requests if fragment in r[1]]

    def stop(self):
        self.httpd.shutdown()



class WebhookSink:
    """Records POSTed JSON bodies; answers 503 to the first `fail_first` requests."""

    def __init__(self, fail_first=0):
        self.lock = threading.Lock()
        self.received = []  # bodies answered 200
        self.failed = 0
        self.fail_first = fail_first
        sink = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self):
                body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
                with sink.lock:
                    if sink.failed < sink.fail_first:
                        sink.failed += 1
                        code = 503
                    else:
                        sink.received.append(body)
                        code = 200
                self.send_response(code)
                self.send_header("Content-Length", "0")
                self.end_headers()

            def log_message(self, *args):
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}/hook"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def bodies(self):
        with self.lock:
            return list(self.received)

    def stop(self):
        self.server.shutdown()


class Process:
    """One Vigie binary with a YAML config, its output in a log file."""

    def __init__(self, tmp, binary, config_text, health_url=None, name=None, argv=None):
        """`argv` runs another program (a test peer such as dnsmasq) instead of a Vigie
        binary with `config_text`."""
        self.name = binary
        self.argv = argv
        self.config = os.path.join(tmp, f"{name or binary}.yaml")
        if config_text is not None:
            with open(self.config, "w") as f:
                f.write(config_text)
        self.log_path = os.path.join(tmp, f"{name or binary}.log")
        self.health_url = health_url
        self.proc = None
        self.start()

    def start(self):
        log = open(self.log_path, "a")
        argv = self.argv or [os.path.join(BIN, self.name), f"--config={self.config}"]
        self.proc = subprocess.Popen(argv, stdout=log, stderr=subprocess.STDOUT)
        log.close()
        if self.health_url:
            def healthy():
                if self.proc.poll() is not None:
                    raise AssertionError(f"{self.name} exited with {self.proc.returncode}:\n"
                                         + self.log())
                try:
                    return http_get(self.health_url, timeout=1) == "ok\n"
                except OSError:
                    return False
            wait_for(healthy, 30, f"{self.name} /healthz")

    def log(self):
        with open(self.log_path) as f:
            return f.read()

    def terminate(self, timeout=15):
        """SIGTERM; returns the exit code."""
        self.proc.send_signal(signal.SIGTERM)
        return self.proc.wait(timeout=timeout)

    def kill(self):
        self.proc.kill()
        self.proc.wait()

    def ensure_stopped(self):
        if self.proc and self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait()


def buf(*args, headers=(), token=None, cacert=None, cert=None, key=None, plaintext=None):
    """Runs `buf curl`; returns (exit code, stdout, stderr). With `token`, sends it on the call
    and on the reflection requests; with `cacert`, speaks TLS (URLs must be https://)."""
    cmd = [BUF, "curl", "--protocol", "grpc"]
    if plaintext or (plaintext is None and cacert is None):
        cmd.append("--http2-prior-knowledge")
    if cacert:
        cmd += ["--cacert", cacert]
    if cert:
        cmd += ["--cert", cert, "--key", key]
    for h in headers:
        cmd += ["-H", h]
    if token:
        cmd += ["-H", f"authorization: Bearer {token}", "--reflect-header", "*"]
    r = subprocess.run(cmd + list(args), capture_output=True, text=True, timeout=30)
    return r.returncode, r.stdout, r.stderr


def grpc_code(stderr):
    """The gRPC code buf printed for a failed call ("unauthenticated", ...), or None."""
    try:
        return json.loads(stderr).get("code")
    except ValueError:
        return None


def write_secret(tmp, name, value=None):
    """Writes a secret file (mode 0600) and returns (path, value); a random token by default."""
    value = value or ("vigie_" + os.urandom(32).hex())
    path = os.path.join(tmp, name)
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as f:
        f.write(value + "\n")
    return path, value


def create_token(addr, admin_token, kind, agent_id="", cacert=None):
    """Makes a token through the Admin API (buf curl, reflection); returns its secret."""
    scheme = "https" if cacert else "http"
    body = json.dumps({"kind": kind, "agentId": agent_id, "description": "e2e"})
    code, out, err = buf("-d", body, f"{scheme}://{addr}/vigie.v1.Admin/CreateToken",
                         token=admin_token, cacert=cacert)
    if code != 0:
        raise AssertionError(f"CreateToken failed ({code}): {err}")
    return json.loads(out)["secret"]


def webhook_notifier(tmp, sink):
    """Starts a notifier with one receiver, "ops", posting to `sink`'s /hook; returns
    (process, gRPC address, client token file)."""
    token_file, _ = write_secret(tmp, "notifier.token")
    grpc, http = f"127.0.0.1:{free_port()}", f"127.0.0.1:{free_port()}"
    proc = Process(tmp, "vigie-notifier", f"""
grpc_listen: {grpc}
http_listen: {http}
client_token: {{file: {token_file}}}
receivers:
  - name: ops
    webhook_configs: [{{url: "{sink.url}/hook"}}]
""", health_url=f"http://{http}/healthz")
    return proc, grpc, token_file


def write_textfile(directory, value, metric="demo_value"):
    """Writes `metric value` for an agent's textfile collector, atomically (as cron jobs
    should)."""
    tmp = os.path.join(directory, ".demo.prom.tmp")
    with open(tmp, "w") as f:
        f.write(f"# TYPE {metric} gauge\n{metric} {value}\n")
    os.rename(tmp, os.path.join(directory, "demo.prom"))


def webhook_alerts(sink, alertname):
    """Every alert named `alertname` the sink received at /hook, in arrival order."""
    out = []
    for _, _, _, body in sink.matching("/hook"):
        out += [a for a in json.loads(body)["alerts"] if a["labels"].get("alertname") == alertname]
    return out


class Pki:
    """A private CA with certificates made by the openssl CLI: server (SANs as given),
    client (signed by the CA) and rogue (signed by another CA)."""

    def __init__(self, tmp, server_ips=("127.0.0.1",), server_dns=("vigie.test",)):
        self.dir = os.path.join(tmp, "pki")
        os.makedirs(self.dir, exist_ok=True)
        self.ca = self._ca("ca")
        self._ca("otherca")
        san = ",".join([f"IP:{ip}" for ip in server_ips] + [f"DNS:{d}" for d in server_dns])
        self.server_cert, self.server_key = self._cert("ca", "server", san)
        self.client_cert, self.client_key = self._cert("ca", "client", "DNS:agent")
        self.rogue_cert, self.rogue_key = self._cert("otherca", "rogue", "DNS:agent")

    def _run(self, *args):
        subprocess.run(["openssl", *args], check=True, capture_output=True)

    def _ca(self, name):
        p = os.path.join(self.dir, name)
        self._run("req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1",
                  "-nodes", "-days", "2", "-subj", f"/CN={name}", "-keyout", p + ".key",
                  "-out", p + ".crt")
        return p + ".crt"

    def _cert(self, ca, name, san):
        p, c = os.path.join(self.dir, name), os.path.join(self.dir, ca)
        self._run("req", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes",
                  "-subj", f"/CN={name}", "-keyout", p + ".key", "-out", p + ".csr")
        with open(p + ".ext", "w") as f:
            f.write(f"subjectAltName={san}\n")
        self._run("x509", "-req", "-in", p + ".csr", "-CA", c + ".crt", "-CAkey", c + ".key",
                  "-CAcreateserial", "-days", "2", "-extfile", p + ".ext", "-out", p + ".crt")
        return p + ".crt", p + ".key"


class TempDir:
    def __init__(self):
        # Short and world-traversable: the PostgreSQL server runs as another user.
        self.path = tempfile.mkdtemp(prefix="vigie-e2e-", dir="/tmp")
        os.chmod(self.path, 0o755)

    def cleanup(self):
        shutil.rmtree(self.path, ignore_errors=True)


class Prometheus:
    """A real Prometheus server (Debian's) scraping `targets` ({job: host:port}) every second."""

    def __init__(self, tmp, targets, extra_args=()):
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        config = os.path.join(tmp, "prometheus.yml")
        with open(config, "w") as f:
            f.write("global: {scrape_interval: 1s, evaluation_interval: 1s}\nscrape_configs:\n")
            for job, target in targets.items():
                f.write(f"  - job_name: {job}\n    static_configs: [{{targets: ['{target}']}}]\n")
        self.log_path = os.path.join(tmp, "prometheus.log")
        log = open(self.log_path, "w")
        self.proc = subprocess.Popen(
            ["prometheus", f"--config.file={config}",
             f"--storage.tsdb.path={os.path.join(tmp, 'prometheus-data')}",
             f"--web.listen-address=127.0.0.1:{self.port}", *extra_args],
            stdout=log, stderr=subprocess.STDOUT)
        log.close()

        def ready():
            if self.proc.poll() is not None:
                raise AssertionError("prometheus exited:\n" + open(self.log_path).read())
            try:
                return http_get(self.url + "/-/ready", timeout=1) is not None
            except OSError:
                return False
        wait_for(ready, 30, "prometheus /-/ready")

    def api(self, path, **params):
        query = urllib.parse.urlencode(params)
        return json.loads(http_get(f"{self.url}/api/v1/{path}?{query}"))

    def stop(self):
        self.proc.terminate()
        self.proc.wait(timeout=30)


class VictoriaMetrics:
    """A real single-node VictoriaMetrics (Debian's), accepting remote write at
    {url}/api/v1/write. Samples are visible to queries at once (no latency offset, no cache),
    and identical (series, timestamp) samples are kept once, as an HA pair would be set up."""

    def __init__(self, tmp, name="victoria-metrics"):
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.args = ["victoria-metrics", f"-storageDataPath={os.path.join(tmp, name + '-data')}",
                     f"-httpListenAddr=127.0.0.1:{self.port}", "-search.latencyOffset=0s",
                     "-search.disableCache", "-dedup.minScrapeInterval=1ms",
                     "-loggerLevel=WARN"]
        self.log_path = os.path.join(tmp, name + ".log")
        self.proc = None
        self.start()

    def start(self):
        log = open(self.log_path, "a")
        self.proc = subprocess.Popen(self.args, stdout=log, stderr=subprocess.STDOUT)
        log.close()

        def ready():
            if self.proc.poll() is not None:
                raise AssertionError("victoria-metrics exited:\n" + open(self.log_path).read())
            try:
                return http_get(self.url + "/health", timeout=1) is not None
            except OSError:
                return False
        wait_for(ready, 30, "victoria-metrics /health")

    def api(self, path, **params):
        query = urllib.parse.urlencode(params)
        return json.loads(http_get(f"{self.url}/api/v1/{path}?{query}"))

    def stop(self):
        if self.proc and self.proc.poll() is None:
            self.proc.terminate()
            self.proc.wait(timeout=30)


class SystemTestCase(unittest.TestCase):
    """One system per test class: subclasses build it in start_system(), setting any of
    cls.tmp, cls.pg, cls.sink, cls.prom and appending to cls.procs. Everything started is
    stopped afterwards, also when start_system() fails half-way (unittest does not call
    tearDownClass then). VIGIE_KEEP_TMP=1 keeps the temporary directory and its logs."""

    @classmethod
    def setUpClass(cls):
        cls.procs, cls.pg, cls.sink, cls.prom, cls.tmp = [], None, None, None, None
        try:
            cls.start_system()
        except BaseException:
            cls.tearDownClass()
            raise

    @classmethod
    def start_system(cls):
        raise NotImplementedError

    @classmethod
    def tearDownClass(cls):
        if cls.prom:
            cls.prom.stop()
        if getattr(cls, "vm", None):
            cls.vm.stop()
        for p in reversed(cls.procs):
            p.ensure_stopped()
        if cls.sink:
            cls.sink.stop()
        if cls.pg:
            cls.pg.stop()
        if cls.tmp and os.environ.get("VIGIE_KEEP_TMP"):
            print(f"kept {cls.tmp.path}", file=sys.stderr)
        elif cls.tmp:
            cls.tmp.cleanup()
