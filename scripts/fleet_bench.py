#!/usr/bin/python3
"""Fleet benchmarks, each printed as a ratio to a baseline measured in the same run (run by
scripts/bench-fleet.sh, which builds first). PostgreSQL runs with fsync on.

1. Throughput: samples per second acknowledged end to end (vigie-loadgen -> gRPC -> control
   plane -> PostgreSQL, Ack after commit), with 1 and 2 storage workers, against psql's \\copy
   of the same number of samples as one row each into (series_id, ts, value) with its primary
   key, over as many connections.
2. Control-plane RSS while agents send flat out and PostgreSQL is stopped, against the
   max_inflight_bytes bound.
3. Memory per idle agent with TLS: control-plane RSS growth per connected idle agent against a
   bare gRPC callback server (vigie-bare-server) holding the same idle TLS streams.

  scripts/bench-fleet.sh [--idle 1000,10000] [--agents 8] [--seconds 20]
"""
import argparse
import json
import os
import subprocess
import sys
import tempfile
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, os.path.join(ROOT, "tests", "e2e"))
os.environ["VIGIE_PG_FSYNC"] = "on"
import vigie_harness as h  # noqa: E402

BIN = os.path.join(ROOT, "build", "bin")


def rss_kib(pid):
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    return 0


def loadgen(args, timeout):
    out = subprocess.run([os.path.join(BIN, "vigie-loadgen"), *args], capture_output=True,
                         text=True, timeout=timeout)
    if out.returncode != 0:
        raise SystemExit(f"vigie-loadgen failed:\n{out.stderr}")
    return json.loads(out.stdout.strip().splitlines()[-1])


def start_controlplane(tmp, pg, admin_file, workers, tls=None, name="controlplane"):
    grpc_addr, http_addr = f"127.0.0.1:{h.free_port()}", f"127.0.0.1:{h.free_port()}"
    config = (f"grpc_listen: {grpc_addr}\nhttp_listen: {http_addr}\n"
              f"database_url_from: {{file: {pg.url_file}}}\n"
              f"bootstrap_admin_token: {{file: {admin_file}}}\n"
              f"storage_workers: {workers}\nmax_inflight_per_stream: 8\n")
    if tls:
        config += f"tls: {{cert_file: {tls.server_cert}, key_file: {tls.server_key}}}\n"
    p = h.Process(tmp, "vigie-controlplane", config, health_url=f"http://{http_addr}/healthz",
                  name=name)
    return p, grpc_addr


