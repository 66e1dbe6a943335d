#!/usr/bin/python3
"""An agent killed (SIGKILL: no goodbye) is reported once as absent through the notifier, and
resolved when it comes back; the clock, not a sample, notices it."""
import json
import os
import sys
import time
import unittest

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import vigie_harness as h  # noqa: E402


class AgentAbsentTest(h.SystemTestCase):
    @classmethod
    def start_system(cls):
        cls.tmp = h.TempDir()
        t = cls.tmp.path
        cls.sink = h.RecordingSink()
        cls.pg = h.Postgres(t)
        nt_token_file, _ = h.write_secret(t, "notifier.token")
        nt_grpc, nt_http = f"127.0.0.1:{h.free_port()}", f"127.0.0.1:{h.free_port()}"
        cls.procs.append(h.Process(t, "vigie-notifier", f"""
grpc_listen: {nt_grpc}
http_listen: {nt_http}
client_token: {{file: {nt_token_file}}}
receivers:
  - name: ops
    webhook_configs: [{{url: "{cls.sink.url}/hook"}}]
""", health_url=f"http://{nt_http}/healthz"))
        admin_file, admin = h.write_secret(t, "admin.token")
        cp_grpc, cp_http = f"127.0.0.1:{h.free_port()}", f"127.0.0.1:{h.free_port()}"
        cls.procs.append(h.Process(t, "vigie-controlplane", f"""
grpc_listen: {cp_grpc}
http_listen: {cp_http}
database_url_from: {{file: {cls.pg.url_file}}}
bootstrap_admin_token: {{file: {admin_file}}}
notifier: {nt_grpc}
notifier_token: {{file: {nt_token_file}}}
heartbeat_interval: 1s
rules:
  - name: AgentDown
    absent_for: 4s
    severity: critical
""", health_url=f"http://{cp_http}/healthz"))
        ag_file, _ = h.write_secret(t, "agent.token", h.create_token(
            cp_grpc, admin, "TOKEN_KIND_AGENT", "web1"))
        ag_http = f"127.0.0.1:{h.free_port()}"
        cls.agent = h.Process(t, "vigie-agent", f"agent_id: web1\ncontrolplane: {cp_grpc}\n"
                              f"token: {{file: {ag_file}}}\nhttp_listen: {ag_http}\n"
                              "collect_interval: 500ms\n",
                              health_url=f"http://{ag_http}/healthz")
        cls.procs.append(cls.agent)

    def alerts(self, status):
        out = []
        for _, _, _, body in self.sink.matching("/hook"):
            for a in json.loads(body)["alerts"]:
                if a["labels"].get("alertname") == "AgentDown" and a["status"] == status:
                    out.append(a)
        return out

    def test_a_killed_agent_is_reported_once_and_resolved_when_back(self):
        h.wait_for(lambda: self.pg.query("SELECT count(*) FROM agents WHERE agent_id = 'web1'")
                   == [["1"]], 30, "the agent registered")
        time.sleep(6)  # alive, heartbeating: past absent_for, nothing fires
        self.assertEqual(self.alerts("firing"), [])
        self.agent.kill()
        firing = h.wait_for(lambda: self.alerts("firing"), 30, "AgentDown firing")[0]
        self.assertEqual(firing["labels"]["agent"], "web1")
        self.assertIn("Agent web1 has sent nothing for 4s", firing["annotations"]["summary"])
        time.sleep(6)  # still absent: no second notification
        self.assertEqual(len(self.alerts("firing")), 1)
        self.agent.start()
        resolved = h.wait_for(lambda: self.alerts("resolved"), 30, "AgentDown resolved")[0]
        self.assertEqual(resolved["fingerprint"], firing["fingerprint"])
        self.assertEqual(len(self.alerts("firing")), 1)


if __name__ == "__main__":
    unittest.main(verbosity=2)
