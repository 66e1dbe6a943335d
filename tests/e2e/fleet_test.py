#!/usr/bin/python3
"""The control plane under a fleet (vigie-loadgen: 40 simulated agents, each a real stream)
while PostgreSQL is stopped and started again: acknowledgements stop, memory stays bounded,
the control plane reconnects by itself, ingest resumes, and every stored batch is stored once
with each agent's committed sequence matching its data."""
import json
import os
import subprocess
import sys
import time
import unittest

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import vigie_harness as h  # noqa: E402

AGENTS = 40


class FleetTest(h.SystemTestCase):
    @classmethod
    def start_system(cls):
        cls.tmp = h.TempDir()
        t = cls.tmp.path
        cls.pg = h.Postgres(t)
        admin_file, admin = h.write_secret(t, "admin.token")
        cls.cp_grpc, cls.cp_http = f"127.0.0.1:{h.free_port()}", f"127.0.0.1:{h.free_port()}"
        cls.cp = h.Process(t, "vigie-controlplane",
                           f"grpc_listen: {cls.cp_grpc}\nhttp_listen: {cls.cp_http}\n"
                           f"database_url_from: {{file: {cls.pg.url_file}}}\n"
                           f"bootstrap_admin_token: {{file: {admin_file}}}\n"
                           "storage_workers: 2\nmax_inflight_bytes: 8388608\n",
                           health_url=f"http://{cls.cp_http}/healthz")
        cls.procs.append(cls.cp)
        cls.token_file, _ = h.write_secret(
            t, "enrol.token", h.create_token(cls.cp_grpc, admin, "TOKEN_KIND_ENROLMENT"))

    def metrics(self):
        return h.parse_metrics(h.http_get(f"http://{self.cp_http}/metrics"))

    def rss_mib(self):
        with open(f"/proc/{self.cp.proc.pid}/status") as f:
            return next(int(l.split()[1]) for l in f if l.startswith("VmRSS:")) / 1024

    def test_postgresql_restart_under_load(self):
        lg = subprocess.Popen(
            [os.path.join(h.BIN, "vigie-loadgen"), f"--target={self.cp_grpc}",
             f"--agents={AGENTS}", "--series=300", "--interval=100ms", "--window=8",
             "--warmup=0s", "--duration=40s", f"--token_file={self.token_file}",
             "--reconnect_every=7s"],
            stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True)
        try:
            h.wait_for(lambda: self.metrics().get("vigie_controlplane_samples_committed_total", 0)
                       > 100000, 60, "ingest under way")
            rss_before = self.rss_mib()
            self.pg.stop_server()
            time.sleep(1)
            committed = self.metrics()["vigie_controlplane_samples_committed_total"]
            peak = rss_before
            for _ in range(8):  # 8 s without a database, the fleet still sending
                time.sleep(1)
                peak = max(peak, self.rss_mib())
            # Nothing committed while the database is down.
            self.assertEqual(self.metrics()["vigie_controlplane_samples_committed_total"],
                             committed)
            # In flight stays within max_inflight_bytes (8 MiB, memory about 3x): no growth
            # with the agents' offered load.
            self.assertLess(peak - rss_before, 64, f"RSS {rss_before:.0f} -> {peak:.0f} MiB")
            self.pg.start_server()
            # The control plane reconnects on its own and ingest resumes.
            h.wait_for(lambda: self.metrics()["vigie_controlplane_samples_committed_total"]
                       > committed + 50000, 60, "ingest resumed after PostgreSQL came back")
            self.assertGreater(self.metrics()["vigie_controlplane_ingest_errors_total"], 0)
        finally:
            out, _ = lg.communicate(timeout=120)
        result = json.loads(out.strip().splitlines()[-1])
        self.assertGreater(result["acked_samples"], 0)
        self.assertEqual(result["rejects"], 0)
        # Every batch once, every agent's committed sequence covering exactly its data.
        dup = self.pg.query("SELECT count(*) FROM (SELECT agent_id, batch_seq, first_pos "
                            "FROM sample_blocks GROUP BY 1, 2, 3 HAVING count(*) > 1) d")
        self.assertEqual(dup[0][0], "0")
        rows = self.pg.query(
            "SELECT a.agent_id, a.committed_sequence, max(b.batch_seq) FROM agents a "
            "JOIN sample_blocks b USING (agent_id) GROUP BY 1, 2")
        self.assertEqual(len(rows), AGENTS)
        for agent, committed_seq, max_seq in rows:
            self.assertEqual(committed_seq, max_seq, agent)
        # Each stored batch is whole: 300 samples.
        partial = self.pg.query("SELECT count(*) FROM (SELECT agent_id, batch_seq FROM "
                                "sample_blocks GROUP BY 1, 2 HAVING sum(cardinality(vals)) "
                                "<> 300) p")
        self.assertEqual(partial[0][0], "0")


if __name__ == "__main__":
    unittest.main(verbosity=2)
