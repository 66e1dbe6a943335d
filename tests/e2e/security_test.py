#!/usr/bin/python3
"""Security end to end: an agent on "another host" (its own network namespace, reached over a
veth pair) connects to the control plane's non-loopback address with TLS and its token; samples
are stored and an alert fires through a notifier that requires mTLS and a token. Then every
refusal: each asserts the gRPC code and vigie_auth_failures_total{reason}. Last, every log,
/metrics page and a dump of the database are searched for every secret. Needs root (ip netns).
"""
import json
import os
import subprocess
import sys
import unittest

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import vigie_harness as h  # noqa: E402

NS = f"vigie-e2e-{os.getpid()}"
HOST_IP, NS_IP = "10.213.77.1", "10.213.77.2"  # the test's own veth pair, nowhere else
PROTO = os.path.join(h.ROOT, "proto")


def sh(*cmd):
    subprocess.run(cmd, check=True, capture_output=True)


class SecurityTest(h.SystemTestCase):
    @classmethod
    def start_system(cls):
        if os.geteuid() != 0:
            raise unittest.SkipTest("needs root for ip netns")
        cls.netns = False
        cls.tmp = h.TempDir()
        t = cls.tmp.path
        # "Another host": a network namespace joined to this one by a veth pair.
        sh("ip", "netns", "add", NS)
        cls.netns = True
        veth = f"vh{os.getpid() % 100000}"
        sh("ip", "link", "add", veth, "type", "veth", "peer", "name", "eth0", "netns", NS)
        sh("ip", "addr", "add", f"{HOST_IP}/30", "dev", veth)
        sh("ip", "link", "set", veth, "up")
        sh("ip", "-n", NS, "addr", "add", f"{NS_IP}/30", "dev", "eth0")
        sh("ip", "-n", NS, "link", "set", "eth0", "up")
        sh("ip", "-n", NS, "link", "set", "lo", "up")

        cls.pg = h.Postgres(t)
        cls.pki = h.Pki(t, server_ips=("127.0.0.1", HOST_IP))
        cls.sink = h.WebhookSink()
        cls.textfile = os.path.join(t, "textfile")
        os.mkdir(cls.textfile)
        with open(os.path.join(cls.textfile, "demo.prom"), "w") as f:
            f.write("demo_value 500\n")
        cls.admin_file, cls.admin = h.write_secret(t, "admin.token")
        cls.nt_file, cls.nt_token = h.write_secret(t, "notifier.token")
        cls.metrics_file, cls.metrics_token = h.write_secret(t, "metrics.token")
        p = cls.pki

        cls.nt_grpc, cls.nt_http = f"127.0.0.1:{h.free_port()}", f"127.0.0.1:{h.free_port()}"
        cls.procs.append(h.Process(t, "vigie-notifier", f"""
grpc_listen: {cls.nt_grpc}
http_listen: {cls.nt_http}
tls: {{cert_file: {p.server_cert}, key_file: {p.server_key}, client_ca_file: {p.ca}}}
client_token: {{file: {cls.nt_file}}}
receivers: [{{name: sink, webhook: {{url: "{cls.sink.url}"}}}}]
retry_backoff: {{initial: 200ms, max: 1s}}
""", health_url=f"http://{cls.nt_http}/healthz"))

        port = h.free_port()
        cls.cp_local, cls.cp_remote = f"127.0.0.1:{port}", f"{HOST_IP}:{port}"
        cls.cp_health, cls.cp_http = f"127.0.0.1:{h.free_port()}", f"127.0.0.1:{h.free_port()}"
        cls.procs.append(h.Process(t, "vigie-controlplane", f"""
grpc_listen: 0.0.0.0:{port}
health_listen: {cls.cp_health}
http_listen: {cls.cp_http}
http: {{bearer_token: {{file: {cls.metrics_file}}}}}
tls: {{cert_file: {p.server_cert}, key_file: {p.server_key}}}
database_url_from: {{file: {cls.pg.url_file}}}
bootstrap_admin_token: {{file: {cls.admin_file}}}
notifier: {cls.nt_grpc}
notifier_token: {{file: {cls.nt_file}}}
notifier_tls: {{ca_file: {p.ca}, cert_file: {p.client_cert}, key_file: {p.client_key}}}
notify_backoff: {{initial: 200ms, max: 1s}}
rules:
  - {{name: DemoHigh, metric: demo_value, op: ">", threshold: 100, severity: critical}}
""", health_url=f"http://{cls.cp_http}/healthz"))

        cls.agent_token = h.create_token(cls.cp_local, cls.admin, "TOKEN_KIND_AGENT", "remote1",
                                         cacert=p.ca)
        cls.agent_file, _ = h.write_secret(t, "agent.token", cls.agent_token)
        agent = h.Process.__new__(h.Process)
        agent.name, agent.health_url = "vigie-agent", None
        agent.config = os.path.join(t, "agent.yaml")
        agent.log_path = os.path.join(t, "vigie-agent.log")
        with open(agent.config, "w") as f:
            f.write(f"""
agent_id: remote1
controlplane: {cls.cp_remote}
token: {{file: {cls.agent_file}}}
tls: {{ca_file: {p.ca}}}
http_listen: 127.0.0.1:9101
collect_interval: 300ms
textfile_directory: {cls.textfile}
reconnect_backoff: {{initial: 100ms, max: 500ms}}
""")
        log = open(agent.log_path, "w")
        agent.proc = subprocess.Popen(
            ["ip", "netns", "exec", NS, os.path.join(h.BIN, "vigie-agent"),
             f"--config={agent.config}"], stdout=log, stderr=subprocess.STDOUT)
        log.close()
        cls.procs.append(agent)
        cls.agent = agent

    @classmethod
    def tearDownClass(cls):
        super().tearDownClass()
        if getattr(cls, "netns", False):
            subprocess.run(["ip", "netns", "del", NS], capture_output=True)

    # --- helpers -------------------------------------------------------------------------------

    def admin_call(self, method, body, token=None):
        token = token if token is not None else self.admin
        return h.buf("--schema", PROTO, "-d", json.dumps(body),
                     f"https://{self.cp_local}/vigie.v1.Admin/{method}",
                     headers=[f"authorization: Bearer {token}"], cacert=self.pki.ca)

    def connect(self, token, agent_id):
        """One Connect stream sending Hello; returns buf's (code, stdout, stderr)."""
        headers = [f"authorization: Bearer {token}"] if token else []
        return h.buf("--schema", PROTO, "-d", json.dumps({"hello": {"agentId": agent_id,
                                                                    "hostname": agent_id}}),
                     f"https://{self.cp_local}/vigie.v1.AgentGateway/Connect",
                     headers=headers, cacert=self.pki.ca)

    def failures(self, url, reason, token=None):
        req = h.urllib.request.Request(url + "/metrics")
        if token:
            req.add_header("Authorization", f"Bearer {token}")
        with h.urllib.request.urlopen(req, timeout=5) as r:
            m = h.parse_metrics(r.read().decode())
        return m.get(f'vigie_auth_failures_total{{reason="{reason}"}}', 0)

    def cp_failures(self, reason):
        return self.failures(f"http://{self.cp_http}", reason, self.metrics_token)

    def assert_refused(self, result, code, reason, before):
        rc, _, err = result
        self.assertNotEqual(rc, 0)
        self.assertEqual(h.grpc_code(err), code, err)
        self.assertEqual(self.cp_failures(reason), before + 1, reason)

    # --- the remote agent ----------------------------------------------------------------------

    def test_1_remote_agent_over_tls_stores_samples_and_fires_an_alert(self):
        def stored():
            rows = self.pg.query("SELECT committed_sequence FROM agents WHERE agent_id = 'remote1'")
            return rows and int(rows[0][0]) >= 3
        h.wait_for(stored, 60, "samples from the agent in the namespace")
        rows = self.pg.query("SELECT count(*) FROM samples x JOIN series s ON s.id = x.series_id "
                             "WHERE s.agent_id = 'remote1' AND s.name = 'demo_value'")
        self.assertGreater(int(rows[0][0]), 0)

        def fired():
            return [b for b in self.sink.bodies() if b["status"] == "firing"]
        body = h.wait_for(fired, 60, "the alert at the webhook (via mTLS to the notifier)")[0]
        self.assertEqual(body["alerts"][0]["labels"]["alertname"], "DemoHigh")

    # --- refusals ------------------------------------------------------------------------------

    def test_2_agent_stream_refusals(self):
        before = self.cp_failures("missing_token")
        self.assert_refused(self.connect(None, "remote1"), "unauthenticated", "missing_token",
                            before)
        before = self.cp_failures("unknown_token")
        self.assert_refused(self.connect("vigie_" + "0" * 43, "remote1"), "unauthenticated",
                            "unknown_token", before)
        before = self.cp_failures("agent_id_mismatch")
        self.assert_refused(self.connect(self.agent_token, "someone-else"), "permission_denied",
                            "agent_id_mismatch", before)
        revoked = h.create_token(self.cp_local, self.admin, "TOKEN_KIND_AGENT", "gone",
                                 cacert=self.pki.ca)
        code, out, _ = self.admin_call("ListTokens", {})
        tid = [tk["id"] for tk in json.loads(out)["tokens"] if tk.get("agentId") == "gone"][0]
        code, _, err = self.admin_call("RevokeToken", {"id": tid})
        self.assertEqual(code, 0, err)
        before = self.cp_failures("revoked_token")
        self.assert_refused(self.connect(revoked, "gone"), "unauthenticated", "revoked_token",
                            before)

    def test_3_admin_refusals(self):
        before = self.cp_failures("wrong_role")
        self.assert_refused(self.admin_call("ListAgents", {}, token=self.agent_token),
                            "permission_denied", "wrong_role", before)
        viewer = h.create_token(self.cp_local, self.admin, "TOKEN_KIND_VIEWER", cacert=self.pki.ca)
        code, _, err = self.admin_call("ListAgents", {}, token=viewer)
        self.assertEqual(code, 0, err)
        self.assert_refused(self.admin_call("CreateToken", {"kind": "TOKEN_KIND_ADMIN"},
                                            token=viewer),
                            "permission_denied", "wrong_role", before + 1)
        # Reflection needs a token too.
        before = self.cp_failures("missing_token")
        rc, _, err = h.buf("--list-services", f"https://{self.cp_local}", cacert=self.pki.ca)
        self.assertNotEqual(rc, 0)
        self.assertIn("authenticated", err.lower())
        self.assertGreaterEqual(self.cp_failures("missing_token"), before + 1)
        # ListTokens shows no secrets.
        code, out, _ = self.admin_call("ListTokens", {})
        self.assertNotIn(self.agent_token, out)
        self.assertNotIn("secret", out)

    def test_4_transport_refusals(self):
        # Plaintext to the TLS listener: the handshake fails before any call exists.
        rc, _, err = h.buf("-d", "{}", f"http://{self.cp_local}/vigie.v1.Admin/ListAgents",
                           token=self.admin, plaintext=True)
        self.assertNotEqual(rc, 0, "plaintext reached the TLS listener")
        # The notifier requires mTLS. The same call with the same token gets through with the
        # CA's client certificate (the empty request is then refused as invalid) and not at all
        # with a certificate from another CA.
        def notify(cert, key):
            return h.buf("--schema", PROTO, "-d", "{}",
                         f"https://{self.nt_grpc}/vigie.v1.Notifier/Notify", cacert=self.pki.ca,
                         cert=cert, key=key, headers=[f"authorization: Bearer {self.nt_token}"])
        rc, _, err = notify(self.pki.client_cert, self.pki.client_key)
        self.assertEqual(h.grpc_code(err), "invalid_argument", err)
        rc, _, err = notify(self.pki.rogue_cert, self.pki.rogue_key)
        self.assertNotEqual(rc, 0)
        self.assertNotEqual(h.grpc_code(err), "invalid_argument", "the rogue certificate got in")
        # Notify with a trusted certificate but without the control plane's token.
        before = self.failures(f"http://{self.nt_http}", "missing_token")
        rc, _, err = h.buf("--schema", PROTO, "-d", "{}",
                           f"https://{self.nt_grpc}/vigie.v1.Notifier/Notify", cacert=self.pki.ca,
                           cert=self.pki.client_cert, key=self.pki.client_key)
        self.assertEqual(h.grpc_code(err), "unauthenticated", err)
        self.assertEqual(self.failures(f"http://{self.nt_http}", "missing_token"), before + 1)

    def test_5_health_is_open_and_metrics_need_their_token(self):
        rc, out, err = h.buf("--schema", PROTO, "-d", "{}",
                             f"http://{self.cp_health}/grpc.health.v1.Health/Check")
        self.assertEqual(rc, 0, err)
        self.assertIn("SERVING", out)
        rc, _, _ = h.buf("--list-services", f"http://{self.cp_health}")
        self.assertNotEqual(rc, 0, "the plaintext health port serves no reflection")
        with self.assertRaises(h.urllib.error.HTTPError) as e:
            h.http_get(f"http://{self.cp_http}/metrics")
        self.assertEqual(e.exception.code, 401)
        self.assertEqual(h.http_get(f"http://{self.cp_http}/healthz"), "ok\n")

    def test_6_revoking_the_agent_token_ends_its_stream(self):
        code, out, _ = self.admin_call("ListTokens", {})
        tid = [tk["id"] for tk in json.loads(out)["tokens"] if tk.get("agentId") == "remote1"][0]
        self.assertEqual(self.admin_call("RevokeToken", {"id": tid})[0], 0)

        def disconnected():
            rows = self.pg.query("SELECT connected FROM agents WHERE agent_id = 'remote1'")
            return rows and rows[0][0] == "f"
        h.wait_for(disconnected, 30, "the revoked agent's stream to end")

    def test_7_no_secret_in_logs_metrics_or_database(self):
        secrets = {"admin token": self.admin, "notifier token": self.nt_token,
                   "agent token": self.agent_token, "metrics token": self.metrics_token,
                   "database password": self.pg.password}
        with open(self.pki.server_key) as f:
            key_lines = [line for line in f.read().splitlines() if "-----" not in line]
        haystacks = {}
        for name in os.listdir(self.tmp.path):
            if name.endswith(".log"):
                with open(os.path.join(self.tmp.path, name), errors="replace") as f:
                    haystacks[name] = f.read()
        for url, token in ((f"http://{self.cp_http}", self.metrics_token),
                           (f"http://{self.nt_http}", None)):
            req = h.urllib.request.Request(url + "/metrics")
            if token:
                req.add_header("Authorization", f"Bearer {token}")
            haystacks[url] = h.urllib.request.urlopen(req, timeout=5).read().decode()
        haystacks["pg_dump"] = subprocess.run(
            ["pg_dump", "--data-only", self.pg.url], check=True, capture_output=True,
            text=True).stdout
        self.assertIn("remote1", haystacks["pg_dump"], "the dump has data")
        for where, text in haystacks.items():
            for what, secret in secrets.items():
                self.assertNotIn(secret, text, f"{what} found in {where}")
            for line in key_lines:
                self.assertNotIn(line, text, f"TLS key material found in {where}")


if __name__ == "__main__":
    unittest.main(verbosity=2)
