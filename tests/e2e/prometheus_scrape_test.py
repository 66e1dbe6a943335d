#!/usr/bin/python3
"""A real Prometheus scrapes the agent (in place of node_exporter), the control plane and the
notifier: every target is up, and node_exporter-named queries return the agent's host metrics.
"""
import os
import sys
import unittest

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import vigie_harness as h  # noqa: E402


class PrometheusScrapeTest(h.SystemTestCase):
    @classmethod
    def start_system(cls):
        cls.tmp = h.TempDir()
        t = cls.tmp.path
        cls.pg = h.Postgres(t)
        admin_file, admin = h.write_secret(t, "admin.token")
        nt_file, _ = h.write_secret(t, "notifier.token")
        nt_grpc, cls.nt_http = f"127.0.0.1:{h.free_port()}", f"127.0.0.1:{h.free_port()}"
        cls.procs.append(h.Process(t, "vigie-notifier", f"grpc_listen: {nt_grpc}\n"
                                   f"client_token: {{file: {nt_file}}}\n"
                                   f"http_listen: {cls.nt_http}\n",
                                   health_url=f"http://{cls.nt_http}/healthz"))
        cp_grpc, cls.cp_http = f"127.0.0.1:{h.free_port()}", f"127.0.0.1:{h.free_port()}"
        cls.procs.append(h.Process(t, "vigie-controlplane", f"grpc_listen: {cp_grpc}\n"
                                   f"http_listen: {cls.cp_http}\n"
                                   f"database_url_from: {{file: {cls.pg.url_file}}}\n"
                                   f"bootstrap_admin_token: {{file: {admin_file}}}\n"
                                   f"notifier: {nt_grpc}\nnotifier_token: {{file: {nt_file}}}\n",
                                   health_url=f"http://{cls.cp_http}/healthz"))
        cls.ag_http = f"127.0.0.1:{h.free_port()}"
        ag_file, _ = h.write_secret(
            t, "agent.token", h.create_token(cp_grpc, admin, "TOKEN_KIND_AGENT", "scraped"))
        cls.procs.append(h.Process(t, "vigie-agent", f"agent_id: scraped\ncontrolplane: {cp_grpc}\n"
                                   f"token: {{file: {ag_file}}}\n"
                                   f"http_listen: {cls.ag_http}\ncollect_interval: 500ms\n",
                                   health_url=f"http://{cls.ag_http}/healthz"))
        cls.prom = h.Prometheus(t, {"agent": cls.ag_http, "controlplane": cls.cp_http,
                                    "notifier": cls.nt_http})

    def query(self, promql):
        r = self.prom.api("query", query=promql)
        self.assertEqual(r["status"], "success", r)
        return r["data"]["result"]

    def test_every_target_is_scraped_cleanly(self):
        def all_up():
            targets = self.prom.api("targets")["data"]["activeTargets"]
            return len(targets) == 3 and all(t["health"] == "up" for t in targets) and targets
        targets = h.wait_for(all_up, 60, "all three targets up")
        for t in targets:
            self.assertEqual(t["lastError"], "", t)

    def test_node_exporter_queries_work_on_the_agent(self):
        h.wait_for(lambda: self.query('node_load1{job="agent"}'), 60, "node_load1 from the agent")
        for promql in ('node_memory_MemAvailable_bytes{job="agent"}',
                       'node_filesystem_avail_bytes{job="agent",mountpoint="/"}',
                       'rate(node_cpu_seconds_total{job="agent",mode="idle"}[5s]) >= 0',
                       'vigie_agent_connected{job="agent"} == 1'):
            h.wait_for(lambda: self.query(promql), 30, promql)

    def test_component_metrics_are_scraped(self):
        h.wait_for(lambda: self.query("vigie_controlplane_samples_committed_total > 0"), 60,
                   "samples committed, as seen by Prometheus")
        h.wait_for(lambda: self.query('vigie_notifier_queue_depth{job="notifier"}'), 30,
                   "the notifier's queue depth")


if __name__ == "__main__":
    unittest.main(verbosity=2)
