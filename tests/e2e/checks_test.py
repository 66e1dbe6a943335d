#!/usr/bin/python3
"""Service checks against real servers on loopback: HTTPS with a valid, an expiring, an expired
and a wrong-host certificate from a test CA, a TLS 1.0-only server, a redirect loop, a closed
port, a port that accepts and never answers, dnsmasq, and aiosmtpd with STARTTLS. Each result
reaches PostgreSQL through the control plane with a message that says why, and the agent's
/metrics shows blackbox_exporter's probe_* series."""
import datetime
import ipaddress
import json
import re
import http.server
import os
import socket
import ssl
import subprocess
import sys
import threading
import time
import unittest
import urllib.parse

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import vigie_harness as h  # noqa: E402


class TestCa:
    """A CA that signs certificates with any validity and names."""

    def __init__(self, directory):
        self.dir = directory
        self.key = ec.generate_private_key(ec.SECP256R1())
        name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "Vigie Test CA")])
        now = datetime.datetime.now(datetime.timezone.utc)
        self.cert = (x509.CertificateBuilder().subject_name(name).issuer_name(name)
                     .public_key(self.key.public_key()).serial_number(x509.random_serial_number())
                     .not_valid_before(now - datetime.timedelta(days=1))
                     .not_valid_after(now + datetime.timedelta(days=30))
                     .add_extension(x509.BasicConstraints(ca=True, path_length=None), True)
                     .sign(self.key, hashes.SHA256()))
        self.file = self._write("ca", self.cert, None)

    def _write(self, name, cert, key):
        path = os.path.join(self.dir, name)
        with open(path + ".crt", "wb") as f:
            f.write(cert.public_bytes(serialization.Encoding.PEM))
        if key is not None:
            with open(path + ".key", "wb") as f:
                f.write(key.private_bytes(serialization.Encoding.PEM,
                                          serialization.PrivateFormat.PKCS8,
                                          serialization.NoEncryption()))
        return path + ".crt"

    def issue(self, name, not_before_days, not_after_days, dns=(), ips=()):
        key = ec.generate_private_key(ec.SECP256R1())
        now = datetime.datetime.now(datetime.timezone.utc)
        sans = [x509.DNSName(d) for d in dns] + [x509.IPAddress(ipaddress.ip_address(i))
                                                 for i in ips]
        cert = (x509.CertificateBuilder()
                .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, name)]))
                .issuer_name(self.cert.subject).public_key(key.public_key())
                .serial_number(x509.random_serial_number())
                .not_valid_before(now + datetime.timedelta(days=not_before_days))
                .not_valid_after(now + datetime.timedelta(days=not_after_days))
                .add_extension(x509.SubjectAlternativeName(sans), False)
                .sign(self.key, hashes.SHA256()))
        crt = self._write(name, cert, key)
        return crt, crt[:-4] + ".key"


class Handler(http.server.BaseHTTPRequestHandler):
    def do_GET(self):
        if self.path.startswith("/loop"):
            self.send_response(302)
            self.send_header("Location", "/loop")
            self.end_headers()
            return
        body = b"all ok\n"
        self.send_response(200)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args):
        pass


def https_server(cert, key, tls10_only=False):
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    if tls10_only:
        ctx.set_ciphers("DEFAULT:@SECLEVEL=0")
        ctx.minimum_version = ssl.TLSVersion.TLSv1
        ctx.maximum_version = ssl.TLSVersion.TLSv1
    ctx.load_cert_chain(cert, key)
    server.socket = ctx.wrap_socket(server.socket, server_side=True)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    return server


