#!/usr/bin/python3
"""A rule fires in the control plane and the same alert arrives, through the notifier and its
routes, by email (a real SMTP server: Debian's aiosmtpd with STARTTLS and AUTH), by SMS through
both presets (HTTP sinks in the style of Free Mobile's and Twilio's APIs), on Slack (an HTTP
sink for the incoming webhook) and on a signed webhook. French accents and an emoji survive
every path."""
import base64
import email
import email.policy
import hashlib
import hmac
import json
import os
import ssl
import sys
import unittest
import urllib.parse

from aiosmtpd.controller import Controller
from aiosmtpd.smtp import AuthResult, LoginPassword

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import vigie_harness as h  # noqa: E402

SUMMARY = "Disque presque plein — été 🔥"
SMTP_USER, SMTP_PASSWORD = "vigie", "smtp-pässword"
HMAC_SECRET = "0123456789abcdef-webhook"


class MailStore:
    def __init__(self):
        self.messages = []  # (envelope, session facts)

    async def handle_DATA(self, server, session, envelope):
        self.messages.append({"from": envelope.mail_from, "rcpt": list(envelope.rcpt_tos),
                              "data": envelope.original_content or envelope.content,
                              "tls": session.ssl is not None,
                              "auth": session.authenticated})
        return "250 OK"


def authenticator(server, session, envelope, mechanism, auth_data):
    ok = (isinstance(auth_data, LoginPassword) and auth_data.login.decode() == SMTP_USER
          and auth_data.password.decode() == SMTP_PASSWORD)
    return AuthResult(success=ok, handled=False)