def copy_baseline(pg, tmp, samples, connections):
    """psql \\copy of `samples` rows (series_id, ts, value) split over `connections` psql
    processes at once; rows per second."""
    pg.query("DROP TABLE IF EXISTS bench_rows; CREATE TABLE bench_rows (series_id bigint, "
             "ts timestamptz, value double precision, PRIMARY KEY (series_id, ts))")
    per = samples // connections
    files = []
    for c in range(connections):
        path = os.path.join(tmp, f"rows{c}.csv")
        with open(path, "w") as f:
            # 600 series per batch, like the load generator's, a batch every 15 s.
            for batch in range(per // 600):
                ts = time.strftime("%Y-%m-%d %H:%M:%S+00", time.gmtime(1700000000 + batch * 15))
                f.write("".join(f"{c * 1000000 + s},{ts},{batch * (s + 1) * 0.25}\n"
                                for s in range(600)))
        files.append(path)
    start = time.monotonic()
    procs = [subprocess.Popen(["psql", pg.url, "-v", "ON_ERROR_STOP=1", "-Xqc",
                               f"\\copy bench_rows FROM '{path}' WITH (FORMAT csv)"])
             for path in files]
    for p in procs:
        if p.wait() != 0:
            raise SystemExit("psql \\copy failed")
    return per * connections / (time.monotonic() - start)


def throughput(tmp, pg, admin_file, admin, agents, seconds):
    rows = []
    for workers in (1, 2):
        cp, addr = start_controlplane(tmp, pg, admin_file, workers, name=f"cp-w{workers}")
        token = h.create_token(addr, admin, "TOKEN_KIND_ENROLMENT")
        token_file = os.path.join(tmp, "enrol.token")
        with open(token_file, "w") as f:
            f.write(token)
        r = loadgen(["--target", addr, "--agents", str(agents), "--series", "600",
                     "--interval", "0", "--window", "4", "--warmup", "5s",
                     "--duration", f"{seconds}s", "--token_file", token_file,
                     "--id_prefix", f"w{workers}-"], timeout=seconds + 120)
        cp.terminate()
        ours = r["samples_per_second"]
        base = copy_baseline(pg, tmp, max(600000, int(ours * 5) // 600 * 600), workers)
        rows.append((workers, base, ours, r))
    print("end-to-end ingest, 600-sample batches     samples/s   ratio")
    for workers, base, ours, r in rows:
        print(f"psql \\copy row-per-sample, {workers} conn. (baseline)  {base:>10,.0f}    1.00")
        print(f"loadgen -> control plane, {workers} worker(s)       {ours:>10,.0f}   "
              f"{ours / base:5.2f}   ({r['agents']} agents, {r['rejects']} rejects)")


def idle_memory(tmp, pg, admin_file, admin, counts):
    pki = h.Pki(tmp)
    print("idle TLS agents    control plane B/agent   bare gRPC server B/agent   ratio")
    for n in counts:
        # The bare server first: the floor.
        port = h.free_port()
        bare = subprocess.Popen([os.path.join(BIN, "vigie-bare-server"),
                                 f"--listen=127.0.0.1:{port}", f"--cert_file={pki.server_cert}",
                                 f"--key_file={pki.server_key}"], stdout=subprocess.PIPE)
        bare.stdout.readline()
        time.sleep(1)
        before = rss_kib(bare.pid)
        lg = subprocess.Popen([os.path.join(BIN, "vigie-loadgen"), f"--target=127.0.0.1:{port}",
                               f"--agents={n}", "--series=0", "--interval=1h",
                               "--expect_welcome=false", "--warmup=0s", "--duration=1h",
                               f"--ca_file={pki.ca}", "--server_name=vigie.test"],
                              stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        bare_per = settle(lambda: rss_kib(bare.pid), before, n, bare_streams(bare.pid, n))
        lg.kill()
        lg.wait()
        bare.terminate()
        bare.wait()

        cp, addr = start_controlplane(tmp, pg, admin_file, 2, tls=pki, name=f"cp-idle{n}")
        token = h.create_token(addr, admin, "TOKEN_KIND_ENROLMENT", cacert=pki.ca)
        token_file = os.path.join(tmp, "enrol-idle.token")
        with open(token_file, "w") as f:
            f.write(token)
        time.sleep(2)
        before = rss_kib(cp.proc.pid)
        lg = subprocess.Popen([os.path.join(BIN, "vigie-loadgen"), f"--target={addr}",
                               f"--agents={n}", "--series=0", "--interval=1h", "--warmup=0s",
                               "--duration=1h", f"--token_file={token_file}",
                               f"--ca_file={pki.ca}", "--server_name=vigie.test",
                               f"--id_prefix=idle{n}-"],
                              stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        cp_per = settle(lambda: rss_kib(cp.proc.pid), before, n,
                        lambda: connected_agents(pg, f"idle{n}-") >= n)
        lg.kill()
        lg.wait()
        cp.terminate()
        print(f"{n:>16,}   {cp_per:>20,.0f}   {bare_per:>24,.0f}   {cp_per / bare_per:5.2f}")


def outage(tmp, pg, admin_file, admin, agents, seconds):
    """Control-plane RSS while `agents` send as fast as Acks allow and PostgreSQL is stopped
    for `seconds`, against its max_inflight_bytes bound (the figure the issue asks for)."""
    cp, addr = start_controlplane(tmp, pg, admin_file, 2, name="cp-outage")
    token = h.create_token(addr, admin, "TOKEN_KIND_ENROLMENT")
    token_file = os.path.join(tmp, "enrol-outage.token")
    with open(token_file, "w") as f:
        f.write(token)
    idle = rss_kib(cp.proc.pid)
    lg = subprocess.Popen([os.path.join(BIN, "vigie-loadgen"), f"--target={addr}",
                           f"--agents={agents}", "--series=600", "--interval=0", "--window=8",
                           "--warmup=0s", f"--duration={seconds * 3 + 30}s",
                           f"--token_file={token_file}", "--id_prefix=outage-"],
                          stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    time.sleep(10)
    loaded = 0
    for _ in range(5):
        time.sleep(1)
        loaded = max(loaded, rss_kib(cp.proc.pid))
    pg.stop_server()
    peak = loaded
    for _ in range(seconds):
        time.sleep(1)
        peak = max(peak, rss_kib(cp.proc.pid))
    pg.start_server()
    time.sleep(10)
    after = rss_kib(cp.proc.pid)
    lg.kill()
    lg.wait()
    cp.terminate()
    budget = 256 * 1024
    print(f"control-plane RSS, {agents} agents sending flat out, max_inflight_bytes 256 MiB:")
    print(f"  idle {idle / 1024:.0f} MiB, under load {loaded / 1024:.0f} MiB, peak during a "
          f"{seconds} s PostgreSQL outage {peak / 1024:.0f} MiB ({(peak - idle) / budget:.2f}x "
          f"the budget above idle), after recovery {after / 1024:.0f} MiB")


def bare_streams(pid, n):
    # Established TCP connections of the bare server: one per agent.
    def done():
        out = subprocess.run(["ss", "-Htn", "state", "established", "-p"], capture_output=True,
                             text=True).stdout
        return sum(1 for line in out.splitlines() if f"pid={pid}," in line) >= n
    return done


def connected_agents(pg, prefix):
    return int(pg.query(f"SELECT count(*) FROM agents WHERE connected AND agent_id LIKE "
                        f"'{prefix}%'")[0][0])


def settle(rss, before, n, all_connected):
    """Waits for every stream, then 10 s more (memory settles), and returns bytes per agent."""
    h.wait_for(all_connected, 300, f"{n} idle streams")
    time.sleep(10)
    return (rss() - before) * 1024 / n


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--agents", type=int, default=8)
    ap.add_argument("--seconds", type=int, default=20)
    ap.add_argument("--idle", default="1000,10000")
    ap.add_argument("--skip-throughput", action="store_true")
    ap.add_argument("--outage-agents", type=int, default=100)
    ap.add_argument("--outage-seconds", type=int, default=20)
    a = ap.parse_args()
    tmpdir = h.TempDir()
    tmp = tmpdir.path
    pg = h.Postgres(tmp)
    try:
        admin_file, admin = h.write_secret(tmp, "admin.token")
        if not a.skip_throughput:
            throughput(tmp, pg, admin_file, admin, a.agents, a.seconds)
        if a.outage_agents:
            outage(tmp, pg, admin_file, admin, a.outage_agents, a.outage_seconds)
        if a.idle:
            idle_memory(tmp, pg, admin_file, admin, [int(x) for x in a.idle.split(",")])
    finally:
        pg.stop()
        tmpdir.cleanup()


if __name__ == "__main__":
    main()
