#!/usr/bin/python3
"""scripts/dev-env.sh as a new user runs it, from an awkward checkout: a path too long for a
PostgreSQL socket and, when run as root, a parent folder the postgres user cannot enter.
"""
import json
import os
import shutil
import subprocess
import sys
import tempfile
import unittest

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import vigie_harness as h  # noqa: E402

REQUIRED_KEYS = ("DATABASE_URL_FILE", "CONTROLPLANE_GRPC", "CONTROLPLANE_HTTP", "NOTIFIER_GRPC",
                 "NOTIFIER_HTTP", "AGENT_HTTP", "WEBHOOK_SINK_LOG", "CA_FILE", "ADMIN_TOKEN_FILE")


class DevEnvTest(unittest.TestCase):
    def setUp(self):
        self.base = tempfile.mkdtemp(prefix="vigie-devenv-", dir="/tmp")
        # Over 107 bytes for <checkout>/.vigie/pg/.s.PGSQL.NNNNN: the socket must go elsewhere.
        self.checkout = os.path.join(self.base, "a" * 60, "b" * 40, "checkout")
        shutil.copytree(os.path.join(h.ROOT, "scripts"), os.path.join(self.checkout, "scripts"))
        if os.geteuid() == 0:
            os.chmod(self.base, 0o700)  # the postgres user cannot enter the checkout
        self.env = dict(os.environ, VIGIE_BIN=h.BIN, VIGIE_BUF=h.BUF)

    def tearDown(self):
        self.dev_env("stop", check=False)
        data = os.path.join(self.checkout, ".vigie", "pg", "data")
        if os.path.islink(data):
            shutil.rmtree(os.path.realpath(data), ignore_errors=True)
        shutil.rmtree(self.base, ignore_errors=True)

    def dev_env(self, command, check=True):
        r = subprocess.run([os.path.join(self.checkout, "scripts", "dev-env.sh"), command],
                           env=self.env, capture_output=True, text=True, timeout=180)
        if check:
            self.assertEqual(r.returncode, 0, r.stdout + r.stderr)
        return r

    def processes_under(self, path):
        found = []
        for pid in filter(str.isdigit, os.listdir("/proc")):
            try:
                with open(f"/proc/{pid}/cmdline", "rb") as f:
                    if path.encode() in f.read():
                        found.append(int(pid))
            except OSError:
                pass
        return found

    def test_start_status_stop(self):
        self.dev_env("start")
        with open(os.path.join(self.checkout, ".vigie", "env")) as f:
            env = dict(line.strip().split("=", 1) for line in f if "=" in line)
        for key in REQUIRED_KEYS:
            self.assertIn(key, env)
        self.assertLess(len(env["PGSOCKET"]) + len("/.s.PGSQL.65535"), 108)
        if os.geteuid() == 0:
            data = os.path.join(self.checkout, ".vigie", "pg", "data")
            self.assertTrue(os.path.islink(data), "data moved where postgres can enter")
            self.assertTrue(os.path.realpath(data).startswith("/var/tmp/vigie-pg-"))
        status = self.dev_env("status").stdout
        for name in ("postgresql", "webhook-sink", "notifier", "controlplane", "agent"):
            self.assertRegex(status, rf"{name}\s+running")

        def agent_listed():
            admin = open(env["ADMIN_TOKEN_FILE"]).read().strip()
            code, out, _ = h.buf("-d", "{}",
                                 f"https://{env['CONTROLPLANE_GRPC']}/vigie.v1.Admin/ListAgents",
                                 token=admin, cacert=env["CA_FILE"])
            return code == 0 and json.loads(out).get("agents")
        h.wait_for(agent_listed, 30, "the dev agent in ListAgents")

        def worker_running():
            admin = open(env["ADMIN_TOKEN_FILE"]).read().strip()
            code, out, _ = h.buf("-d", "{}",
                                 f"https://{env['CONTROLPLANE_GRPC']}/vigie.v1.Admin/ListServices",
                                 token=admin, cacert=env["CA_FILE"])
            return code == 0 and [s for s in json.loads(out).get("services", [])
                                  if s["name"] == "worker" and s["state"] == "running"]
        h.wait_for(worker_running, 30, "the supervised worker running")
        worker = subprocess.run(["pgrep", "-xf", "/usr/bin/python3 -m http.server --bind "
                                 f"127.0.0.1 {env['WORKER'].split(':')[1]}"],
                                capture_output=True, text=True).stdout.split()
        self.assertEqual(len(worker), 1)
        self.assertTrue(self.processes_under(self.checkout))

        # A pid in the pids file that now belongs to someone else must not be killed.
        bystander = subprocess.Popen(["sleep", "60"])
        with open(os.path.join(self.checkout, ".vigie", "pids"), "a") as f:
            f.write(f"agent {bystander.pid} --config={self.checkout}/.vigie/agent.yaml\n")
        self.dev_env("stop")
        self.assertIsNone(bystander.poll(), "stop killed a process it did not start")
        bystander.kill()
        bystander.wait()
        self.assertEqual(self.processes_under(self.checkout), [])
        self.assertFalse(os.path.exists(f"/proc/{worker[0]}/cmdline") and
                         open(f"/proc/{worker[0]}/stat").read().split(") ")[1][0] != "Z",
                         "the supervised worker outlived stop")
        r = subprocess.run(["/usr/lib/postgresql/15/bin/pg_isready", "-h", "127.0.0.1", "-p",
                            env["PGPORT"]], capture_output=True)
        self.assertNotEqual(r.returncode, 0, "PostgreSQL still answers after stop")
        self.assertFalse(os.path.exists(env["PGSOCKET"]))


if __name__ == "__main__":
    unittest.main(verbosity=2)
