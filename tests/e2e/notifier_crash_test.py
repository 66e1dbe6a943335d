#!/usr/bin/python3
"""A notifier SIGKILLed while its receiver refuses everything delivers every notification it
had accepted once it is back (its spool), and answers their keys as duplicates; a receiver
answering 429 (rate limited) is retried, never given up on; a receiver that hangs (accepts the
connection, never answers) times out and delays no other receiver."""
import json
import os
import socket
import subprocess
import threading
import sys
import time
import unittest

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import vigie_harness as h  # noqa: E402

N = 200


class NotifierCrashTest(h.SystemTestCase):
    @classmethod
    def start_system(cls):
        cls.tmp = h.TempDir()
        t = cls.tmp.path
        cls.sink = h.RecordingSink()
        cls.sink.fail_status = 503
        cls.token_file, cls.token = h.write_secret(t, "notifier.token")
        cls.grpc, http = f"127.0.0.1:{h.free_port()}", f"127.0.0.1:{h.free_port()}"
        cls.http = http
        cls.notifier = h.Process(t, "vigie-notifier", f"""
grpc_listen: {cls.grpc}
http_listen: {http}
client_token: {{file: {cls.token_file}}}
spool_directory: {t}/spool
retry_backoff: {{initial: 100ms, max: 300ms}}
delivery_workers: 4
receivers:
  - name: hook
    webhook_configs: [{{url: "{cls.sink.url}/hook"}}]
""", health_url=f"http://{http}/healthz")
        cls.procs.append(cls.notifier)

    def test_sigkill_mid_delivery_loses_nothing_accepted(self):
        self.sink.fail_status = 503
        refused_before = self.sink.refused
        out = subprocess.run([os.path.join(h.BIN, "vigie-notify-bench"), "--mode=notify",
                              f"--target={self.grpc}", f"--token_file={self.token_file}",
                              f"--n={N}", "--concurrency=8",
                              f"--sent_file={self.tmp.path}/sent.txt", "--run=crash"],
                             capture_output=True, text=True, timeout=120)
        self.assertEqual(out.returncode, 0, out.stderr)
        h.wait_for(lambda: self.sink.refused > refused_before + N, 30,
                   "deliveries being refused and retried")
        self.notifier.kill()  # SIGKILL while every delivery is retrying
        self.notifier.start()
        self.sink.fail_status = None
        def delivered():
            keys = {json.loads(b).get("idempotencyKey") for _, _, _, b in self.sink.matching("/hook")}
            keys = {k for k in keys if k.startswith("bench/crash/")}
            return keys if len(keys) >= N else None
        keys = h.wait_for(delivered, 60, f"all {N} accepted notifications delivered")
        self.assertEqual(keys, {f"bench/crash/{i}" for i in range(N)})
        # Their keys are remembered from the spool: resending one is a duplicate.
        code, body, err = h.buf("-d", json.dumps({"idempotencyKey": "bench/crash/7", "notification":
                                                  {"status": "STATUS_FIRING", "rule": "r"}}),
                                f"http://{self.grpc}/vigie.v1.Notifier/Notify", token=self.token)
        self.assertEqual(code, 0, err)
        self.assertTrue(json.loads(body or "{}").get("duplicate"), body)
        time.sleep(1)
        self.assertEqual(len(os.listdir(f"{self.tmp.path}/spool")), 0, "spool emptied")

    def test_a_receiver_answering_429_is_retried_until_it_accepts(self):
        self.sink.fail_status = 429
        refused_before = self.sink.refused
        out = subprocess.run([os.path.join(h.BIN, "vigie-notify-bench"), "--mode=notify",
                              f"--target={self.grpc}", f"--token_file={self.token_file}",
                              "--n=5", "--concurrency=1",
                              f"--sent_file={self.tmp.path}/sent429.txt", "--run=r429"],
                             capture_output=True, text=True, timeout=60)
        self.assertEqual(out.returncode, 0, out.stderr)
        h.wait_for(lambda: self.sink.refused >= refused_before + 10, 30, "429s answered")
        self.sink.fail_status = None
        def delivered():
            keys = {json.loads(b).get("idempotencyKey") for _, _, _, b in self.sink.matching("/hook")}
            return {f"bench/r429/{i}" for i in range(5)} <= keys
        h.wait_for(delivered, 30, "the five notifications after the 429s")
        m = h.parse_metrics(h.http_get(f"http://{self.http}/metrics"))
        self.assertGreater(m['vigie_notifier_deliveries_total{channel="webhook",receiver="hook",result="retry"}'], 0)
        self.assertEqual(m['vigie_notifier_deliveries_total{channel="webhook",receiver="hook",result="gave_up"}'], 0)


class HangingReceiverTest(h.SystemTestCase):
    @classmethod
    def start_system(cls):
        cls.tmp = h.TempDir()
        t = cls.tmp.path
        cls.sink = h.RecordingSink()
        # Accepts connections and reads, never answers.
        cls.hang = socket.socket()
        cls.hang.bind(("127.0.0.1", 0))
        cls.hang.listen(64)
        cls.held = []

        def hold():
            while True:
                try:
                    conn, _ = cls.hang.accept()
                except OSError:
                    return
                cls.held.append(conn)
        threading.Thread(target=hold, daemon=True).start()
        token_file, cls.token = h.write_secret(t, "notifier.token")
        cls.grpc, cls.http = f"127.0.0.1:{h.free_port()}", f"127.0.0.1:{h.free_port()}"
        cls.procs.append(h.Process(t, "vigie-notifier", f"""
grpc_listen: {cls.grpc}
http_listen: {cls.http}
client_token: {{file: {token_file}}}
retry_backoff: {{initial: 100ms, max: 300ms}}
delivery_workers: 2
receivers:
  - name: stuck
    webhook_configs: [{{url: "http://127.0.0.1:{cls.hang.getsockname()[1]}/hook", timeout: 2s}}]
  - name: good
    webhook_configs: [{{url: "{cls.sink.url}/good"}}]
""", health_url=f"http://{cls.http}/healthz"))

    @classmethod
    def tearDownClass(cls):
        super().tearDownClass()
        cls.hang.close()
        for c in cls.held:
            c.close()

    def test_a_hanging_receiver_times_out_and_blocks_no_other(self):
        start = time.monotonic()
        for i in range(10):
            code, _, err = h.buf("-d", json.dumps({"idempotencyKey": f"hang-{i}", "notification": {
                "status": "STATUS_FIRING", "rule": "r", "fingerprint": f"fp{i}"}}),
                f"http://{self.grpc}/vigie.v1.Notifier/Notify", token=self.token)
            self.assertEqual(code, 0, err)

        def good():
            keys = {json.loads(b)["idempotencyKey"] for _, _, _, b in self.sink.matching("/good")}
            return keys >= {f"hang-{i}" for i in range(10)}
        h.wait_for(good, 20, "the good receiver's ten deliveries")
        # Ten 2 s timeouts in a row would take 20 s: the good receiver did not wait for them.
        self.assertLess(time.monotonic() - start, 12)

        def retried():
            m = h.parse_metrics(h.http_get(f"http://{self.http}/metrics"))
            return m.get('vigie_notifier_deliveries_total{channel="webhook",receiver="stuck",'
                         'result="retry"}', 0) >= 2
        h.wait_for(retried, 20, "the stuck receiver's timeouts counted as retries")


if __name__ == "__main__":
    unittest.main(verbosity=2)
