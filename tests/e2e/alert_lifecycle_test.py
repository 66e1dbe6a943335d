#!/usr/bin/python3
"""Silences and acknowledgements as an operator uses them, through the Admin API with a
reflection client (buf curl), a real agent, PostgreSQL, the notifier and a webhook receiver:
a silenced alert reaches nobody until the silence is expired, then arrives once; an
acknowledgement is notified, expires and the alert is notified again; the resolve arrives; bad
requests are refused naming the field; every change is in the audit log."""
import json
import os
import sys
import time
import unittest

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import vigie_harness as h  # noqa: E402

AGENT_ID = "web1"


class AlertLifecycleTest(h.SystemTestCase):
    @classmethod
    def start_system(cls):
        cls.tmp = h.TempDir()
        t = cls.tmp.path
        cls.sink = h.RecordingSink()
        cls.pg = h.Postgres(t)
        cls.textfile = os.path.join(t, "textfile")
        os.mkdir(cls.textfile)
        cls.write_textfile(1)
        notifier, nt_grpc, nt_token_file = h.webhook_notifier(t, cls.sink)
        cls.procs.append(notifier)
        admin_file, cls.admin = h.write_secret(t, "admin.token")
        cls.cp_grpc, cls.cp_http = f"127.0.0.1:{h.free_port()}", f"127.0.0.1:{h.free_port()}"
        cls.procs.append(h.Process(t, "vigie-controlplane", f"""
grpc_listen: {cls.cp_grpc}
http_listen: {cls.cp_http}
database_url_from: {{file: {cls.pg.url_file}}}
bootstrap_admin_token: {{file: {admin_file}}}
notifier: {nt_grpc}
notifier_token: {{file: {nt_token_file}}}
heartbeat_interval: 1s
notify_backoff: {{initial: 200ms, max: 1s}}
rules:
  - name: Hot
    metric: demo_value
    op: ">"
    threshold: 100
    severity: critical
""", health_url=f"http://{cls.cp_http}/healthz"))
        cls.viewer = h.create_token(cls.cp_grpc, cls.admin, "TOKEN_KIND_VIEWER")
        ag_file, _ = h.write_secret(t, "agent.token", h.create_token(
            cls.cp_grpc, cls.admin, "TOKEN_KIND_AGENT", AGENT_ID))
        ag_http = f"127.0.0.1:{h.free_port()}"
        cls.procs.append(h.Process(t, "vigie-agent", f"""
agent_id: {AGENT_ID}
controlplane: {cls.cp_grpc}
token: {{file: {ag_file}}}
http_listen: {ag_http}
collect_interval: 300ms
heartbeat_interval: 1s
textfile_directory: {cls.textfile}
""", health_url=f"http://{ag_http}/healthz"))

    @classmethod
    def write_textfile(cls, value):
        h.write_textfile(cls.textfile, value)

    def admin_call(self, method, body, token=None, expect_ok=True):
        code, out, err = h.buf("-d", json.dumps(body),
                               f"http://{self.cp_grpc}/vigie.v1.Admin/{method}",
                               token=token or self.admin)
        if expect_ok:
            self.assertEqual(code, 0, f"{method}: {err}")
            return json.loads(out or "{}")
        self.assertNotEqual(code, 0, f"{method} should fail: {out}")
        return json.loads(err)

    def hot(self):
        return h.webhook_alerts(self.sink, "Hot")

    def test_silence_acknowledge_expire_resolve_and_audit(self):
        # A maintenance silence on the agent, then the value crosses the threshold.
        silence = self.admin_call("CreateSilence", {"silence": {
            "matchers": {"agent": AGENT_ID}, "endsAtUnix": int(time.time()) + 3600,
            "createdBy": "bob", "comment": "disk swap"}})
        self.assertTrue(silence["active"])
        self.write_textfile(500)
        alert = h.wait_for(lambda: [a for a in self.admin_call("ListAlerts", {}).get(
            "alerts", []) if a["rule"] == "Hot" and a["state"] == "ALERT_STATE_FIRING"],
            30, "the alert firing")[0]
        self.assertEqual(alert["suppressedBy"], "silence " + silence["id"])
        time.sleep(7)  # more than a reconcile tick
        self.assertEqual(self.hot(), [], "silenced: nothing reaches the receiver")

        # Expired: the firing arrives, once.
        self.admin_call("DeleteSilence", {"id": silence["id"]})
        err = self.admin_call("DeleteSilence", {"id": silence["id"]}, expect_ok=False)
        self.assertEqual(err["code"], "failed_precondition", err)
        h.wait_for(self.hot, 30, "the held firing")
        time.sleep(6)
        self.assertEqual([a["status"] for a in self.hot()], ["firing"])

        # Acknowledged for 3s: one notification says who; then it lapses and is sent again.
        ident = {"rule": "Hot", "fingerprint": alert["fingerprint"]}
        acked = self.admin_call("AcknowledgeAlert", dict(ident, by="alice", comment="on it",
                                                         expiresIn="3s"))
        self.assertEqual(acked["acknowledgedBy"], "alice")
        h.wait_for(lambda: self.hot()[1:], 30, "the acknowledgement")
        self.assertEqual(self.hot()[1].get("acknowledgedBy"), "alice")
        self.assertEqual(self.hot()[1].get("acknowledgementComment"), "on it")
        h.wait_for(lambda: self.hot()[2:], 30, "the notification after it expired")
        self.assertNotIn("acknowledgedBy", self.hot()[2])
        got = self.admin_call("GetAlert", ident, token=self.viewer)
        self.assertEqual(got["alert"].get("acknowledgedBy", ""), "")
        self.assertEqual([e["status"] for e in got["history"]],
                         ["acknowledgement expired", "acknowledged", "firing"])

        # The metrics say the same: one critical alert firing, none held or acknowledged.
        m = h.parse_metrics(h.http_get(f"http://{self.cp_http}/metrics"))
        self.assertEqual(m['vigie_controlplane_alerts{severity="critical",state="firing"}'], 1)
        self.assertEqual(m['vigie_controlplane_alerts{severity="critical",state="held"}'], 0)
        self.assertGreaterEqual(m["vigie_controlplane_notifications_released_total"], 2)
        self.assertGreater(m["vigie_controlplane_samples_evaluated_total"], 0)
        self.assertEqual(m["vigie_controlplane_rule_state_alerts"], 1)

        # Resolved: the resolve arrives; a resolved alert cannot be acknowledged.
        self.write_textfile(1)
        h.wait_for(lambda: [a for a in self.hot() if a["status"] == "resolved"], 30,
                   "the resolve")
        self.assertEqual([a["status"] for a in self.hot()], ["firing"] * 3 + ["resolved"])
        err = self.admin_call("AcknowledgeAlert", ident, expect_ok=False)
        self.assertEqual(err["code"], "failed_precondition", err)

        # The audit log: who did what, newest first.
        log = self.admin_call("ListAuditLog", {}, token=self.viewer)["entries"]
        actions = [e["action"] for e in log]
        for a in ["AcknowledgementExpired", "AcknowledgeAlert", "ExpireSilence", "CreateSilence",
                  "CreateToken"]:
            self.assertIn(a, actions)
        self.assertLess(actions.index("AcknowledgeAlert"), actions.index("CreateSilence"))
        create = [e for e in log if e["action"] == "CreateSilence"][0]
        self.assertEqual(create["actor"], "bootstrap")
        self.assertIn("disk swap", create["detail"])
        self.assertNotIn(self.admin, json.dumps(log), "no secret in the audit log")

    def test_bad_requests_are_refused_naming_the_field(self):
        now = int(time.time())
        cases = [
            ({"silence": {"endsAtUnix": now + 60}}, "silence.matchers"),
            ({"silence": {"matchers": {"agent": ""}, "endsAtUnix": now + 60}}, "non-empty"),
            ({"silence": {"matchers": {"agent": "x"}, "endsAtUnix": 4102444800}},
             "silence.ends_at_unix"),
            ({"silence": {"matchers": {"agent": "x"}, "endsAtUnix": 1}}, "silence.ends_at_unix"),
            ({"silence": {"matchers": {"agent": "x"}, "endsAtUnix": now + 60,
                          "comment": "x" * 5000}}, "silence.comment"),
            ({"silence": {"matchers": {"agent": "x"}, "endsAtUnix": now + 60,
                          "repeatEvery": "often"}}, "silence.repeat_every"),
            ({"silence": {"id": "mine", "matchers": {"agent": "x"}, "endsAtUnix": now + 60}},
             "silence.id"),
        ]
        for body, field in cases:
            err = self.admin_call("CreateSilence", body, expect_ok=False)
            self.assertEqual(err["code"], "invalid_argument", (body, err))
            self.assertIn(field, err["message"], body)
        err = self.admin_call("AcknowledgeAlert", {"rule": "Hot", "fingerprint": "0" * 16},
                              expect_ok=False)
        self.assertEqual(err["code"], "not_found", err)
        err = self.admin_call("AcknowledgeAlert", {"rule": "Hot", "fingerprint": "x",
                                                   "expiresIn": "-1s"}, expect_ok=False)
        self.assertIn("expires_in", err["message"])
        err = self.admin_call("ListAlerts", {"pageSize": 5000}, expect_ok=False)
        self.assertIn("page_size", err["message"])
        err = self.admin_call("DeleteSilence", {"id": "nope"}, expect_ok=False)
        self.assertEqual(err["code"], "not_found", err)
        # Agents: a connected one cannot be deleted; filters and pages.
        err = self.admin_call("DeleteAgent", {"agentId": AGENT_ID}, expect_ok=False)
        self.assertEqual(err["code"], "failed_precondition", err)
        err = self.admin_call("DeleteAgent", {"agentId": "nobody"}, expect_ok=False)
        self.assertEqual(err["code"], "not_found", err)
        err = self.admin_call("ListAgents", {"pageSize": 5000}, expect_ok=False)
        self.assertIn("page_size", err["message"])
        got = self.admin_call("ListAgents", {"connected": True, "pageSize": 1})
        self.assertEqual([a["agentId"] for a in got["agents"]], [AGENT_ID])
        self.assertEqual(self.admin_call("ListAgents", {"connected": False}), {})
        # A viewer reads but does not change.
        err = self.admin_call("CreateSilence", {"silence": {
            "matchers": {"agent": "x"}, "endsAtUnix": now + 60}}, token=self.viewer,
            expect_ok=False)
        self.assertEqual(err["code"], "permission_denied", err)
        self.admin_call("ListSilences", {"includeExpired": True}, token=self.viewer)


if __name__ == "__main__":
    unittest.main()
