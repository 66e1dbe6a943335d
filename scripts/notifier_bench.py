#!/usr/bin/python3
"""Notifier benchmark (run by scripts/bench-notifier.sh): notifications per second delivered
to a webhook sink and the latency added from Notify to the sink (p50, p99), against the same
sink hit by a plain keep-alive libcurl loop, in one run. The sink is Debian's nginx answering
204 (a Python sink tops out near 1,600 requests/s); it logs each request's arrival ($msec) and
Idempotency-Key. The notifier runs as users run it: with its spool (fsync per Notify).

  scripts/bench-notifier.sh [--n 20000] [--concurrency 32] [--workers 8] [--no-spool]
"""
import argparse
import json
import os
import subprocess
import sys
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, os.path.join(ROOT, "tests", "e2e"))
import vigie_harness as h  # noqa: E402

BIN = os.path.join(ROOT, "build", "bin")


def start_nginx(tmp):
    port = h.free_port()
    prefix = os.path.join(tmp, "nginx")
    os.makedirs(os.path.join(prefix, "logs"), exist_ok=True)
    conf = os.path.join(prefix, "nginx.conf")
    log = os.path.join(prefix, "logs", "bench.log")
    with open(conf, "w") as f:
        f.write(f"""
worker_processes 1;
pid {prefix}/nginx.pid;
error_log {prefix}/logs/error.log warn;
events {{ worker_connections 1024; }}
http {{
  log_format bench '$msec $http_idempotency_key';
  access_log {log} bench buffer=256k flush=1s;
  keepalive_requests 1000000;
  client_body_buffer_size 64k;
  server {{
    listen 127.0.0.1:{port};
    location / {{ return 204; }}
  }}
}}
""")
    proc = subprocess.Popen(["nginx", "-c", conf, "-p", prefix, "-g", "daemon off;"])
    h.wait_for(lambda: subprocess.run(["bash", "-c", f"exec 3<>/dev/tcp/127.0.0.1/{port}"],
                                      capture_output=True).returncode == 0, 20, "nginx")
    return proc, f"http://127.0.0.1:{port}", log


def log_lines(path, prefix):
    if not os.path.exists(path):
        return {}
    out = {}
    with open(path) as f:
        for line in f:
            parts = line.split()
            if len(parts) == 2 and parts[1].startswith(prefix):
                out[parts[1]] = float(parts[0])
    return out


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--n", type=int, default=20000)
    ap.add_argument("--concurrency", type=int, default=32)
    ap.add_argument("--workers", type=int, default=8)
    ap.add_argument("--no-spool", action="store_true", help="measure without the spool")
    a = ap.parse_args()
    tmpdir = h.TempDir()
    tmp = tmpdir.path
    nginx, sink, log = start_nginx(tmp)
    notifier = None
    try:
        out = subprocess.run([os.path.join(BIN, "vigie-notify-bench"), "--mode=curl_loop",
                              f"--url={sink}/loop", f"--n={a.n}"],
                             capture_output=True, text=True, check=True).stdout
        baseline = json.loads(out)["per_second"]

        token_file, _ = h.write_secret(tmp, "notifier.token")
        grpc_addr, http_addr = f"127.0.0.1:{h.free_port()}", f"127.0.0.1:{h.free_port()}"
        notifier = h.Process(tmp, "vigie-notifier", f"""
grpc_listen: {grpc_addr}
http_listen: {http_addr}
client_token: {{file: {token_file}}}
{"" if a.no_spool else f"spool_directory: {tmp}/spool"}
delivery_workers: {a.workers}
max_queue: 100000
max_remembered_keys: 1000000
receivers:
  - name: sink
    webhook_configs: [{{url: "{sink}/hook"}}]
""", health_url=f"http://{http_addr}/healthz")
        sent_file = os.path.join(tmp, "sent.txt")
        run = str(int(time.time()))
        subprocess.run([os.path.join(BIN, "vigie-notify-bench"), "--mode=notify",
                        f"--target={grpc_addr}", f"--token_file={token_file}", f"--n={a.n}",
                        f"--concurrency={a.concurrency}", f"--sent_file={sent_file}",
                        f"--run={run}"], check=True, capture_output=True)
        prefix = f"bench/{run}/"
        h.wait_for(lambda: len(log_lines(log, prefix)) >= a.n, 300, "every delivery at the sink")
        arrived = log_lines(log, prefix)
        sent = {}
        with open(sent_file) as f:
            for line in f:
                key, at = line.split()
                sent[key] = float(at)
        latencies = sorted(max(0.0, arrived[k] - sent[k]) for k in sent if k in arrived)
        span = max(arrived.values()) - min(sent.values())
        rate = len(arrived) / span
        p50 = latencies[len(latencies) // 2] * 1000
        p99 = latencies[int(len(latencies) * 0.99)] * 1000
        print(f"deliveries to an nginx webhook sink, {a.n} notifications   per second   ratio")
        print(f"keep-alive libcurl loop (baseline)                       {baseline:>10,.0f}    1.00")
        print(f"Notify -> spool -> {a.workers} workers -> webhook              {rate:>10,.0f}   "
              f"{rate / baseline:5.2f}")
        print(f"latency added, Notify to sink: p50 {p50:.1f} ms, p99 {p99:.1f} ms "
              f"(nginx logs arrival with 1 ms resolution)")
    finally:
        if notifier:
            notifier.ensure_stopped()
        nginx.terminate()
        nginx.wait()
        tmpdir.cleanup()


if __name__ == "__main__":
    main()
