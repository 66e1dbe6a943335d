"""Measures the agent and node_exporter side by side; see scripts/agent-footprint.sh."""
import os
import sys
import threading
import time
import urllib.request

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(HERE)
sys.path.insert(0, HERE)
sys.path.insert(0, os.path.join(ROOT, "tests", "e2e"))
import node_exporter_compare as nec  # noqa: E402
import vigie_harness as h  # noqa: E402



def cpu_seconds(pid):
    """CPU time of every thread, from schedstat (nanoseconds; /proc/<pid>/stat counts 10 ms
    ticks, too coarse for a process that uses a few milliseconds a second)."""
    total = 0
    for tid in os.listdir(f"/proc/{pid}/task"):
        try:
            with open(f"/proc/{pid}/task/{tid}/schedstat") as f:
                total += int(f.read().split()[0])
        except OSError:
            pass  # a thread that just exited
    return total / 1e9


def memory(pid):
    """RSS, PSS and USS (private clean + private dirty) in MiB, and the thread count."""
    m = {}
    with open(f"/proc/{pid}/smaps_rollup") as f:
        for line in f:
            parts = line.split()
            if len(parts) >= 2 and parts[0].endswith(":") and parts[1].isdigit():
                m[parts[0][:-1]] = int(parts[1]) / 1024
    with open(f"/proc/{pid}/status") as f:
        threads = next(int(l.split()[1]) for l in f if l.startswith("Threads:"))
    return {"rss": m["Rss"], "pss": m["Pss"],
            "uss": m["Private_Clean"] + m["Private_Dirty"], "threads": threads}


def counter(url, name):
    for line in urllib.request.urlopen(url, timeout=5).read().decode().splitlines():
        if line.startswith(name + " "):
            return float(line.split()[1])
    raise KeyError(name)


def main():
    seconds = int(os.environ.get("VIGIE_FOOTPRINT_SECONDS", "120"))
    tmp = h.TempDir()
    procs, pg = [], None
    try:
        t = tmp.path
        pg = h.Postgres(t)  # fsync on, as users run it
        admin_file, admin_token = h.write_secret(t, "admin.token")
        grpc, http = f"127.0.0.1:{h.free_port()}", f"127.0.0.1:{h.free_port()}"
        procs.append(h.Process(t, "vigie-controlplane", f"""
grpc_listen: {grpc}
http_listen: {http}
database_url_from: {{file: {pg.url_file}}}
bootstrap_admin_token: {{file: {admin_file}}}
""", health_url=f"http://{http}/healthz"))
        token = h.create_token(grpc, admin_token, "TOKEN_KIND_AGENT", "compare")
        ne, ne_url = nec.start_node_exporter(ROOT, t)
        agent, agent_url = nec.start_agent(ROOT, t, "collect_interval: 1s\n", controlplane=grpc,
                                           token=token)
        procs_extra = [ne, agent]
        # Prometheus' part: scrape node_exporter every second.
        scraped = {"scrapes": 0, "samples": 0}
        stop = threading.Event()

        def scrape():
            while not stop.is_set():
                start = time.time()
                scraped["samples"] += nec.samples(ne_url)
                scraped["scrapes"] += 1
                stop.wait(max(0, 1 - (time.time() - start)))

        time.sleep(5)  # warm-up: first rounds, connections, caches
        scraper = threading.Thread(target=scrape, daemon=True)
        ne_cpu0, ag_cpu0 = cpu_seconds(ne.pid), cpu_seconds(agent.pid)
        ag_samples0 = counter(agent_url, "vigie_agent_samples_total")
        scraper.start()
        time.sleep(seconds)
        stop.set()
        scraper.join()
        ne_cpu, ag_cpu = cpu_seconds(ne.pid) - ne_cpu0, cpu_seconds(agent.pid) - ag_cpu0
        ag_samples = counter(agent_url, "vigie_agent_samples_total") - ag_samples0
        ne_mem, ag_mem = memory(ne.pid), memory(agent.pid)
        acked = counter(agent_url, "vigie_agent_acked_sequence")
        for p in procs_extra:
            p.terminate()
            p.wait()
    finally:
        for p in reversed(procs):
            p.ensure_stopped()
        if pg:
            pg.stop()
        tmp.cleanup()

    ne_per = ne_cpu / max(1, scraped["samples"])
    ag_per = ag_cpu / max(1, ag_samples)
    rows = [
        ("private memory (USS), MiB", ne_mem["uss"], ag_mem["uss"], 0.3),
        ("proportional (PSS), MiB", ne_mem["pss"], ag_mem["pss"], 1.0),
        ("resident (RSS), MiB", ne_mem["rss"], ag_mem["rss"], 1.0),
        ("CPU per sample, µs", ne_per * 1e6, ag_per * 1e6, 0.5),
    ]
    print(f"{seconds} s at a 1 s interval; node_exporter scraped {scraped['scrapes']} times "
          f"({scraped['samples'] / max(1, scraped['scrapes']):.0f} samples each); the agent "
          f"collected {ag_samples / seconds:.0f} samples/s and streamed them (acked sequence "
          f"{acked:.0f}).")
    print(f"{'':32}{'node_exporter':>14}{'agent':>10}{'ratio':>8}{'target':>9}")
    for name, base, ours, target in rows:
        ratio = ours / base if base else float("inf")
        verdict = "ok" if ratio <= target else "MISSED"
        print(f"{name:32}{base:14.2f}{ours:10.2f}{ratio:8.2f}{'≤ %.1f' % target:>9} {verdict}")
    print(f"{'threads':32}{ne_mem['threads']:14d}{ag_mem['threads']:10d}{'':8}{'≤ 16':>9} "
          f"{'ok' if ag_mem['threads'] <= 16 else 'MISSED'}")
    print(f"{'CPU seconds in all':32}{ne_cpu:14.2f}{ag_cpu:10.2f}")
    print("USS counts pages no other process maps; the agent's shared libraries (gRPC, "
          "protobuf, abseil) are shared with the control plane running beside it here, as "
          "they would be with any other gRPC process on the host.")


if __name__ == "__main__":
    main()
