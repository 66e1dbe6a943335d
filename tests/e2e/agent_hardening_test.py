#!/usr/bin/python3
"""End to end: one bad input never stalls an agent, and nothing is lost across restarts.

Real PostgreSQL, the real control plane (configured with limits far below the agent's
defaults) and agent, hostile textfiles, a raw gRPC client that sends what no Vigie agent would
(invalid UTF-8, an oversized batch, a sequence beyond bigint), and SIGKILL of an agent with its
spool on while the control plane is down.
"""
import json
import os
import queue
import signal
import subprocess
import sys
import threading
import time
import unittest

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import vigie_harness as h  # noqa: E402

AGENT_ID = "hardening-agent"
RAW_ID = "raw-agent"


def load_contract(tmp):
    """Python classes for the v1 contract, generated with Debian's protoc."""
    out = os.path.join(tmp, "py")
    os.makedirs(out, exist_ok=True)
    subprocess.run(["protoc", "-I", os.path.join(h.ROOT, "proto"), f"--python_out={out}",
                    "vigie/v1/agent.proto"], check=True)
    sys.path.insert(0, out)
    from vigie.v1 import agent_pb2  # noqa: E402
    return agent_pb2


class AgentHardeningTest(h.SystemTestCase):
    @classmethod
    def start_system(cls):
        cls.tmp = h.TempDir()
        t = cls.tmp.path
        cls.pb = load_contract(t)
        cls.pg = h.Postgres(t)
        cls.admin_file, cls.admin_token = h.write_secret(t, "admin.token")
        cls.cp_grpc, cls.cp_http = f"127.0.0.1:{h.free_port()}", f"127.0.0.1:{h.free_port()}"
        # Far below the agent's defaults (5000 samples, 1 MiB, 32 labels).
        cls.controlplane = h.Process(t, "vigie-controlplane", f"""
grpc_listen: {cls.cp_grpc}
http_listen: {cls.cp_http}
database_url_from: {{file: {cls.pg.url_file}}}
bootstrap_admin_token: {{file: {cls.admin_file}}}
heartbeat_interval: 1s
max_samples_per_batch: 40
max_message_bytes: 16384
max_labels_per_sample: 8
""", health_url=f"http://{cls.cp_http}/healthz")
        cls.procs.append(cls.controlplane)

        cls.textfile = os.path.join(t, "textfile")
        os.mkdir(cls.textfile)
        cls.write_hostile_textfiles()
        cls.token_file, _ = h.write_secret(
            t, "agent.token", h.create_token(cls.cp_grpc, cls.admin_token, "TOKEN_KIND_AGENT",
                                             AGENT_ID))
        cls.raw_token = h.create_token(cls.cp_grpc, cls.admin_token, "TOKEN_KIND_AGENT", RAW_ID)
        cls.spool = os.path.join(t, "spool")
        cls.ag_http = f"127.0.0.1:{h.free_port()}"
        cls.agent = h.Process(t, "vigie-agent", f"""
agent_id: {AGENT_ID}
token: {{file: {cls.token_file}}}
controlplane: {cls.cp_grpc}
http_listen: {cls.ag_http}
collect_interval: 200ms
heartbeat_interval: 1s
textfile_directory: {cls.textfile}
spool: {{directory: {cls.spool}, max_bytes: 67108864}}
reconnect_backoff: {{initial: 100ms, max: 500ms}}
""", health_url=f"http://{cls.ag_http}/healthz")
        cls.procs.append(cls.agent)

    @classmethod
    def write_hostile_textfiles(cls):
        d = cls.textfile
        with open(os.path.join(d, "good.prom"), "w") as f:
            f.write("hardening_good 1\n")
        # The line that used to stop everything from an agent reaching PostgreSQL.
        with open(os.path.join(d, "utf8.prom"), "wb") as f:
            f.write(b'bad_metric{l="\xc3\x28"} 1\n')
        os.mkfifo(os.path.join(d, "fifo.prom"))
        os.symlink("/dev/zero", os.path.join(d, "zero.prom"))
        with open(os.path.join(d, "huge.prom"), "w") as f:
            f.truncate(100 << 20)  # 100 MB (sparse)
        with open(os.path.join(d, "many.prom"), "w") as f:
            f.writelines(f's{{i="{i}"}} 1\n' for i in range(100000))
        with open(os.path.join(d, "stamped.prom"), "w") as f:
            f.write("stamped_metric 1 1700000000000\n")

    def admin(self, method, body):
        code, out, err = h.buf("-d", json.dumps(body),
                               f"http://{self.cp_grpc}/vigie.v1.Admin/{method}",
                               token=self.admin_token)
        self.assertEqual(code, 0, err)
        return json.loads(out)

    def committed(self, agent_id):
        return int(self.admin("GetAgent", {"agentId": agent_id}).get("committedSequence", 0))

    def stored(self, agent_id, metric):
        out = self.admin("QuerySamples", {"agentId": agent_id, "metric": metric, "range": "1h"})
        return [s for series in out.get("series", []) for s in series.get("samples", [])]

    def cp_metrics(self):
        return h.parse_metrics(h.http_get(f"http://{self.cp_http}/metrics"))

    # ------------------------------------------------------------------------------------

    def test_1_hostile_textfiles_never_stall_the_agent(self):
        first = h.wait_for(lambda: self.committed(AGENT_ID), 20, "a first commit")
        time.sleep(2)
        self.assertGreater(self.committed(AGENT_ID), first + 3,
                           "the committed sequence keeps advancing")
        self.assertTrue(self.stored(AGENT_ID, "hardening_good"), "the good textfile is stored")
        self.assertTrue(self.stored(AGENT_ID, "node_load1"), "other collectors are stored")
        self.assertFalse(self.stored(AGENT_ID, "bad_metric"))
        m = h.parse_metrics(h.http_get(f"http://{self.ag_http}/metrics"))
        refused = {k: v for k, v in m.items()
                   if k.startswith("vigie_agent_textfile_files_refused_total")}
        for reason in ("not_regular", "too_large", "timestamp", "invalid_sample"):
            key = f'vigie_agent_textfile_files_refused_total{{reason="{reason}"}}'
            self.assertGreaterEqual(refused.get(key, 0), 1, f"{reason}: {refused}")
        self.assertEqual(m.get('node_scrape_collector_success{collector="textfile"}'), 1)
        self.assertEqual(m.get("node_textfile_scrape_error"), 1)
        # The agent kept within the control plane's limits: nothing was refused or broken.
        cp = self.cp_metrics()
        refused_cp = sum(v for k, v in cp.items()
                         if k.startswith("vigie_controlplane_agent_messages_refused_total"))
        self.assertEqual(refused_cp, 0, "the agent obeyed the limits in Welcome")
        self.assertEqual(sum(v for k, v in cp.items()
                             if k.startswith("vigie_controlplane_agent_streams_rejected_total")), 0)
        # Logged once per file, not once per round (~10 rounds by now).
        self.assertEqual(self.agent.log().count("utf8.prom"), 1, self.agent.log()[-3000:])

    def test_2_a_refused_message_is_rejected_by_sequence_and_the_stream_goes_on(self):
        pb = self.pb
        now_ms = int(time.time() * 1000)
        outgoing = queue.Queue()

        def message(**kw):
            return pb.AgentMessage(**kw).SerializeToString()

        def batch(seq, name, labels=None, samples=1):
            b = pb.MetricBatch(sequence=seq)
            for i in range(samples):
                b.samples.add(name=name, value=i, timestamp_ms=now_ms, labels=labels or {})
            return message(metrics=b)

        bad = batch(2, "raw_bad", {"l": "@@"}).replace(b"@@", b"\xc3\x28")
        import grpc  # Debian's python3-grpcio
        channel = grpc.insecure_channel(self.cp_grpc)
        connect = channel.stream_stream("/vigie.v1.AgentGateway/Connect",
                                        response_deserializer=pb.ControlMessage.FromString)
        responses = connect(iter(outgoing.get, None),
                            metadata=[("authorization", f"Bearer {self.raw_token}")])
        received = []
        reader = threading.Thread(target=lambda: received.extend(responses), daemon=True)
        reader.start()
        outgoing.put(message(hello=pb.Hello(agent_id=RAW_ID, hostname="raw")))
        h.wait_for(lambda: any(r.HasField("welcome") for r in received), 10, "Welcome")
        welcome = received[0].welcome
        self.assertEqual(welcome.max_samples_per_batch, 40)
        self.assertEqual(welcome.max_message_bytes, 16384)
        self.assertEqual(welcome.max_labels_per_sample, 8)
        outgoing.put(batch(1, "raw_ok"))
        outgoing.put(bad)                                        # invalid UTF-8
        outgoing.put(batch(3, "raw_big", samples=2000))          # over max_message_bytes
        outgoing.put(batch(4, "raw_labels", {f"l{i}": "v" for i in range(9)}))
        outgoing.put(message(metrics=pb.MetricBatch(sequence=5, samples=[
            pb.Sample(name="raw_1970", value=1, timestamp_ms=1000)])))
        outgoing.put(message(metrics=pb.MetricBatch(sequence=6, samples=[
            pb.Sample(name="raw_nan", value=float("nan"), timestamp_ms=now_ms)])))
        outgoing.put(batch(7, "raw_after"))
        outgoing.put(batch(1 << 63, "raw_range"))
        outgoing.put(batch((1 << 63) + 1, "raw_never"))

        def rejects():
            return {r.reject.sequence: r.reject.reason for r in received if r.HasField("reject")}
        got = h.wait_for(lambda: len(rejects()) >= 5 and rejects(), 15, "five Rejects")
        self.assertIn('labels["l"]: value "\\xc3(" is not valid UTF-8', got[2])
        self.assertIn("exceed the limit of 16384", got[3])
        self.assertIn("9 labels exceed the limit of 8", got[4])
        self.assertIn("timestamp_ms: 1000", got[5])
        self.assertIn("above the largest storable", got[1 << 63])
        acks = lambda: max([r.ack.sequence for r in received if r.HasField("ack")] or [0])
        h.wait_for(lambda: acks() >= 7, 15, "Ack 7")
        self.assertEqual(self.committed(RAW_ID), 7)
        for stored in ("raw_ok", "raw_nan", "raw_after"):
            self.assertTrue(self.stored(RAW_ID, stored), stored)
        for refused in ("raw_bad", "raw_big", "raw_labels", "raw_1970", "raw_range", "raw_never"):
            self.assertFalse(self.stored(RAW_ID, refused), refused)
        self.assertTrue(reader.is_alive(), "the stream is still up")
        outgoing.put(None)
        reader.join(10)
        cp = self.cp_metrics()
        self.assertEqual(cp['vigie_controlplane_agent_messages_refused_total{reason="invalid_utf8"}'], 1)
        self.assertEqual(cp['vigie_controlplane_agent_messages_refused_total{reason="too_large"}'], 1)
        self.assertEqual(
            cp['vigie_controlplane_agent_messages_refused_total{reason="sequence_range"}'], 2)
        channel.close()

    def test_3_sigkill_with_the_spool_loses_nothing_and_duplicates_nothing(self):
        # The control plane goes away; the agent keeps collecting into its spool.
        self.assertEqual(self.controlplane.terminate(), 0)
        outage_start = time.time()
        time.sleep(3)
        m = h.parse_metrics(h.http_get(f"http://{self.ag_http}/metrics"))
        last = int(m["vigie_agent_last_sequence"])
        self.assertGreater(m["vigie_agent_pending_messages"], 5)
        self.assertGreater(m["vigie_agent_spool_bytes"], 0)
        self.agent.proc.send_signal(signal.SIGKILL)
        self.agent.proc.wait()
        outage_end = time.time()
        self.controlplane.start()
        self.agent.start()
        h.wait_for(lambda: self.committed(AGENT_ID) >= last, 30,
                   f"everything spooled up to {last} committed after the restart")
        log = self.agent.log()
        self.assertIn("spool opened", log)
        # Exactly once: one node_load1 row per collection timestamp.
        dup = self.pg.query(
            "SELECT s.ts, count(*) FROM samples s JOIN series r ON r.id = s.series_id "
            f"WHERE r.agent_id = '{AGENT_ID}' AND r.name = 'node_load1' "
            "GROUP BY s.ts HAVING count(*) > 1")
        self.assertEqual(dup, [])
        # The outage is covered: rounds collected while the control plane was down (one every
        # 200 ms) are stored.
        rows = self.pg.query(
            "SELECT count(*) FROM samples s JOIN series r ON r.id = s.series_id "
            f"WHERE r.agent_id = '{AGENT_ID}' AND r.name = 'node_load1' "
            f"AND s.ts BETWEEN to_timestamp({outage_start + 0.5}) AND to_timestamp({outage_end})")
        self.assertGreaterEqual(int(rows[0][0]), int((outage_end - outage_start - 0.5) / 0.2 * 0.6))
        # The restarted agent went on with its own numbering.
        time.sleep(1)
        m = h.parse_metrics(h.http_get(f"http://{self.ag_http}/metrics"))
        self.assertGreater(m["vigie_agent_last_sequence"], last)


if __name__ == "__main__":
    unittest.main(verbosity=2)
