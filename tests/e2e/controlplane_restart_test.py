#!/usr/bin/python3
"""The control plane restarted mid-alert, with a real agent, PostgreSQL, notifier and webhook
receiver: a pending alert keeps its `for` clock across a graceful restart (it fires `for` after
it started, not after the restart), and a firing alert survives a crash (SIGKILL) with no
duplicate firing and exactly one resolve at the receiver."""
import json
import os
import sys
import time
import unittest

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import vigie_harness as h  # noqa: E402

AGENT_ID = "web1"
FOR_SECONDS = 8


class ControlPlaneRestartTest(h.SystemTestCase):
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
        cls.cp_grpc, cp_http = f"127.0.0.1:{h.free_port()}", f"127.0.0.1:{h.free_port()}"
        cls.cp = h.Process(t, "vigie-controlplane", f"""
grpc_listen: {cls.cp_grpc}
http_listen: {cp_http}
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
    for: {FOR_SECONDS}s
""", health_url=f"http://{cp_http}/healthz")
        cls.procs.append(cls.cp)
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
reconnect_backoff: {{initial: 100ms, max: 500ms}}
""", health_url=f"http://{ag_http}/healthz"))

    @classmethod
    def write_textfile(cls, value):
        h.write_textfile(cls.textfile, value)

    def alerts(self, state):
        code, out, err = h.buf("-d", json.dumps({"state": state}),
                               f"http://{self.cp_grpc}/vigie.v1.Admin/ListAlerts",
                               token=self.admin)
        self.assertEqual(code, 0, err)
        return [a for a in json.loads(out or "{}").get("alerts", []) if a["rule"] == "Hot"]

    def hot(self):
        return h.webhook_alerts(self.sink, "Hot")

    def test_restart_while_pending_then_crash_while_firing(self):
        self.write_textfile(500)
        pending = h.wait_for(lambda: self.alerts("ALERT_STATE_PENDING"), 30, "pending")[0]
        since = int(pending["activeSinceUnix"])
        # Restarted gracefully while pending: the `for` clock goes on from `since`.
        self.assertEqual(self.cp.terminate(), 0)
        self.cp.start()
        self.assertEqual(int(self.alerts("ALERT_STATE_PENDING")[0]["activeSinceUnix"]), since,
                         "pending since the same time after the restart")
        fired = h.wait_for(self.hot, 60, "the firing")
        self.assertEqual(len(fired), 1)
        starts = fired[0]["startsAt"]
        self.assertTrue(starts.startswith(time.strftime("%Y-%m-%dT%H:%M:%S",
                                                        time.gmtime(since))), (starts, since))

        # Crashed while firing: no second firing, and the resolve arrives once.
        self.cp.kill()
        self.cp.start()
        time.sleep(6)
        self.assertEqual([a["status"] for a in self.hot()], ["firing"], "no duplicate firing")
        self.write_textfile(1)
        h.wait_for(lambda: [a for a in self.hot() if a["status"] == "resolved"], 30, "resolve")
        time.sleep(3)
        self.assertEqual([a["status"] for a in self.hot()], ["firing", "resolved"])
        self.assertEqual(self.alerts("ALERT_STATE_FIRING"), [])


if __name__ == "__main__":
    unittest.main()
