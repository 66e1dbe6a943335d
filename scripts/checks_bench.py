#!/usr/bin/python3
"""Service-check cost against blackbox_exporter, in one run on one machine: the same N local
targets (half HTTP, half HTTPS with a private CA, served by one nginx) probed every INTERVAL by
the agent's checks and by Debian's prometheus-blackbox-exporter (driven through /probe at the
same rate, as Prometheus would). Prints CPU per probe, RSS and the ratio (goal: the agent at
most half of blackbox_exporter's CPU per probe). The agent runs without a control plane (its
results wait in its bounded outbox); its host collectors run once (collect_interval 1h)."""
import argparse
import concurrent.futures
import os
import re
import subprocess
import sys
import threading
import time
import urllib.request

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, os.path.join(ROOT, "tests", "e2e"))
import vigie_harness as h  # noqa: E402

BIN = os.path.join(ROOT, "build", "bin")
TICK = os.sysconf("SC_CLK_TCK")


def cpu_seconds(pid):
    with open(f"/proc/{pid}/stat") as f:
        fields = f.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / TICK  # utime + stime


def rss_mib(pid):
    with open(f"/proc/{pid}/status") as f:
        return int(re.search(r"VmRSS:\s+(\d+)", f.read()).group(1)) / 1024


def start_nginx(tmp, pki, n):
    ports = []
    while len(ports) < n:  # free_port() may hand out the same port twice
        p = h.free_port()
        if p not in ports:
            ports.append(p)
    prefix = os.path.join(tmp, "nginx")
    os.makedirs(os.path.join(prefix, "logs"), exist_ok=True)
    listens = "\n".join(
        f"    listen 127.0.0.1:{p}{' ssl' if i % 2 else ''};" for i, p in enumerate(ports))
    conf = os.path.join(prefix, "nginx.conf")
    with open(conf, "w") as f:
        f.write(f"""
worker_processes 1;
pid {prefix}/nginx.pid;
error_log {prefix}/logs/error.log warn;
events {{ worker_connections 4096; }}
http {{
  access_log off;
  server {{
{listens}
    ssl_certificate {pki.server_cert};
    ssl_certificate_key {pki.server_key};
    location / {{ return 200 "ok\\n"; }}
  }}
}}
""")
    # Its own session: the whole group (master and worker) is stopped at the end.
    proc = subprocess.Popen(["nginx", "-c", conf, "-p", prefix, "-g", "daemon off;"],
                            start_new_session=True)
    h.wait_for(lambda: subprocess.run(["bash", "-c", f"exec 3<>/dev/tcp/127.0.0.1/{ports[-1]}"],
                                      capture_output=True).returncode == 0, 20, "nginx")
    return proc, [f"{'https' if i % 2 else 'http'}://127.0.0.1:{p}/" for i, p in
                  enumerate(ports)]