class NotifierChannelsTest(h.SystemTestCase):
    @classmethod
    def start_system(cls):
        cls.tmp = h.TempDir()
        t = cls.tmp.path
        cls.pki = h.Pki(t, server_dns=("localhost", "vigie.test"))
        cls.http = h.RecordingSink()
        cls.mail = MailStore()
        tls = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
        tls.load_cert_chain(cls.pki.server_cert, cls.pki.server_key)
        cls.smtp = Controller(cls.mail, hostname="127.0.0.1", port=h.free_port(),
                              tls_context=tls, require_starttls=True, auth_require_tls=True,
                              authenticator=authenticator, server_hostname="vigie.test")
        cls.smtp.start()
        smtp_pw_file, _ = h.write_secret(t, "smtp.password", SMTP_PASSWORD)
        slack_file, _ = h.write_secret(t, "slack.url", cls.http.url + "/services/T0/B0/xyz")
        sms_file, _ = h.write_secret(t, "sms.pass", "free&pass")
        hmac_file, _ = h.write_secret(t, "hmac.secret", HMAC_SECRET)
        nt_token_file, cls.nt_token = h.write_secret(t, "notifier.token")
        pg = cls.pg = h.Postgres(t)
        nt_grpc, cls.nt_http = f"127.0.0.1:{h.free_port()}", f"127.0.0.1:{h.free_port()}"
        cls.nt_grpc = nt_grpc
        cls.notifier = h.Process(t, "vigie-notifier", f"""
grpc_listen: {nt_grpc}
http_listen: {cls.nt_http}
client_token: {{file: {nt_token_file}}}
database_url_from: {{file: {pg.url_file}}}
spool_directory: {t}/notifier-spool
retry_backoff: {{initial: 200ms, max: 1s}}
receivers:
  - name: team
    email_configs:
      - to: [ops@example.com, oncall@example.com]
        from: vigie@example.com
        smarthost: "127.0.0.1:{cls.smtp.port}"
        ca_file: {cls.pki.ca}
        hello: vigie.test
        auth_username: {SMTP_USER}
        auth_password: {{file: {smtp_pw_file}}}
    sms_configs:
      - {{preset: free_mobile, url: "{cls.http.url}/sendmsg", user: "12345678",
         password: {{file: {sms_file}}}}}
      - {{preset: twilio, url: "{cls.http.url}", user: AC42, password: {{file: {sms_file}}},
         from: "+15550001", to: ["+33600000001"]}}
    slack_configs:
      - {{api_url: {{file: {slack_file}}}, channel: "#ops"}}
    webhook_configs:
      - {{url: "{cls.http.url}/hook", hmac_secret: {{file: {hmac_file}}}}}
  - name: low
    webhook_configs: [{{url: "{cls.http.url}/low"}}]
route:
  receiver: team
  routes:
    - receiver: low
      matchers: ['severity=~"info|warning"']
""", health_url=f"http://{cls.nt_http}/healthz")
        cls.procs.append(cls.notifier)
        admin_file, admin = h.write_secret(t, "admin.token")
        cp_grpc, cp_http = f"127.0.0.1:{h.free_port()}", f"127.0.0.1:{h.free_port()}"
        cls.procs.append(h.Process(t, "vigie-controlplane", f"""
grpc_listen: {cp_grpc}
http_listen: {cp_http}
database_url_from: {{file: {pg.url_file}}}
bootstrap_admin_token: {{file: {admin_file}}}
notifier: {nt_grpc}
notifier_token: {{file: {nt_token_file}}}
rules:
  - name: DiskAlmostFull
    metric: node_load1
    op: ">="
    threshold: 0
    severity: critical
    annotations: {{summary: "{SUMMARY}"}}
""", health_url=f"http://{cp_http}/healthz"))
        ag_file, _ = h.write_secret(t, "agent.token", h.create_token(
            cp_grpc, admin, "TOKEN_KIND_AGENT", "web1"))
        ag_http = f"127.0.0.1:{h.free_port()}"
        cls.procs.append(h.Process(t, "vigie-agent", f"agent_id: web1\ncontrolplane: {cp_grpc}\n"
                                   f"token: {{file: {ag_file}}}\nhttp_listen: {ag_http}\n"
                                   "collect_interval: 500ms\n",
                                   health_url=f"http://{ag_http}/healthz"))

    @classmethod
    def tearDownClass(cls):
        super().tearDownClass()
        if getattr(cls, "smtp", None):
            cls.smtp.stop()
        if getattr(cls, "http", None):
            cls.http.stop()

    def test_email_over_starttls_with_auth_multipart_and_encoded_subject(self):
        h.wait_for(lambda: self.mail.messages, 60, "an email at the SMTP server")
        m = self.mail.messages[0]
        self.assertTrue(m["tls"], "STARTTLS was used")
        self.assertEqual(m["from"], "vigie@example.com")
        self.assertEqual(sorted(m["rcpt"]), ["oncall@example.com", "ops@example.com"])
        msg = email.message_from_bytes(m["data"], policy=email.policy.default)
        self.assertEqual(str(msg["Subject"]),
                         f"[FIRING critical] DiskAlmostFull: {SUMMARY}")
        self.assertIn("=?UTF-8?B?", m["data"].split(b"\r\n\r\n")[0].decode())  # encoded on the wire
        self.assertIsNotNone(msg["Date"])
        self.assertRegex(str(msg["Message-ID"]), r"^<[0-9a-f]{32}\.\d+@example\.com>$")
        self.assertEqual(str(msg["To"]), "ops@example.com, oncall@example.com")
        self.assertEqual(msg.get_content_type(), "multipart/mixed")
        parts = [p for p in msg.walk() if not p.is_multipart()]
        types = [p.get_content_type() for p in parts]
        self.assertEqual(types, ["text/plain", "text/html"])
        text, html = (p.get_content() for p in parts)
        self.assertIn(SUMMARY, text)
        self.assertIn("agent = web1", text)
        self.assertIn(SUMMARY, html)
        self.assertIn("<td>agent</td><td>web1</td>", html)

    def test_sms_presets(self):
        h.wait_for(lambda: self.http.matching("/sendmsg"), 60, "the free_mobile request")
        method, path, _, _ = self.http.matching("/sendmsg")[0]
        self.assertEqual(method, "GET")
        q = urllib.parse.parse_qs(urllib.parse.urlsplit(path).query)
        self.assertEqual(q["user"], ["12345678"])
        self.assertEqual(q["pass"], ["free&pass"])
        self.assertTrue(q["msg"][0].startswith("FIRING DiskAlmostFull on web1: Disque presque"))
        self.assertLessEqual(len(q["msg"][0]), 160)
        h.wait_for(lambda: self.http.matching("/Messages.json"), 60, "the twilio request")
        method, path, headers, body = self.http.matching("/Messages.json")[0]
        self.assertEqual((method, path), ("POST", "/2010-04-01/Accounts/AC42/Messages.json"))
        self.assertEqual(headers["Authorization"],
                         "Basic " + base64.b64encode(b"AC42:free&pass").decode())
        form = urllib.parse.parse_qs(body.decode())
        self.assertEqual(form["To"], ["+33600000001"])
        self.assertEqual(form["From"], ["+15550001"])
        self.assertIn("été 🔥", form["Body"][0])

    def test_slack_and_signed_webhook(self):
        h.wait_for(lambda: self.http.matching("/services/"), 60, "the Slack request")
        _, path, headers, body = self.http.matching("/services/")[0]
        self.assertEqual(path, "/services/T0/B0/xyz")
        self.assertEqual(headers["Content-Type"], "application/json")
        j = json.loads(body)
        self.assertEqual(j["channel"], "#ops")
        a = j["attachments"][0]
        self.assertEqual(a["title"], f"[FIRING] DiskAlmostFull: {SUMMARY}")
        self.assertEqual(a["color"], "#d00000")
        self.assertIn({"title": "agent", "value": "web1", "short": True}, a["fields"])
        h.wait_for(lambda: self.http.matching("/hook"), 60, "the webhook request")
        _, _, headers, body = self.http.matching("/hook")[0]
        expected = "sha256=" + hmac.new(HMAC_SECRET.encode(), body, hashlib.sha256).hexdigest()
        self.assertEqual(headers["X-Vigie-Signature-256"], expected)
        self.assertEqual(json.loads(body)["alerts"][0]["annotations"]["summary"], SUMMARY)
        # The routes sent the critical alert to team only, never to the low-severity receiver.
        self.assertEqual(self.http.matching("/low"), [])

    def test_metrics_count_each_channel(self):
        h.wait_for(lambda: self.mail.messages and self.http.matching("/hook"), 60, "deliveries")
        def sent():
            m = h.parse_metrics(h.http_get(f"http://{self.nt_http}/metrics"))
            return all(m.get(f'vigie_notifier_deliveries_total{{channel="{c}",receiver="team",'
                             'result="sent"}', 0) >= n
                       for c, n in (("email", 1), ("sms", 2), ("slack", 1), ("webhook", 1)))
        h.wait_for(sent, 30, "sent counted per channel")

    def call(self, method, body):
        code, out, err = h.buf("-d", json.dumps(body),
                               f"http://{self.nt_grpc}/vigie.v1.Notifier/{method}",
                               token=self.nt_token)
        self.assertEqual(code, 0, err)
        return json.loads(out or "{}")

    def test_z_delivery_log_api_and_keys_across_a_restart(self):
        # The log shows each channel's delivery as sent.
        def logged():
            d = self.call("ListDeliveries", {"receiver": "team", "status": "sent"})
            return d.get("deliveries") if len(d.get("deliveries", [])) >= 5 else None
        deliveries = h.wait_for(logged, 30, "five sent deliveries in the log")
        self.assertEqual(sorted(d["channel"] for d in deliveries[:5]),
                         ["email", "slack", "sms", "sms", "webhook"])
        first = deliveries[0]
        self.assertEqual(first["rule"], "DiskAlmostFull")
        self.assertGreaterEqual(first["attempts"], 1)
        # Pagination: two pages of 3 then the rest, no overlap.
        page1 = self.call("ListDeliveries", {"receiver": "team", "pageSize": 3})
        page2 = self.call("ListDeliveries", {"receiver": "team", "pageSize": 3,
                                             "pageToken": page1["nextPageToken"]})
        seen = [(d["idempotencyKey"], d["target"]) for d in page1["deliveries"] + page2["deliveries"]]
        self.assertEqual(len(seen), len(set(seen)))
        code, _, err = h.buf("-d", '{"pageToken": "garbage"}',
                             f"http://{self.nt_grpc}/vigie.v1.Notifier/ListDeliveries",
                             token=self.nt_token)
        self.assertNotEqual(code, 0)
        self.assertIn("page_token", err)
        receivers = self.call("ListReceivers", {})["receivers"]
        self.assertEqual(receivers, [{"name": "team",
                                      "channels": ["webhook", "email", "slack", "sms", "sms"]},
                                     {"name": "low", "channels": ["webhook"]}])
        # A key delivered before a restart is still a duplicate after it, and nothing is sent.
        key = first["idempotencyKey"]
        emails = len(self.mail.messages)
        self.notifier.terminate()
        self.notifier.start()
        r = self.call("Notify", {"idempotencyKey": key, "notification": {
            "status": "STATUS_FIRING", "rule": "DiskAlmostFull"}})
        self.assertTrue(r.get("duplicate"), r)
        # TestReceiver sends now through every channel and reports each.
        results = self.call("TestReceiver", {"receiver": "team"})["results"]
        self.assertEqual(len(results), 5)
        self.assertTrue(all(x.get("ok") for x in results), results)
        h.wait_for(lambda: len(self.mail.messages) == emails + 1, 10, "the test email")
        msg = email.message_from_bytes(self.mail.messages[-1]["data"], policy=email.policy.default)
        self.assertIn("VigieTest", str(msg["Subject"]))


if __name__ == "__main__":
    unittest.main(verbosity=2)
