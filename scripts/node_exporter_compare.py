"""Starts node_exporter and the agent side by side; compares the metric families they export.

Used by scripts/compare-node-exporter.sh and imported by scripts/agent-footprint.sh."""
import os
import re
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request

# What the agent adds on purpose, beyond node_exporter's default set: its own metrics, the
# cgroup collector, node_exporter's "processes" collector (off by default there), and netstat
# fields in node_exporter's current default set that Debian's 1.5.0 predates.
AGENT_OWN = re.compile(r"^(vigie_|container_|node_scrape_collector_|node_processes_|"
                       r"node_netstat_TcpExt_(TCPOFOQueue|TCPRcvQDrop)$|node_selinux_current_mode)")
# node_exporter's own process and Go runtime metrics: not host metrics.
EXPORTER_OWN = re.compile(r"^(go_|process_|promhttp_|node_exporter_build_info)")


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def families(url):
    text = urllib.request.urlopen(url, timeout=10).read().decode()
    return {line.split()[2] for line in text.splitlines() if line.startswith("# TYPE ")}


def samples(url):
    text = urllib.request.urlopen(url, timeout=10).read().decode()
    return sum(1 for line in text.splitlines() if line and not line.startswith("#"))


def wait_http(url, proc, what):
    for _ in range(100):
        if proc.poll() is not None:
            raise SystemExit(f"{what} exited with {proc.returncode}")
        try:
            urllib.request.urlopen(url, timeout=1).read()
            return
        except OSError:
            time.sleep(0.1)
    raise SystemExit(f"{what} did not answer on {url}")


def start_node_exporter(root, tmp, interval_flags=()):
    port = free_port()
    textfiles = os.path.join(tmp, "textfile")
    os.makedirs(textfiles, exist_ok=True)
    proc = subprocess.Popen(
        [os.path.join(root, ".vigie", "tools", "bin", "node_exporter"),
         f"--web.listen-address=127.0.0.1:{port}",
         f"--collector.textfile.directory={textfiles}", *interval_flags],
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    url = f"http://127.0.0.1:{port}/metrics"
    wait_http(url, proc, "node_exporter")
    return proc, url


def start_agent(root, tmp, extra_config="", controlplane="127.0.0.1:1", token="vigie_compare"):
    port = free_port()
    config = os.path.join(tmp, "agent.yaml")
    textfiles = os.path.join(tmp, "textfile")
    os.makedirs(textfiles, exist_ok=True)
    with open(config, "w") as f:
        f.write(f"agent_id: compare\ntoken: {{env: VIGIE_COMPARE_TOKEN}}\n"
                f"controlplane: {controlplane}\nhttp_listen: 127.0.0.1:{port}\n"
                f"textfile_directory: {textfiles}\n{extra_config}")
    env = dict(os.environ, VIGIE_COMPARE_TOKEN=token)
    proc = subprocess.Popen([os.path.join(root, "build", "bin", "vigie-agent"),
                             f"--config={config}"], env=env,
                            stdout=open(os.path.join(tmp, "agent.log"), "w"),
                            stderr=subprocess.STDOUT)
    url = f"http://127.0.0.1:{port}/metrics"
    wait_http(url, proc, "vigie-agent")
    return proc, url


def documented_left_out(root):
    """Families (or prefixes ending in *) docs/collectors.md lists under "Left out"."""
    out = []
    text = open(os.path.join(root, "docs", "collectors.md")).read()
    section = text.split("## Left out", 1)[-1] if "## Left out" in text else ""
    for m in re.finditer(r"`(node_[a-z0-9_]+\*?)`", section):
        out.append(m.group(1))
    return out


def is_documented(name, documented):
    return any(name == d or (d.endswith("*") and name.startswith(d[:-1])) for d in documented)


def main(root):
    with tempfile.TemporaryDirectory() as tmp:
        ne, ne_url = start_node_exporter(root, tmp)
        agent, agent_url = start_agent(root, tmp, "collect_interval: 1s\n")
        try:
            time.sleep(2.5)  # a full round of every collector
            theirs = {f for f in families(ne_url) if not EXPORTER_OWN.match(f)}
            ours = families(agent_url)
        finally:
            for p in (ne, agent):
                p.terminate()
                p.wait()
    documented = documented_left_out(root)
    missing = sorted(theirs - ours)
    undocumented = [f for f in missing if not is_documented(f, documented)]
    extra = sorted(f for f in ours - theirs)
    print(f"node_exporter families on this host: {len(theirs)}; the agent has "
          f"{len(theirs & ours)} of them.")
    print(f"\nIn node_exporter, not in the agent ({len(missing)}; "
          f"{len(missing) - len(undocumented)} listed in docs/collectors.md as left out):")
    for f in missing:
        print(f"  {f}{'' if f in undocumented else '   (documented)'}")
    print(f"\nIn the agent, not in node_exporter ({len(extra)}):")
    for f in extra:
        print(f"  {f}{'' if AGENT_OWN.match(f) else '   (differs from node_exporter!)'}")
    if undocumented:
        print(f"\n{len(undocumented)} node_exporter families are neither in the agent nor "
              "documented as left out.")
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1]))
