#!/usr/bin/python3
"""Two control-plane replicas on one PostgreSQL, an agent on each, one notifier and a webhook
receiver: every transition reaches the receiver exactly once (leased outbox shared by both
dispatchers), an agent killed is one host-down notification (absence evaluated by one replica
at a time), and a silence made through one replica holds an alert the other one stores."""
import json
import os
import sys
import time
import unittest

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import vigie_harness as h  # noqa: E402


class TwoReplicasTest(h.SystemTestCase):
    @classmethod
    def start_system(cls):
        cls.tmp = h.TempDir()
        t = cls.tmp.path
        cls.sink = h.RecordingSink()
        cls.pg = h.Postgres(t)
        notifier, nt_grpc, nt_token_file = h.webhook_notifier(t, cls.sink)
        cls.procs.append(notifier)
        admin_file, cls.admin = h.write_secret(t, "admin.token")
        cls.cps = []
        for i in range(2):
            grpc, http = f"127.0.0.1:{h.free_port()}", f"127.0.0.1:{h.free_port()}"
            cls.procs.append(h.Process(t, "vigie-controlplane", f"""
grpc_listen: {grpc}
http_listen: {http}
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
  - name: AgentDown
    absent_for: 4s
""", health_url=f"http://{http}/healthz", name=f"controlplane{i}"))
            cls.cps.append(grpc)
        cls.textfiles, cls.agents = {}, {}
        for i, agent in enumerate(["a1", "b1"]):
            d = os.path.join(t, f"textfile-{agent}")
            os.mkdir(d)
            cls.textfiles[agent] = d
            cls.write_textfile(agent, 1)
            token_file, _ = h.write_secret(t, f"{agent}.token", h.create_token(
                cls.cps[i], cls.admin, "TOKEN_KIND_AGENT", agent))
            http = f"127.0.0.1:{h.free_port()}"
            cls.agents[agent] = h.Process(t, "vigie-agent", f"""
agent_id: {agent}
controlplane: {cls.cps[i]}
token: {{file: {token_file}}}
http_listen: {http}
collect_interval: 300ms
heartbeat_interval: 1s
textfile_directory: {d}
""", health_url=f"http://{http}/healthz", name=f"agent-{agent}")
            cls.procs.append(cls.agents[agent])

    @classmethod
    def write_textfile(cls, agent, value):
        h.write_textfile(cls.textfiles[agent], value)

    def received(self, alertname):
        return sorted((a["labels"]["agent"], a["status"])
                      for a in h.webhook_alerts(self.sink, alertname))

    def test_each_transition_once_and_one_host_down(self):
        # A silence through replica 0 holds b1's alert, which replica 1 stores.
        code, out, err = h.buf("-d", json.dumps({"silence": {
            "matchers": {"agent": "b1", "alertname": "Hot"},
            "endsAtUnix": int(time.time()) + 3600}}),
            f"http://{self.cps[0]}/vigie.v1.Admin/CreateSilence", token=self.admin)
        self.assertEqual(code, 0, err)
        self.write_textfile("a1", 500)
        self.write_textfile("b1", 500)
        h.wait_for(lambda: self.received("Hot"), 30, "a1's firing")
        time.sleep(7)  # several dispatch passes and reconcile ticks on both replicas
        self.assertEqual(self.received("Hot"), [("a1", "firing")], "once, and b1 held")
        self.write_textfile("a1", 1)
        h.wait_for(lambda: len(self.received("Hot")) == 2, 30, "a1's resolve")

        # b1 killed: one AgentDown, though both replicas run the absence timer.
        self.agents["b1"].kill()
        h.wait_for(lambda: self.received("AgentDown"), 30, "b1 reported absent")
        time.sleep(7)
        self.assertEqual(self.received("AgentDown"), [("b1", "firing")])
        self.assertEqual(self.received("Hot"), [("a1", "firing"), ("a1", "resolved")])


if __name__ == "__main__":
    unittest.main()
