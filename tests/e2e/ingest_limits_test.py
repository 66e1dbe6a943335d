#!/usr/bin/python3
"""End to end: the control plane's memory stays bounded whatever agents send or PostgreSQL does.

Real PostgreSQL, the real control plane with small limits (max_inflight_bytes, max_streams,
hello_timeout), two real agents and a raw gRPC client: PostgreSQL is frozen (SIGSTOP) under
load and thawed, a stream that never says Hello is ended, a stream beyond max_streams is
refused at connect.
"""
import json
import os
import signal
import subprocess
import sys
import threading
import time
import unittest

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import vigie_harness as h  # noqa: E402

BUDGET = 65536
MAX_MESSAGE = 16384


class IngestLimitsTest(h.SystemTestCase):
    @classmethod
    def start_system(cls):
        cls.tmp = h.TempDir()
        t = cls.tmp.path
        cls.pg = h.Postgres(t)
        cls.admin_file, cls.admin_token = h.write_secret(t, "admin.token")
        cls.cp_grpc, cls.cp_http = f"127.0.0.1:{h.free_port()}", f"127.0.0.1:{h.free_port()}"
        cls.controlplane = h.Process(t, "vigie-controlplane", f"""
grpc_listen: {cls.cp_grpc}
http_listen: {cls.cp_http}
database_url_from: {{file: {cls.pg.url_file}}}
bootstrap_admin_token: {{file: {cls.admin_file}}}
heartbeat_interval: 1s
max_message_bytes: {MAX_MESSAGE}
max_inflight_bytes: {BUDGET}
max_inflight_per_stream: 64
max_streams: 3
hello_timeout: 1s
""", health_url=f"http://{cls.cp_http}/healthz")
        cls.procs.append(cls.controlplane)
        cls.agents = []
        for i in range(2):
            agent_id = f"limits-{i}"
            token_file, _ = h.write_secret(t, f"agent{i}.token", h.create_token(
                cls.cp_grpc, cls.admin_token, "TOKEN_KIND_AGENT", agent_id))
            http = f"127.0.0.1:{h.free_port()}"
            cls.agents.append((agent_id, http, h.Process(t, "vigie-agent", f"""
agent_id: {agent_id}
token: {{file: {token_file}}}
controlplane: {cls.cp_grpc}
http_listen: {http}
collect_interval: 100ms
reconnect_backoff: {{initial: 100ms, max: 500ms}}
""", health_url=f"http://{http}/healthz", name=f"agent{i}")))
        cls.procs.extend(p for _, _, p in cls.agents)
        cls.raw_token = h.create_token(cls.cp_grpc, cls.admin_token, "TOKEN_KIND_AGENT", "raw")

    def cp_metrics(self):
        return h.parse_metrics(h.http_get(f"http://{self.cp_http}/metrics"))

    def committed(self, agent_id):
        code, out, err = h.buf("-d", json.dumps({"agentId": agent_id}),
                               f"http://{self.cp_grpc}/vigie.v1.Admin/GetAgent",
                               token=self.admin_token)
        self.assertEqual(code, 0, err)
        return int(json.loads(out).get("committedSequence", 0))

    def postgres_pids(self):
        with open(os.path.join(self.pg.dir, "data", "postmaster.pid")) as f:
            main = int(f.readline())
        children = subprocess.run(["pgrep", "-P", str(main)], capture_output=True,
                                  text=True).stdout.split()
        return [main] + [int(c) for c in children]

    def raw_stream(self, send_hello):
        """A raw gRPC stream (Debian's python3-grpcio) that sends nothing or only Hello."""
        import grpc
        channel = grpc.insecure_channel(self.cp_grpc)
        connect = channel.stream_stream("/vigie.v1.AgentGateway/Connect")
        stop = threading.Event()

        def requests():
            if send_hello:
                # AgentMessage{hello{agent_id: "raw"}}, hand-encoded.
                yield bytes([0x0a, 0x05, 0x0a, 0x03]) + b"raw"
            stop.wait(30)
        call = connect(requests(), metadata=[("authorization", f"Bearer {self.raw_token}")])
        result = {}

        def read():
            try:
                for _ in call:
                    pass
                result["code"] = grpc.StatusCode.OK
            except grpc.RpcError as e:
                result["code"] = e.code()
        reader = threading.Thread(target=read, daemon=True)
        reader.start()
        return channel, stop, reader, result

    # ------------------------------------------------------------------------------------

    def test_1_a_stream_without_hello_is_ended(self):
        import grpc
        channel, stop, reader, result = self.raw_stream(send_hello=False)
        reader.join(10)
        self.assertEqual(result.get("code"), grpc.StatusCode.DEADLINE_EXCEEDED)
        self.assertGreaterEqual(self.cp_metrics()["vigie_controlplane_hello_timeouts_total"], 1)
        stop.set()
        channel.close()

    def test_2_streams_beyond_max_streams_are_refused_at_connect(self):
        import grpc
        h.wait_for(lambda: self.committed("limits-1") > 0, 20, "both agents streaming")
        first = self.raw_stream(send_hello=True)  # the third stream: admitted
        time.sleep(0.5)
        channel, stop, reader, result = self.raw_stream(send_hello=True)  # the fourth
        reader.join(10)
        self.assertEqual(result.get("code"), grpc.StatusCode.RESOURCE_EXHAUSTED)
        self.assertGreaterEqual(self.cp_metrics()["vigie_controlplane_streams_refused_total"], 1)
        for ch, st, _, _ in (first, (channel, stop, reader, result)):
            st.set()
            ch.close()

    def test_3_frozen_postgres_holds_agents_back_within_the_budget(self):
        before = {a: self.committed(a) for a, _, _ in self.agents}
        pids = self.postgres_pids()
        for pid in pids:
            os.kill(pid, signal.SIGSTOP)
        try:
            peak = 0
            for _ in range(30):  # 3 s of agents collecting every 100 ms
                peak = max(peak, self.cp_metrics()["vigie_controlplane_inflight_bytes"])
                time.sleep(0.1)
            m = self.cp_metrics()
            # Bounded: the budget plus at most one message per stream read past it.
            self.assertLessEqual(peak, BUDGET + 3 * MAX_MESSAGE)
            self.assertGreater(peak, 0)
            self.assertGreaterEqual(m["vigie_controlplane_budget_pauses_total"], 1)
            for _, http, _ in self.agents:
                am = h.parse_metrics(h.http_get(f"http://{http}/metrics"))
                self.assertGreater(am["vigie_agent_pending_messages"], 0, "held back")
        finally:
            for pid in pids:
                os.kill(pid, signal.SIGCONT)
        # Everything is stored once PostgreSQL is back, exactly once.
        for agent_id, http, _ in self.agents:
            last = int(h.parse_metrics(h.http_get(f"http://{http}/metrics"))[
                "vigie_agent_last_sequence"])
            h.wait_for(lambda: self.committed(agent_id) >= last, 60,
                       f"{agent_id} catching up to {last}")
            self.assertGreater(self.committed(agent_id), before[agent_id])
            dup = self.pg.query(
                "SELECT s.ts FROM samples s JOIN series r ON r.id = s.series_id "
                f"WHERE r.agent_id = '{agent_id}' AND r.name = 'node_load1' "
                "GROUP BY s.ts HAVING count(*) > 1")
            self.assertEqual(dup, [])


if __name__ == "__main__":
    unittest.main(verbosity=2)
