#!/usr/bin/python3
"""Supervised services end to end: the agent keeps a real HTTP server running; SIGKILL it and
the exit is a ServiceEvent in PostgreSQL (signal 9), the service is running again within a
second plus its backoff, a rule on vigie_service_stable fires at the webhook once and resolves once
after the stable period; its output is in its log file; Admin RestartService restarts it; an agent
killed and started again re-adopts it (same process, output uninterrupted); `vigie-agent
stop-services` stops it."""
import json
import os
import signal
import subprocess
import sys
import time
import unittest
import urllib.request

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import vigie_harness as h  # noqa: E402


def pids_of(pattern):
    r = subprocess.run(["pgrep", "-f", pattern], capture_output=True, text=True)
    return [int(p) for p in r.stdout.split()]


class ServicesTest(h.SystemTestCase):
    @classmethod
    def start_system(cls):
        cls.tmp = h.TempDir()
        t = cls.tmp.path
        cls.sink = h.RecordingSink()
        notifier, nt_grpc, nt_token = h.webhook_notifier(t, cls.sink)
        cls.procs.append(notifier)
        cls.pg = h.Postgres(t)
        admin_file, admin = h.write_secret(t, "admin.token")
        cp_grpc, cp_http = f"127.0.0.1:{h.free_port()}", f"127.0.0.1:{h.free_port()}"
        cls.procs.append(h.Process(t, "vigie-controlplane", f"""
grpc_listen: {cp_grpc}
http_listen: {cp_http}
database_url_from: {{file: {cls.pg.url_file}}}
bootstrap_admin_token: {{file: {admin_file}}}
notifier: {nt_grpc}
notifier_token: {{file: {nt_token}}}
rules:
  - name: ServiceDown
    metric: vigie_service_stable
    matchers: {{service: web}}
    op: "<"
    threshold: 1
    severity: critical
    annotations: {{summary: "{{{{labels.service}}}} exited on {{{{labels.agent}}}}"}}
  - name: CrashLoop
    service: {{names: ["flaky*"], on: crash_loop, restarts: 2}}
    severity: warning
  - name: RestartsWithin
    service: {{names: [flaky], on: crash_loop, restarts: 2, within: 15s}}
    severity: warning
""", health_url=f"http://{cp_http}/healthz"))
        cls.admin, cls.cp_grpc = admin, cp_grpc
        ag_file, _ = h.write_secret(t, "agent.token", h.create_token(
            cp_grpc, admin, "TOKEN_KIND_AGENT", "web1"))
        cls.port = h.free_port()
        cls.pattern = f"^/usr/bin/python3 -m http.server {cls.port}"  # not its shim
        cls.logs = os.path.join(t, "logs")
        ag_http = f"127.0.0.1:{h.free_port()}"
        cls.agent = h.Process(t, "vigie-agent", f"""agent_id: web1
controlplane: {cp_grpc}
token: {{file: {ag_file}}}
http_listen: {ag_http}
collect_interval: 1s
service_state_directory: {t}/services-state
services:
  - name: web
    command: [/usr/bin/python3, -m, http.server, "{cls.port}", --bind, 127.0.0.1]
    working_directory: {t}
    backoff: {{initial: 200ms, max: 2s}}
    stable_after: 2s
    stop_timeout: 2s
    log: {{directory: {cls.logs}, max_bytes: 100000, keep: 2}}
  - name: flaky
    # Fails three times, then stays up: a crash loop that ends.
    command: [/bin/sh, -c, 'n=$(cat {t}/flaky.n 2>/dev/null || echo 0); echo $((n+1)) > {t}/flaky.n; [ "$n" -ge 3 ] && exec sleep 3600; exit 1']
    backoff: {{initial: 100ms, max: 200ms}}
    stable_after: 1s
    log: {{directory: {cls.logs}}}
""", health_url=f"http://{ag_http}/healthz")
        cls.procs.append(cls.agent)

    @classmethod
    def tearDownClass(cls):
        # The services outlive the agent by design: stop what a failed test left (with a
        # config of its own, as a test may have left the agent's broken).
        cleanup = os.path.join(cls.tmp.path, "cleanup.yaml")
        with open(cleanup, "w") as f:
            f.write(f"service_state_directory: {cls.tmp.path}/services-state\n")
        subprocess.run([os.path.join(h.BIN, "vigie-agent"), "stop-services",
                        f"--config={cleanup}"], capture_output=True, timeout=60)
        super().tearDownClass()

    def events(self, kind=None):
        where = f" AND kind = '{kind}'" if kind else ""
        return self.pg.query("SELECT kind, exit_code, signal, message FROM service_events "
                             f"WHERE agent_id = 'web1' AND service = 'web'{where} ORDER BY ts")

    def get(self):
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{self.port}/", timeout=2) as r:
                return r.status
        except OSError:
            return None

    def test_killed_service_restarts_notifies_once_and_resolves(self):
        h.wait_for(lambda: self.events("KIND_STABLE"), 30, "the service up and stable")
        self.assertEqual(self.get(), 200)
        self.assertEqual(h.webhook_alerts(self.sink, "ServiceDown"), [])
        [pid] = pids_of(self.pattern)
        killed = time.time()
        os.kill(pid, signal.SIGKILL)
        exited = h.wait_for(lambda: self.events("KIND_EXITED"), 20, "the exit stored")[0]
        self.assertEqual(exited[1:3], ["-1", "9"])
        self.assertIn("killed by signal 9", exited[3])
        firing = h.wait_for(lambda: h.webhook_alerts(self.sink, "ServiceDown"), 20,
                            "ServiceDown at the webhook")[0]
        self.assertEqual(firing["status"], "firing")
        self.assertEqual(firing["labels"]["service"], "web")
        self.assertEqual(firing["annotations"]["summary"], "web exited on web1")
        # Running again: a new process, within a second plus the backoff.
        def restarted():
            pids = pids_of(self.pattern)
            return pids and pids[0] != pid and self.get() == 200
        h.wait_for(restarted, 10, "the service restarted")
        self.assertLess(time.time() - killed, 5)
        resolved = h.wait_for(lambda: [a for a in h.webhook_alerts(self.sink, "ServiceDown")
                                       if a["status"] == "resolved"], 20, "ServiceDown resolved")
        self.assertEqual(resolved[0]["fingerprint"], firing["fingerprint"])
        time.sleep(2)
        self.assertEqual([a["status"] for a in h.webhook_alerts(self.sink, "ServiceDown")],
                         ["firing", "resolved"])
        kinds = [e[0] for e in self.events()]
        self.assertEqual(kinds[:6], ["KIND_STARTED", "KIND_STABLE", "KIND_EXITED",
                                     "KIND_RESTARTING", "KIND_STARTED", "KIND_STABLE"])
        # The control plane keeps its state: running again, one restart, killed by signal 9.
        code, out, err = h.buf("-d", json.dumps({"agentId": "web1"}),
                               f"http://{self.cp_grpc}/vigie.v1.Admin/ListServices",
                               token=self.admin)
        self.assertEqual(code, 0, err)
        [svc] = [s for s in json.loads(out)["services"] if s["name"] == "web"]
        self.assertEqual((svc["name"], svc["state"], svc["restarts"]), ("web", "running", 1))
        self.assertEqual((svc["lastExitCode"], svc["lastSignal"]), (-1, 9))
        self.assertEqual(svc["lastEvent"], "KIND_STABLE")
        code, out, err = h.buf("-d", json.dumps({"state": "sleeping"}),
                               f"http://{self.cp_grpc}/vigie.v1.Admin/ListServices",
                               token=self.admin)
        self.assertNotEqual(code, 0)
        self.assertIn("state: running, exited, backoff or stopped, got", err)
        # Its output (http.server logs each request on stderr) is in its log file.
        with open(os.path.join(self.logs, "web.log")) as f:
            self.assertIn('"GET / HTTP/1.1" 200', f.read())

    def test_crash_loop_rule_fires_and_resolves_once_the_service_is_stable(self):
        firing = h.wait_for(lambda: [a for a in h.webhook_alerts(self.sink, "CrashLoop")
                                     if a["status"] == "firing"], 30, "CrashLoop firing")
        self.assertEqual(firing[0]["labels"]["service"], "flaky")
        self.assertEqual(firing[0]["annotations"]["summary"],
                         "flaky on web1 is in a crash loop (3 restarts in a row)")
        h.wait_for(lambda: [a for a in h.webhook_alerts(self.sink, "CrashLoop")
                            if a["status"] == "resolved"], 30, "CrashLoop resolved when stable")
        self.assertEqual([a["status"] for a in h.webhook_alerts(self.sink, "CrashLoop")],
                         ["firing", "resolved"])
        restarting = self.pg.query("SELECT message FROM service_events WHERE agent_id = 'web1' "
                                   "AND service = 'flaky' AND kind = 'KIND_RESTARTING' "
                                   "ORDER BY ts")
        self.assertIn("3 in a row", restarting[2][0])
        # The window rule (the control plane's timer, from the stored events): fires, and
        # resolves once the restarts are older than 15s.
        windowed = h.wait_for(lambda: [a for a in h.webhook_alerts(self.sink, "RestartsWithin")
                                       if a["status"] == "firing"], 30, "RestartsWithin firing")
        self.assertEqual(windowed[0]["annotations"]["summary"],
                         "flaky on web1 restarted 3 times within 15s")
        h.wait_for(lambda: [a for a in h.webhook_alerts(self.sink, "RestartsWithin")
                            if a["status"] == "resolved"], 45, "RestartsWithin resolved")

    def test_restart_service_through_the_admin_api(self):
        h.wait_for(lambda: self.events("KIND_STARTED"), 30, "the service started")
        h.wait_for(lambda: self.get() == 200, 20, "the service answering")
        [pid] = pids_of(self.pattern)
        firing_before = len(h.webhook_alerts(self.sink, "ServiceDown"))
        url = f"http://{self.cp_grpc}/vigie.v1.Admin/RestartService"
        # A viewer may look, not restart; a service the agent never reported is NOT_FOUND.
        viewer = h.create_token(self.cp_grpc, self.admin, "TOKEN_KIND_VIEWER")
        code, _, err = h.buf("-d", json.dumps({"agentId": "web1", "name": "web"}), url,
                             token=viewer)
        self.assertEqual(h.grpc_code(err), "permission_denied", err)
        code, _, err = h.buf("-d", json.dumps({"agentId": "web1", "name": "nope"}), url,
                             token=self.admin)
        self.assertEqual(h.grpc_code(err), "not_found", err)
        self.assertIn('has reported no service "nope"', json.loads(err)["message"])
        code, _, err = h.buf("-d", json.dumps({"agentId": "web1", "name": "web",
                                               "timeout": "10m"}), url, token=self.admin)
        self.assertEqual(h.grpc_code(err), "invalid_argument", err)
        self.assertIn("timeout: must be between 1s and 5m", err)
        # The call returns the STARTED event of the new process.
        code, out, err = h.buf("-d", json.dumps({"agentId": "web1", "name": "web"}), url,
                               token=self.admin)
        self.assertEqual(code, 0, err)
        event = json.loads(out)["event"]
        self.assertEqual((event["service"], event["kind"]), ("web", "KIND_STARTED"))
        self.assertNotEqual(event["pid"], pid)
        h.wait_for(lambda: pids_of(self.pattern) == [event["pid"]], 10, "the new process alone")
        h.wait_for(lambda: self.get() == 200, 20, "the restarted service answering")
        stopped = h.wait_for(lambda: self.events("KIND_STOPPED"), 10, "the stop stored")
        self.assertIn("restart asked through the Admin API", stopped[-1][3])
        # An asked restart is not an outage: no alert.
        time.sleep(1)
        self.assertEqual(len(h.webhook_alerts(self.sink, "ServiceDown")), firing_before)
        audit = self.pg.query("SELECT action, target FROM audit_log "
                              "WHERE action = 'RestartService'")
        self.assertEqual(audit, [["RestartService", "web1/web"]])

    def test_x_a_killed_agent_leaves_the_service_running_and_the_next_adopts_it(self):
        h.wait_for(lambda: self.get() == 200, 20, "the service answering")
        [pid] = pids_of(self.pattern)
        self.agent.kill()  # SIGKILL: a crash, or an upgrade's restart
        time.sleep(1)
        self.assertEqual(pids_of(self.pattern), [pid])
        self.assertEqual(self.get(), 200)
        self.agent.start()
        adopted = h.wait_for(lambda: self.events("KIND_ADOPTED"), 20, "the adoption stored")
        self.assertIn(f"adopted pid {pid}", adopted[-1][3])
        self.assertEqual(pids_of(self.pattern), [pid])
        # Still supervised: an exit is seen and the service restarted.
        os.kill(pid, signal.SIGKILL)
        h.wait_for(lambda: (pids_of(self.pattern) or [pid])[0] != pid and self.get() == 200, 20,
                   "restarted by the new agent")
        # The requests it logged while no agent ran are in its log file.
        with open(os.path.join(self.logs, "web.log")) as f:
            self.assertGreaterEqual(f.read().count('"GET / HTTP/1.1" 200'), 3)

    def test_y_sighup_adds_a_service_and_leaves_the_others_running(self):
        h.wait_for(lambda: self.get() == 200, 20, "the service answering")
        [pid] = pids_of(self.pattern)
        with open(self.agent.config) as f:
            config = f.read()
        with open(self.agent.config, "w") as f:
            f.write(config + """  - name: second
    command: [/bin/sleep, "3600"]
    log: {directory: %s}
""" % self.logs)
        self.agent.proc.send_signal(signal.SIGHUP)
        h.wait_for(lambda: self.pg.query("SELECT 1 FROM service_events WHERE agent_id = 'web1' "
                                         "AND service = 'second' AND kind = 'KIND_STARTED'"),
                   20, "the added service started\n" + self.agent.log()[-2000:])
        self.assertEqual(pids_of(self.pattern), [pid], "an unchanged service was restarted")
        # A config that does not parse changes nothing.
        with open(self.agent.config, "w") as f:
            f.write(config + "  - name: [broken\n")
        self.agent.proc.send_signal(signal.SIGHUP)
        h.wait_for(lambda: "reload refused" in self.agent.log(), 10, "the refusal logged")
        self.assertEqual(pids_of(self.pattern), [pid])
        self.assertEqual(len(pids_of("^/bin/sleep 3600")), 1)
        with open(self.agent.config, "w") as f:
            f.write(config + """  - name: second
    command: [/bin/sleep, "3600"]
    log: {directory: %s}
""" % self.logs)

    def test_z_stop_services_stops_what_the_agent_left_running(self):
        h.wait_for(lambda: pids_of(self.pattern), 20, "the service running")
        self.assertEqual(self.agent.terminate(), 0, self.agent.log()[-3000:])
        # The agent's stop leaves it running (stop_services_on_exit is off by default).
        self.assertEqual(len(pids_of(self.pattern)), 1)
        r = subprocess.run([os.path.join(h.BIN, "vigie-agent"), f"--config={self.agent.config}",
                            "stop-services"],
                           capture_output=True, text=True, timeout=60)
        self.assertEqual(r.returncode, 0, r.stderr)
        self.assertIn("web: stopped", r.stdout)
        self.assertIn("second: stopped", r.stdout)  # no longer configured: TERM, 10s
        self.assertEqual(pids_of(self.pattern), [])
        self.assertEqual(pids_of("^/bin/sleep 3600"), [])


if __name__ == "__main__":
    unittest.main()