def http_server(port=0):
    server = http.server.ThreadingHTTPServer(("127.0.0.1", port), Handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    return server


class ChecksTest(h.SystemTestCase):
    @classmethod
    def start_system(cls):
        cls.tmp = h.TempDir()
        t = cls.tmp.path
        ca = TestCa(t)
        local = dict(dns=["localhost", "vigie.test"], ips=["127.0.0.1"])
        good = ca.issue("good", -1, 60, **local)
        soon = ca.issue("soon", -1, 3, **local)
        expired = ca.issue("expired", -30, -2, **local)
        wrong = ca.issue("wrong", -1, 60, dns=["other.test"])
        cls.servers = [https_server(*good), https_server(*soon), https_server(*expired),
                       https_server(*wrong), https_server(*good, tls10_only=True), http_server()]
        ports = [s.server_address[1] for s in cls.servers]
        # A port that accepts (the kernel's backlog) and never answers.
        cls.silent = socket.socket()
        cls.silent.bind(("127.0.0.1", 0))
        cls.silent.listen(16)
        silent_port = cls.silent.getsockname()[1]
        closed_port = h.free_port()

        dns_port = h.free_port()
        cls.procs.append(h.Process(t, "dnsmasq", None, name="dnsmasq", argv=[
            "/usr/sbin/dnsmasq", "--keep-in-foreground", "--no-resolv", "--no-hosts",
            "--bind-interfaces", "--listen-address=127.0.0.1", f"--port={dns_port}",
            "--user=root", "--pid-file=", "--address=/web.test/10.0.0.5",
            "--mx-host=web.test,mail.web.test,10", "--log-facility=-"]))
        smtp_port = h.free_port()
        cls.procs.append(h.Process(t, "aiosmtpd", None, name="aiosmtpd", argv=[
            "/usr/bin/python3", "-m", "aiosmtpd", "-n", "-l", f"127.0.0.1:{smtp_port}",
            "--tlscert", good[0], "--tlskey", good[1]]))
        h.wait_for(lambda: port_open(smtp_port), 20, "aiosmtpd listening")

        # Redis with a password (Debian's redis-server), no persistence.
        cls.redis_port = h.free_port()
        redis_pw_file, redis_pw = h.write_secret(t, "redis.password")
        cls.redis_pw = redis_pw
        cls.redis_argv = ["/usr/bin/redis-server", "--port", str(cls.redis_port), "--bind",
                          "127.0.0.1", "--requirepass", redis_pw, "--save", "",
                          "--appendonly", "no", "--dir", t]
        cls.redis = h.Process(t, "redis-server", None, name="redis", argv=cls.redis_argv)
        cls.procs.append(cls.redis)
        h.wait_for(lambda: port_open(cls.redis_port), 20, "redis-server listening")
        wrong_pw_file, _ = h.write_secret(t, "wrong.password", "not-the-password")

        # A service to break and mend: a plain HTTP server on a fixed port.
        cls.toggle_port = h.free_port()
        cls.toggle = http_server(cls.toggle_port)
        cls.sink = h.RecordingSink()
        notifier, nt_grpc, nt_token = h.webhook_notifier(t, cls.sink)
        cls.procs.append(notifier)

        cls.pg = h.Postgres(t)
        pg = urllib.parse.urlparse(cls.pg.url)
        pg_pw_file = os.path.join(cls.pg.dir, "app.password")
        admin_file, admin = h.write_secret(t, "admin.token")
        cp_grpc, cp_http = f"127.0.0.1:{h.free_port()}", f"127.0.0.1:{h.free_port()}"
        cls.procs.append(h.Process(t, "vigie-controlplane", f"""
grpc_listen: {cp_grpc}
http_listen: {cp_http}
database_url_from: {{file: {cls.pg.url_file}}}
bootstrap_admin_token: {{file: {admin_file}}}
notifier: {nt_grpc}
notifier_token: {{file: {nt_token}}}
rules:
  - name: ServiceDown
    metric: vigie_check_status
    matchers: {{check: toggle}}
    op: ">="
    threshold: 2
    severity: critical
    annotations: {{summary: "{{{{labels.check}}}} ({{{{labels.target}}}}) is failing on {{{{labels.agent}}}}"}}
  - name: RedisDown
    check: {{names: [redis]}}
    severity: critical
  - name: PluginNotOk
    check: {{names: ["nagios_*"], min_status: warning}}
""", health_url=f"http://{cp_http}/healthz"))
        cls.admin_token, cls.cp_grpc = admin, cp_grpc
        # A second replica on the same database, holding no stream: RunCheck through it must
        # reach the agent through PostgreSQL.
        cls.cp2_grpc, cp2_http = f"127.0.0.1:{h.free_port()}", f"127.0.0.1:{h.free_port()}"
        cls.procs.append(h.Process(t, "vigie-controlplane", f"""
grpc_listen: {cls.cp2_grpc}
http_listen: {cp2_http}
database_url_from: {{file: {cls.pg.url_file}}}
bootstrap_admin_token: {{file: {admin_file}}}
""", name="controlplane2", health_url=f"http://{cp2_http}/healthz"))
        ag_file, _ = h.write_secret(t, "agent.token", h.create_token(
            cp_grpc, admin, "TOKEN_KIND_AGENT", "web1"))
        cls.ag_http = f"127.0.0.1:{h.free_port()}"
        tls = f"{{tls: {{ca_file: {ca.file}}}}}"
        checks = {
            "good": (f"https://127.0.0.1:{ports[0]}/health", f"http: {tls}"),
            "good_by_name": (f"https://localhost:{ports[0]}/health", f"http: {tls}"),
            # A name no resolver knows, verified and sent as SNI on the target's address.
            "server_name": (f"https://127.0.0.1:{ports[0]}/",
                            f"http: {{tls: {{ca_file: {ca.file}, server_name: vigie.test}}}}"),
            "soon": (f"https://127.0.0.1:{ports[1]}/", f"http: {tls}"),
            "expired": (f"https://127.0.0.1:{ports[2]}/", f"http: {tls}"),
            "wrong_host": (f"https://127.0.0.1:{ports[3]}/", f"http: {tls}"),
            "unknown_ca": (f"https://127.0.0.1:{ports[0]}/", ""),
            "tls10": (f"https://127.0.0.1:{ports[4]}/", f"http: {tls}"),
            "insecure_expired": (f"https://127.0.0.1:{ports[2]}/",
                                 "http: {tls: {insecure_skip_verify: true}}"),
            "loop": (f"http://127.0.0.1:{ports[5]}/loop", ""),
            "closed": (f"http://127.0.0.1:{closed_port}/", ""),
            "silent": (f"http://127.0.0.1:{silent_port}/", ""),
            "tcp": (f"tcp://127.0.0.1:{ports[5]}", ""),
            "tcp_tls": (f"tcp://127.0.0.1:{ports[0]}",
                        f"tcp: {{tls: true, tls_config: {{ca_file: {ca.file}}}}}"),
            "dns_a": (f"dns://127.0.0.1:{dns_port}/web.test?type=A", "dns: {expect: [10.0.0.5]}"),
            "dns_mx": (f"dns://127.0.0.1:{dns_port}/web.test?type=MX",
                       'dns: {expect: ["10 mail.web.test"]}'),
            "dns_wrong": (f"dns://127.0.0.1:{dns_port}/web.test?type=A",
                          "dns: {expect: [10.9.9.9]}"),
            "toggle": (f"http://127.0.0.1:{cls.toggle_port}/", ""),
            "ondemand": (f"tcp://127.0.0.1:{ports[5]}", "interval: 1h"),
            "smtp": (f"smtp://127.0.0.1:{smtp_port}",
                     f"smtp: {{starttls: true, tls: {{ca_file: {ca.file}}}}}"),
            "redis": (f"redis://localhost:{cls.redis_port}",
                      f"redis: {{password_file: {redis_pw_file}}}"),
            "redis_in_url": (f"redis://:{redis_pw}@127.0.0.1:{cls.redis_port}", ""),
            "redis_noauth": (f"redis://127.0.0.1:{cls.redis_port}", ""),
            "redis_wrong_pw": (f"redis://127.0.0.1:{cls.redis_port}",
                               f"redis: {{password_file: {wrong_pw_file}}}"),
            "postgres": (f"postgresql://{pg.username}@localhost:{pg.port}{pg.path}",
                         f"postgresql: {{password_file: {pg_pw_file}, sslmode: disable}}"),
            "postgres_wrong_pw": (f"postgresql://{pg.username}@127.0.0.1:{pg.port}{pg.path}",
                                  f"postgresql: {{password_file: {wrong_pw_file}}}"),
            "postgres_closed": (f"postgresql://vigie@127.0.0.1:{closed_port}/vigie", ""),
            "nagios_dummy": ("command:///usr/lib/nagios/plugins/check_dummy?1&disk%20almost%20full",
                             ""),
            "nagios_tcp": ("command:///usr/lib/nagios/plugins/check_tcp",
                           f"command: {{args: [-H, 127.0.0.1, -p, '{cls.redis_port}']}}"),
            "nagios_tcp_closed": ("command:///usr/lib/nagios/plugins/check_tcp",
                                  f"command: {{args: [-H, 127.0.0.1, -p, '{closed_port}']}}"),
        }
        lines = []
        for name, (target, extra) in checks.items():
            interval = "" if extra.startswith("interval") else "    interval: 3s\n"
            lines.append(f"  - name: {name}\n    target: \"{target}\"\n{interval}"
                         f"    timeout: 2s\n" + (f"    {extra}\n" if extra else ""))
        cls.agent = h.Process(t, "vigie-agent", f"agent_id: web1\ncontrolplane: {cp_grpc}\n"
                              f"token: {{file: {ag_file}}}\nhttp_listen: {cls.ag_http}\n"
                              "collect_interval: 1s\nchecks:\n" + "".join(lines),
                              health_url=f"http://{cls.ag_http}/healthz")
        cls.procs.append(cls.agent)

    @classmethod
    def tearDownClass(cls):
        for s in getattr(cls, "servers", []) + [getattr(cls, "toggle", None)]:
            if s:
                s.shutdown()
                s.server_close()
        if getattr(cls, "silent", None):
            cls.silent.close()
        super().tearDownClass()

    def result(self, name):
        def latest():
            rows = self.pg.query(
                "SELECT status, message FROM check_results WHERE agent_id = 'web1' AND "
                f"name = '{name}' ORDER BY ts DESC LIMIT 1")
            return rows[0] if rows else None
        return h.wait_for(latest, 30, f"a stored result of {name}")

    def assertResult(self, name, status, *fragments):
        got_status, message = self.result(name)
        self.assertEqual(got_status, status, f"{name}: {message}")
        for f in fragments:
            self.assertIn(f, message, name)

    def test_https(self):
        self.assertResult("good", "ok", "HTTP 200 in")
        self.assertResult("good_by_name", "ok", "HTTP 200 in")  # resolved by c-ares
        self.assertResult("server_name", "ok", "HTTP 200 in")
        self.assertResult("soon", "warning", "certificate expires in 2 days")
        self.assertResult("expired", "critical", "certificate expired on ", "CN=expired")
        self.assertResult("wrong_host", "critical",
                          "host name mismatch: certificate for other.test, wanted 127.0.0.1")
        self.assertResult("unknown_ca", "critical",
                          "certificate signed by an unknown authority (issuer CN=Vigie Test CA)")
        self.assertResult("tls10", "critical", "TLS handshake failed: protocol version", "no TLS version in common with 127.0.0.1:")
        self.assertResult("insecure_expired", "critical", "certificate expired on ")

    def test_http_failures(self):
        self.assertResult("loop", "critical", "too many redirects")
        self.assertResult("closed", "critical", "connection refused by 127.0.0.1:")
        self.assertResult("silent", "critical", "timeout after 2s waiting for the response")

    def test_tcp_dns_smtp(self):
        self.assertResult("tcp", "ok", "connected in")
        self.assertResult("tcp_tls", "ok", "connected with TLS in")
        self.assertResult("dns_a", "ok", "web.test A: 10.0.0.5")
        self.assertResult("dns_mx", "ok", "10 mail.web.test")
        self.assertResult("dns_wrong", "critical", "the answer lacks \"10.9.9.9\" (got 10.0.0.5)")
        self.assertResult("smtp", "ok", "220 ", "EHLO and STARTTLS")

    def test_a_broken_service_notifies_once_and_resolves(self):
        self.assertResult("toggle", "ok", "HTTP 200")
        self.assertEqual(h.webhook_alerts(self.sink, "ServiceDown"), [])
        self.toggle.shutdown()
        self.toggle.server_close()
        firing = h.wait_for(lambda: h.webhook_alerts(self.sink, "ServiceDown"), 30,
                            "ServiceDown firing at the webhook")[0]
        self.assertEqual(firing["status"], "firing")
        self.assertEqual(firing["labels"]["check"], "toggle")
        self.assertEqual(firing["labels"]["agent"], "web1")
        self.assertIn("toggle (http://127.0.0.1:", firing["annotations"]["summary"])
        self.assertResult("toggle", "critical", "connection refused")
        type(self).toggle = http_server(self.toggle_port)
        resolved = h.wait_for(lambda: [a for a in h.webhook_alerts(self.sink, "ServiceDown")
                                       if a["status"] == "resolved"], 30, "ServiceDown resolved")
        self.assertEqual(resolved[0]["fingerprint"], firing["fingerprint"])
        # Each once: the collect-interval metric and the results feed one alert.
        time.sleep(3)
        statuses = [a["status"] for a in h.webhook_alerts(self.sink, "ServiceDown")]
        self.assertEqual(statuses, ["firing", "resolved"])

    def test_redis_postgresql_and_nagios_plugins(self):
        self.assertResult("redis", "ok", "PONG in", "(Redis ")  # localhost resolved by c-ares
        self.assertResult("redis_in_url", "ok", "PONG in")
        self.assertResult("redis_noauth", "critical", "NOAUTH", "redis.password_file")
        self.assertResult("redis_wrong_pw", "critical", "AUTH failed: WRONGPASS")
        self.assertResult("postgres", "ok", "SELECT 1 in", "(PostgreSQL 15.")
        self.assertResult("postgres_wrong_pw", "critical", "password authentication failed")
        self.assertResult("postgres_closed", "critical", "Connection refused")
        self.assertResult("nagios_dummy", "warning", "WARNING: disk almost full")
        self.assertResult("nagios_tcp", "ok", "TCP OK")
        self.assertResult("nagios_tcp_closed", "critical", "Connection refused")
        # The password written in the target never leaves the agent.
        rows = self.pg.query("SELECT DISTINCT target FROM check_results WHERE "
                             "name = 'redis_in_url'")
        self.assertEqual(rows, [[f"redis://:xxxxx@127.0.0.1:{self.redis_port}/"]])
        self.assertNotIn(self.redis_pw, self.agent.log())
        # check_tcp's performance data became a metric in seconds.
        def perfdata():
            text = h.http_get(f"http://{self.ag_http}/metrics")
            return [l for l in text.splitlines() if l.startswith("vigie_check_perfdata_seconds{")
                    and 'check="nagios_tcp"' in l and 'perf="time"' in l]
        h.wait_for(perfdata, 20, "check_tcp's time as vigie_check_perfdata_seconds")
        # The check rule on nagios_* (warning and worse) fired for the two failing plugins,
        # each with its message, and not for the one that is OK.
        def plugin_alerts():
            alerts = {a["labels"]["check"]: a for a in h.webhook_alerts(self.sink, "PluginNotOk")}
            return alerts if len(alerts) >= 2 else None
        alerts = h.wait_for(plugin_alerts, 20, "PluginNotOk alerts")
        self.assertEqual(sorted(alerts), ["nagios_dummy", "nagios_tcp_closed"])
        self.assertEqual(alerts["nagios_dummy"]["annotations"]["message"],
                         "WARNING: disk almost full")
        self.assertIn("Connection refused", alerts["nagios_tcp_closed"]["annotations"]["message"])

    def test_stopping_redis_notifies_once_and_resolves(self):
        self.assertResult("redis", "ok", "PONG")
        self.assertEqual(h.webhook_alerts(self.sink, "RedisDown"), [])
        self.redis.terminate()
        firing = h.wait_for(lambda: h.webhook_alerts(self.sink, "RedisDown"), 30,
                            "RedisDown firing at the webhook")[0]
        self.assertEqual(firing["status"], "firing")
        self.assertEqual(firing["labels"]["check"], "redis")
        self.assertIn("connection to 127.0.0.1:", firing["annotations"]["message"])
        self.assertIn(f"redis (redis://localhost:{self.redis_port}) on web1 is not OK",
                      firing["annotations"]["summary"])
        self.assertResult("redis", "critical", "connection to ", "refused")
        self.redis.start()
        resolved = h.wait_for(lambda: [a for a in h.webhook_alerts(self.sink, "RedisDown")
                                       if a["status"] == "resolved"], 30, "RedisDown resolved")
        self.assertEqual(resolved[0]["fingerprint"], firing["fingerprint"])
        time.sleep(3)
        statuses = [a["status"] for a in h.webhook_alerts(self.sink, "RedisDown")]
        self.assertEqual(statuses, ["firing", "resolved"])

    def test_run_check_through_another_replica(self):
        self.assertResult("ondemand", "ok", "connected in")  # its first run; the next in 1h
        before = int(time.time() * 1000)
        code, out, err = h.buf("-d", json.dumps({"agentId": "web1", "name": "ondemand"}),
                               f"http://{self.cp2_grpc}/vigie.v1.Admin/RunCheck",
                               token=self.admin_token)
        self.assertEqual(code, 0, err)
        result = json.loads(out)["result"]
        self.assertEqual(result["name"], "ondemand")
        self.assertEqual(result["status"], "CHECK_STATUS_OK")
        self.assertIn("connected in", result["message"])
        self.assertGreaterEqual(int(result["timestampMs"]), before)
        self.assertNotIn("commandIds", result)
        rows = self.pg.query("SELECT count(*) FROM check_results WHERE name = 'ondemand'")
        self.assertEqual(rows, [["2"]])
        # Bad requests, named.
        for body, want in [({"agentId": "web1", "name": "nope"}, "has reported no check"),
                           ({"agentId": "web1", "name": "ondemand", "timeout": "10m"},
                            "timeout: must be between 1s and 5m"),
                           ({"agentId": "", "name": "ondemand"}, "agent_id: required"),
                           ({"agentId": "web1", "name": "x" * 200}, "name: required, at most")]:
            code, out, err = h.buf("-d", json.dumps(body),
                                   f"http://{self.cp2_grpc}/vigie.v1.Admin/RunCheck",
                                   token=self.admin_token)
            self.assertNotEqual(code, 0, body)
            self.assertIn(want, err, body)
        # An agent that holds no stream anywhere: DEADLINE_EXCEEDED at the timeout, named.
        self.pg.query("INSERT INTO agents (agent_id, hostname) VALUES ('ghost', 'ghost') "
                      "ON CONFLICT DO NOTHING")
        self.pg.query("INSERT INTO check_state SELECT 'ghost', name, target, status, since, "
                      "message, latency_seconds, last_run, 0, labels FROM check_state "
                      "WHERE agent_id = 'web1' AND name = 'ondemand'")
        code, out, err = h.buf("-d", json.dumps({"agentId": "ghost", "name": "ondemand",
                                                 "timeout": "2s"}),
                               f"http://{self.cp_grpc}/vigie.v1.Admin/RunCheck",
                               token=self.admin_token)
        self.assertEqual(h.grpc_code(err), "deadline_exceeded", err)
        self.assertIn("no answer for check \"ondemand\" of agent \"ghost\" in time",
                      json.loads(err)["message"])

    def admin(self, method, body):
        return h.buf("-d", json.dumps(body), f"http://{self.cp_grpc}/vigie.v1.Admin/{method}",
                     token=self.admin_token)

    def test_admin_api(self):
        self.result("closed")
        self.result("good")
        code, out, err = self.admin("ListChecks", {"agentId": "web1", "status":
                                                   "CHECK_STATUS_CRITICAL", "pageSize": 2})
        self.assertEqual(code, 0, err)
        page = json.loads(out)
        self.assertEqual(len(page["checks"]), 2)
        for c in page["checks"]:
            self.assertEqual(c["status"], "CHECK_STATUS_CRITICAL")
        names = [c["name"] for c in page["checks"]]
        self.assertEqual(names, sorted(names))
        code, out, err = self.admin("ListChecks", {"agentId": "web1", "status":
                                                   "CHECK_STATUS_CRITICAL", "pageSize": 2,
                                                   "pageToken": page["nextPageToken"]})
        self.assertEqual(code, 0, err)
        self.assertGreater(json.loads(out)["checks"][0]["name"], names[-1])

        def two_results():
            code, out, _ = self.admin("GetCheck", {"agentId": "web1", "name": "closed"})
            return code == 0 and len(json.loads(out).get("results", [])) >= 2
        h.wait_for(two_results, 30, "two results of closed")
        code, out, err = self.admin("GetCheck", {"agentId": "web1", "name": "closed",
                                                 "results": 2})
        self.assertEqual(code, 0, err)
        got = json.loads(out)
        self.assertEqual(got["check"]["status"], "CHECK_STATUS_CRITICAL")
        self.assertIn("connection refused", got["check"]["message"])
        self.assertEqual(len(got["results"]), 2)
        self.assertGreaterEqual(int(got["results"][0]["timestampMs"]),
                                int(got["results"][1]["timestampMs"]))

        # Bad input: named field and value, the right code.
        code, _, err = self.admin("GetCheck", {"agentId": "web1", "name": "nope"})
        self.assertEqual(h.grpc_code(err), "not_found", err)
        self.assertIn('has no check \\"nope', err)
        code, _, err = self.admin("GetCheck", {"agentId": "web1", "name": ""})
        self.assertEqual(h.grpc_code(err), "invalid_argument", err)
        code, _, err = self.admin("ListChecks", {"pageSize": 5000})
        self.assertEqual(h.grpc_code(err), "invalid_argument", err)
        self.assertIn("page_size: at most 1000, got 5000", err)
        code, _, err = self.admin("ListChecks", {"pageToken": "garbage"})
        self.assertIn("page_token: not one this API gave", err)
        code, _, err = self.admin("GetCheck", {"agentId": "web1", "name": "x" * 300})
        self.assertEqual(h.grpc_code(err), "invalid_argument", err)

    def test_metrics(self):
        def scraped():
            m = h.parse_metrics(h.http_get(f"http://{self.ag_http}/metrics"))
            return m if any(k.startswith("probe_success{") for k in m) else None
        m = h.wait_for(scraped, 30, "probe_success on the agent's /metrics")
        by = {}
        for key, v in m.items():
            check = re.search(r'check="([^"]*)"', key)
            by[(key.split("{")[0], check.group(1) if check else None)] = v
        self.assertEqual(by.get(("probe_success", "good")), 1)
        self.assertEqual(by.get(("probe_http_status_code", "good")), 200)
        self.assertGreater(by.get(("probe_ssl_earliest_cert_expiry", "good"), 0), 1.7e9)
        self.assertEqual(by.get(("vigie_check_status", "closed")), 2)
        self.assertEqual(by.get(("probe_success", "closed")), 0)
        self.assertEqual(by.get(("probe_dns_answer_rrs", "dns_a")), 1)


def port_open(port):
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=1):
            return True
    except OSError:
        return False


if __name__ == "__main__":
    unittest.main()