def measure(pid, seconds, count):
    """CPU seconds and probes (count() before/after) over `seconds`."""
    c0, n0 = cpu_seconds(pid), count()
    time.sleep(seconds)
    return cpu_seconds(pid) - c0, count() - n0


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--targets", type=int, default=200)
    ap.add_argument("--interval", type=float, default=5)
    ap.add_argument("--seconds", type=float, default=60)
    args = ap.parse_args()
    tmp = h.TempDir()
    procs = []
    try:
        pki = h.Pki(tmp.path, server_ips=("127.0.0.1",))
        nginx, urls = start_nginx(tmp.path, pki, args.targets)
        procs.append(nginx)

        # The agent.
        token = os.path.join(tmp.path, "token")
        with open(token, "w") as f:
            f.write("unused\n")
        ag_http = f"127.0.0.1:{h.free_port()}"
        checks = "".join(
            f"  - {{name: t{i}, target: \"{u}\", interval: {args.interval}s, timeout: 2s"
            + (f", http: {{tls: {{ca_file: {pki.ca}}}}}" if u.startswith("https") else "")
            + "}\n" for i, u in enumerate(urls))
        agent = h.Process(tmp.path, "vigie-agent",
                          f"controlplane: 127.0.0.1:{h.free_port()}\ntoken: {{file: {token}}}\n"
                          f"http_listen: {ag_http}\ncollect_interval: 1h\nchecks:\n{checks}",
                          health_url=f"http://{ag_http}/healthz")
        procs.append(agent.proc)

        def agent_runs():
            text = h.http_get(f"http://{ag_http}/metrics")
            return sum(float(v) for v in
                       re.findall(r"^vigie_agent_check_runs_total\{[^}]*\} (\S+)", text, re.M))

        # blackbox_exporter, driven at the same rate.
        bb_port = h.free_port()
        bb_conf = os.path.join(tmp.path, "blackbox.yml")
        with open(bb_conf, "w") as f:
            f.write(f"""modules:
  http_2xx:
    prober: http
    timeout: 2s
    http:
      tls_config: {{ca_file: {pki.ca}}}
""")
        bb = subprocess.Popen(["prometheus-blackbox-exporter", f"--config.file={bb_conf}",
                               f"--web.listen-address=127.0.0.1:{bb_port}"],
                              stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        procs.append(bb)
        def healthy():
            try:
                return h.http_get(f"http://127.0.0.1:{bb_port}/-/healthy", timeout=1) is not None
            except OSError:
                return False
        h.wait_for(healthy, 20, "blackbox_exporter")
        done = [0]
        lock = threading.Lock()
        stop = threading.Event()

        def probe(url):
            q = urllib.parse.urlencode({"module": "http_2xx", "target": url})
            try:
                body = h.http_get(f"http://127.0.0.1:{bb_port}/probe?{q}", timeout=10)
            except OSError:
                return  # stopped at the end of the run
            if "probe_success 1" not in body:
                print(f"blackbox: {url} failed", file=sys.stderr)
            with lock:
                done[0] += 1

        def drive():
            with concurrent.futures.ThreadPoolExecutor(32) as pool:
                start = time.monotonic()
                rounds = 0
                while not stop.is_set():
                    # Spread each round over the interval, as the agent spreads its checks.
                    for i, u in enumerate(urls):
                        at = start + rounds * args.interval + i * args.interval / len(urls)
                        time.sleep(max(0, at - time.monotonic()))
                        if stop.is_set():
                            break
                        pool.submit(probe, u)
                    rounds += 1
        driver = threading.Thread(target=drive, daemon=True)
        driver.start()

        warmup = 2 * args.interval
        print(f"{args.targets} targets ({args.targets // 2} HTTPS), every {args.interval:g}s; "
              f"warm-up {warmup:g}s, then {args.seconds:g}s measured, both at once")
        time.sleep(warmup)
        results = {}
        meas = {}

        def run(name, pid, count):
            meas[name] = measure(pid, args.seconds, count)

        def bb_count():
            with lock:
                return done[0]
        t1 = threading.Thread(target=run, args=("agent", agent.proc.pid, agent_runs))
        t2 = threading.Thread(target=run, args=("blackbox", bb.pid, bb_count))
        t1.start(), t2.start(), t1.join(), t2.join()
        stop.set()
        for name, pid in (("agent", agent.proc.pid), ("blackbox", bb.pid)):
            cpu, probes = meas[name]
            results[name] = (cpu, probes, cpu / max(probes, 1) * 1000, rss_mib(pid))
            print(f"{name:9s} {probes:6.0f} probes  {cpu:6.2f} s CPU  "
                  f"{results[name][2]:6.3f} ms CPU/probe  RSS {results[name][3]:6.1f} MiB")
        ratio = results["agent"][2] / max(results["blackbox"][2], 1e-9)
        print(f"ratio agent/blackbox_exporter CPU per probe: {ratio:.2f} (goal <= 0.50)")
        print(f"ratio agent/blackbox_exporter RSS: "
              f"{results['agent'][3] / results['blackbox'][3]:.2f}")
    finally:
        for p in procs:
            if p is procs[0]:
                os.killpg(p.pid, 9)  # nginx: master and worker
            else:
                p.kill()
            p.wait()
        tmp.cleanup()


if __name__ == "__main__":
    import urllib.parse  # noqa: F401
    main()
