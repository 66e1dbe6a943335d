#!/usr/bin/python3
"""Many agents at once on one control plane, without a thread per stream."""
import json
import os
import signal
import sys
import unittest

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import vigie_harness as h  # noqa: E402

AGENTS = 30


def threads(pid):
    return len(os.listdir(f"/proc/{pid}/task"))


class ManyAgentsTest(unittest.TestCase):
    def test_many_streams_share_a_few_threads(self):
        tmp = h.TempDir()
        procs = []
        pg = h.Postgres(tmp.path)
        try:
            grpc, http = f"127.0.0.1:{h.free_port()}", f"127.0.0.1:{h.free_port()}"
            admin_file, admin = h.write_secret(tmp.path, "admin.token")
            cp = h.Process(tmp.path, "vigie-controlplane",
                           f"grpc_listen: {grpc}\nhttp_listen: {http}\n"
                           f"database_url_from: {{file: {pg.url_file}}}\n"
                           f"bootstrap_admin_token: {{file: {admin_file}}}\n",
                           health_url=f"http://{http}/healthz")
            procs.append(cp)
            idle_threads = threads(cp.proc.pid)
            for i in range(AGENTS):
                sub = os.path.join(tmp.path, f"agent{i}")
                os.mkdir(sub)
                token_file, _ = h.write_secret(sub, "agent.token", h.create_token(
                    grpc, admin, "TOKEN_KIND_AGENT", f"host-{i:02d}"))
                procs.append(h.Process(sub, "vigie-agent",
                                       f"agent_id: host-{i:02d}\ncontrolplane: {grpc}\n"
                                       f"token: {{file: {token_file}}}\n"
                                       f"http_listen: 127.0.0.1:{h.free_port()}\n"
                                       "collect_interval: 1s\n"))

            def all_committed():
                code, out, _ = h.buf("-d", "{}", f"http://{grpc}/vigie.v1.Admin/ListAgents",
                                     token=admin)
                agents = json.loads(out).get("agents", []) if code == 0 else []
                ok = [a for a in agents
                      if a.get("connected") and int(a.get("committedSequence", 0)) >= 2]
                return len(ok) == AGENTS
            h.wait_for(all_committed, 90, f"{AGENTS} agents connected with data committed")
            m = h.parse_metrics(h.http_get(f"http://{http}/metrics"))
            self.assertEqual(m["vigie_controlplane_agent_streams"], AGENTS)
            grown = threads(cp.proc.pid) - idle_threads
            self.assertLess(grown, AGENTS // 2,
                            f"{grown} more threads for {AGENTS} streams: a thread per stream?")
            rows = pg.query("SELECT count(DISTINCT agent_id) FROM series")
            self.assertEqual(int(rows[0][0]), AGENTS)
            for p in procs[1:]:  # SIGTERM every agent at once, then the control plane
                p.proc.send_signal(signal.SIGTERM)
            for p in procs[1:]:
                self.assertEqual(p.proc.wait(timeout=30), 0, p.log()[-2000:])
            self.assertEqual(cp.terminate(), 0, cp.log()[-2000:])
        finally:
            for p in procs:
                p.ensure_stopped()
            pg.stop()
            tmp.cleanup()


if __name__ == "__main__":
    unittest.main(verbosity=2)
