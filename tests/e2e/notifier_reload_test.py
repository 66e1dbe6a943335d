#!/usr/bin/python3
"""SIGHUP reloads the notifier's receivers and routes without a restart: notifications then go
where the new configuration says, nothing queued is lost, and a configuration that does not
validate is refused with its field while the running one stays."""
import json
import os
import signal
import sys
import unittest

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import vigie_harness as h  # noqa: E402


class NotifierReloadTest(h.SystemTestCase):
    @classmethod
    def start_system(cls):
        cls.tmp = h.TempDir()
        t = cls.tmp.path
        cls.sink = h.RecordingSink()
        cls.token_file, cls.token = h.write_secret(t, "notifier.token")
        cls.grpc, cls.http = f"127.0.0.1:{h.free_port()}", f"127.0.0.1:{h.free_port()}"
        cls.notifier = h.Process(t, "vigie-notifier", cls.config("a"),
                                 health_url=f"http://{cls.http}/healthz")
        cls.procs.append(cls.notifier)

    @classmethod
    def config(cls, path, extra=""):
        return f"""
grpc_listen: {cls.grpc}
http_listen: {cls.http}
client_token: {{file: {cls.token_file}}}
spool_directory: {cls.tmp.path}/spool
receivers:
  - name: main
    webhook_configs: [{{url: "{cls.sink.url}/{path}"}}]
{extra}"""

    def notify(self, key):
        code, out, err = h.buf("-d", json.dumps({"idempotencyKey": key, "notification": {
            "status": "STATUS_FIRING", "rule": "r", "fingerprint": key}}),
            f"http://{self.grpc}/vigie.v1.Notifier/Notify", token=self.token)
        return code, err

    def reload(self, text):
        with open(self.notifier.config, "w") as f:
            f.write(text)
        self.notifier.proc.send_signal(signal.SIGHUP)

    def keys_at(self, path):
        return {json.loads(b)["idempotencyKey"] for _, _, _, b in self.sink.matching(path)}

    def test_sighup_applies_a_valid_config_and_refuses_a_bad_one(self):
        self.assertEqual(self.notify("one")[0], 0)
        h.wait_for(lambda: "one" in self.keys_at("/a"), 20, "first notification at /a")
        # Valid: a new URL and a second receiver taking critical alerts.
        self.reload(self.config("b", f"""  - name: pager
    webhook_configs: [{{url: "{self.sink.url}/pager"}}]
route:
  receiver: main
  routes: [{{receiver: pager, matchers: ['team="pager"']}}]
"""))
        h.wait_for(lambda: "configuration reloaded" in self.notifier.log(), 20, "the reload")
        h.wait_for(lambda: self.notify("two")[0] == 0, 20, "Notify after the reload")
        h.wait_for(lambda: "two" in self.keys_at("/b"), 20, "second notification at /b")
        self.assertNotIn("two", self.keys_at("/a"))
        code, out, err = h.buf("-d", json.dumps({"idempotencyKey": "page", "notification": {
            "status": "STATUS_FIRING", "rule": "r", "labels": {"team": "pager"}}}),
            f"http://{self.grpc}/vigie.v1.Notifier/Notify", token=self.token)
        self.assertEqual(code, 0, err)
        h.wait_for(lambda: "page" in self.keys_at("/pager"), 20, "routed to the new receiver")
        # The key accepted before the reload is still a duplicate.
        code, out, err = h.buf("-d", json.dumps({"idempotencyKey": "one", "notification": {
            "status": "STATUS_FIRING", "rule": "r"}}),
            f"http://{self.grpc}/vigie.v1.Notifier/Notify", token=self.token)
        self.assertTrue(json.loads(out).get("duplicate"), out)
        # Invalid: refused with its field; the running configuration stays.
        self.reload(self.config("c", "route: {receiver: nobody}\n"))
        h.wait_for(lambda: "reload refused" in self.notifier.log(), 20, "the refusal")
        self.assertIn('route.receiver: \\"nobody\\" is not a configured receiver',
                      self.notifier.log())
        self.assertEqual(self.notify("three")[0], 0)
        h.wait_for(lambda: "three" in self.keys_at("/b"), 20, "third notification still at /b")
        self.assertIsNone(self.notifier.proc.poll())


if __name__ == "__main__":
    unittest.main(verbosity=2)
