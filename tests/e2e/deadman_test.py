#!/usr/bin/python3
"""The notifier's dead-man's switch: while the control plane (able to reach its database)
calls Heartbeat, nothing fires and the watchdog URL is pinged; when the control plane dies,
VigieControlPlaneDown reaches the receivers and the pings stop; when it comes back, the alert
resolves."""
import json
import os
import sys
import time
import unittest

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import vigie_harness as h  # noqa: E402


class DeadManTest(h.SystemTestCase):
    @classmethod
    def start_system(cls):
        cls.tmp = h.TempDir()
        t = cls.tmp.path
        cls.sink = h.RecordingSink()
        # PostgreSQL first: the dead-man's clock starts with the notifier, and the control plane
        # must be up and heartbeating well within deadman.after even on a busy machine.
        cls.pg = h.Postgres(t)
        nt_token_file, _ = h.write_secret(t, "notifier.token")
        nt_grpc, nt_http = f"127.0.0.1:{h.free_port()}", f"127.0.0.1:{h.free_port()}"
        cls.procs.append(h.Process(t, "vigie-notifier", f"""
grpc_listen: {nt_grpc}
http_listen: {nt_http}
client_token: {{file: {nt_token_file}}}
deadman: {{after: 6s, watchdog_url: "{cls.sink.url}/ping/abc", watchdog_interval: 1s}}
receivers:
  - name: ops
    webhook_configs: [{{url: "{cls.sink.url}/hook"}}]
""", health_url=f"http://{nt_http}/healthz"))
        admin_file, _ = h.write_secret(t, "admin.token")
        cp_grpc, cp_http = f"127.0.0.1:{h.free_port()}", f"127.0.0.1:{h.free_port()}"
        cls.cp = h.Process(t, "vigie-controlplane", f"""
grpc_listen: {cp_grpc}
http_listen: {cp_http}
database_url_from: {{file: {cls.pg.url_file}}}
bootstrap_admin_token: {{file: {admin_file}}}
notifier: {nt_grpc}
notifier_token: {{file: {nt_token_file}}}
notifier_heartbeat_interval: 1s
""", health_url=f"http://{cp_http}/healthz")
        cls.procs.append(cls.cp)

    def alerts(self, status):
        out = []
        for _, _, _, body in self.sink.matching("/hook"):
            for a in json.loads(body)["alerts"]:
                if a["labels"].get("alertname") == "VigieControlPlaneDown" and a["status"] == status:
                    out.append(a)
        return out

    def test_fires_when_the_control_plane_dies_and_resolves_when_it_returns(self):
        # Healthy: pings flow, nothing fires (well past deadman.after).
        h.wait_for(lambda: len(self.sink.matching("/ping/abc")) >= 3, 20, "watchdog pings")
        time.sleep(7)
        self.assertEqual(self.alerts("firing"), [])
        self.cp.kill()
        h.wait_for(lambda: self.alerts("firing"), 20, "VigieControlPlaneDown firing")
        firing = self.alerts("firing")[0]
        self.assertIn("No heartbeat from the control plane", firing["annotations"]["summary"])
        # No pings while it is down.
        time.sleep(1.5)
        pings = len(self.sink.matching("/ping/abc"))
        time.sleep(2.5)
        self.assertEqual(len(self.sink.matching("/ping/abc")), pings)
        self.cp.start()
        h.wait_for(lambda: self.alerts("resolved"), 20, "VigieControlPlaneDown resolved")
        h.wait_for(lambda: len(self.sink.matching("/ping/abc")) > pings, 10, "pings again")
        self.assertEqual(len(self.alerts("firing")), 1)


if __name__ == "__main__":
    unittest.main(verbosity=2)
