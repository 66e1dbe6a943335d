#!/usr/bin/python3
"""Remote write out of the control plane into a real Prometheus (remote-write receiver) and a
real VictoriaMetrics: the agent's samples arrive with instance/job labels, and after a
control-plane SIGKILL mid-stream and a receiver outage, each receiver holds exactly the
samples PostgreSQL holds (no gap, nothing lost)."""
import os
import sys
import time
import unittest

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import vigie_harness as h  # noqa: E402


class RemoteWriteTest(h.SystemTestCase):
    @classmethod
    def start_system(cls):
        cls.tmp = h.TempDir()
        t = cls.tmp.path
        cls.pg = h.Postgres(t)
        cls.prom = h.Prometheus(t, {}, extra_args=("--web.enable-remote-write-receiver",))
        cls.vm = h.VictoriaMetrics(t)
        admin_file, cls.admin = h.write_secret(t, "admin.token")
        cls.cp_grpc, cls.cp_http = f"127.0.0.1:{h.free_port()}", f"127.0.0.1:{h.free_port()}"
        cls.cp = h.Process(
            t, "vigie-controlplane",
            f"grpc_listen: {cls.cp_grpc}\nhttp_listen: {cls.cp_http}\n"
            f"database_url_from: {{file: {cls.pg.url_file}}}\n"
            f"bootstrap_admin_token: {{file: {admin_file}}}\n"
            "remote_write:\n"
            f"  - {{name: prom, url: '{cls.prom.url}/api/v1/write', max_samples_per_send: 500}}\n"
            f"  - {{name: vm, url: '{cls.vm.url}/api/v1/write', shards: 3,\n"
            "      backoff: {initial: 200ms, max: 1s}}\n",
            health_url=f"http://{cls.cp_http}/healthz")
        cls.procs.append(cls.cp)
        ag_http = f"127.0.0.1:{h.free_port()}"
        ag_file, _ = h.write_secret(
            t, "agent.token", h.create_token(cls.cp_grpc, cls.admin, "TOKEN_KIND_AGENT", "rw"))
        cls.agent = h.Process(t, "vigie-agent",
                              f"agent_id: rw\ncontrolplane: {cls.cp_grpc}\n"
                              f"token: {{file: {ag_file}}}\nhttp_listen: {ag_http}\n"
                              "collect_interval: 500ms\n",
                              health_url=f"http://{ag_http}/healthz")
        cls.procs.append(cls.agent)

    def stored(self):
        return int(self.pg.query(
            "SELECT count(*) FROM samples x JOIN series s ON s.id = x.series_id "
            "WHERE s.agent_id = 'rw' AND s.name = 'node_load1'")[0][0])

    def count_in(self, receiver):
        r = receiver.api("query", query='count_over_time(node_load1{instance="rw",job="vigie"}[1h])')
        self.assertEqual(r["status"], "success", r)
        return int(float(r["data"]["result"][0]["value"][1])) if r["data"]["result"] else 0

    def pending(self):
        m = h.parse_metrics(h.http_get(f"http://{self.cp_http}/metrics"))
        return {k: v for k, v in m.items() if k.startswith("vigie_remote_storage_pending_batches")}

    def test_receivers_hold_exactly_what_postgresql_holds_across_failures(self):
        # Samples reach both receivers with the agent's instance label.
        h.wait_for(lambda: self.count_in(self.prom) > 0, 60, "node_load1 in Prometheus")
        h.wait_for(lambda: self.count_in(self.vm) > 0, 60, "node_load1 in VictoriaMetrics")
        series = self.prom.api("series", **{"match[]": 'node_filesystem_avail_bytes{instance="rw"}'})
        self.assertTrue(series["data"], series)
        self.assertTrue(all(s["job"] == "vigie" and "mountpoint" in s for s in series["data"]))

        # The control plane dies mid-stream; the agent keeps collecting into its outbox.
        self.cp.kill()
        time.sleep(2)
        # VictoriaMetrics is down while the control plane comes back: its cursor waits.
        self.vm.stop()
        self.cp.start()
        time.sleep(4)
        self.vm.start()

        # Stop the agent, let forwarding drain, then compare counts.
        time.sleep(2)
        self.agent.terminate()
        h.wait_for(lambda: self.pending() and all(v == 0 for v in self.pending().values()), 90,
                   "remote-write backlog drained")
        # (The agent's last batches may commit just after it exits: compare until both settle.)
        h.wait_for(lambda: self.count_in(self.prom) == self.stored(), 30,
                   "Prometheus holding every stored sample")
        stored = self.stored()
        self.assertGreater(stored, 5)  # a few seconds of 500 ms collection, whatever the load
        h.wait_for(lambda: self.count_in(self.vm) == stored, 30,
                   f"VictoriaMetrics holding all {stored} samples")
        time.sleep(2)  # nothing more arrives later, in either
        self.assertEqual(self.count_in(self.prom), stored)
        self.assertEqual(self.count_in(self.vm), stored)
        m = h.parse_metrics(h.http_get(f"http://{self.cp_http}/metrics"))
        self.assertGreater(m['vigie_remote_storage_samples_total{remote_name="vm"}'], 0)
        self.assertEqual(m['vigie_remote_storage_samples_failed_total{remote_name="prom"}'], 0)


if __name__ == "__main__":
    unittest.main(verbosity=2)
