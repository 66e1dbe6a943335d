#!/usr/bin/python3
"""Grouping over real HTTP: alerts of one group reach the webhook and Slack as one message
(Alertmanager's payload with several alerts, each keeping its idempotency key), changes follow
after group_interval, a group still firing is repeated after repeat_interval, and an alert
that fires and resolves within group_wait is never sent (the delivery log says why)."""
import json
import os
import sys
import time
import unittest

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import vigie_harness as h  # noqa: E402


class NotifierGroupingTest(h.SystemTestCase):
    @classmethod
    def start_system(cls):
        cls.tmp = h.TempDir()
        t = cls.tmp.path
        cls.sink = h.RecordingSink()
        token_file, cls.token = h.write_secret(t, "notifier.token")
        slack_file, _ = h.write_secret(t, "slack.url", cls.sink.url + "/slack")
        cls.pg = h.Postgres(t)
        cls.grpc, cls.http = f"127.0.0.1:{h.free_port()}", f"127.0.0.1:{h.free_port()}"
        cls.notifier = h.Process(t, "vigie-notifier", f"""
grpc_listen: {cls.grpc}
http_listen: {cls.http}
client_token: {{file: {token_file}}}
database_url_from: {{file: {cls.pg.url_file}}}
spool_directory: {t}/spool
receivers:
  - name: hook
    webhook_configs: [{{url: "{cls.sink.url}/hook"}}]
  - name: chat
    slack_configs: [{{api_url: {{file: {slack_file}}}}}]
route:
  receiver: hook
  group_by: [alertname]
  group_wait: 2s
  group_interval: 2s
  repeat_interval: 6s
  routes:
    - receiver: chat
      matchers: ['severity="critical"']
      continue: true
    - receiver: hook
""", health_url=f"http://{cls.http}/healthz")
        cls.procs.append(cls.notifier)

    def notify(self, key, name, instance, resolved=False, severity="critical"):
        n = {"status": "STATUS_RESOLVED" if resolved else "STATUS_FIRING", "rule": name,
             "fingerprint": f"{name}/{instance}", "severity": severity,
             "labels": {"alertname": name, "instance": instance},
             "annotations": {"summary": f"{name} on {instance}"}}
        code, out, err = h.buf("-d", json.dumps({"idempotencyKey": key, "notification": n}),
                               f"http://{self.grpc}/vigie.v1.Notifier/Notify", token=self.token)
        self.assertEqual(code, 0, err)

    def hooks(self, name):
        out = []
        for _, _, headers, body in self.sink.matching("/hook"):
            j = json.loads(body)
            if j["groupLabels"].get("alertname") == name:
                out.append((headers, j))
        return out

    def test_a_group_is_one_message_then_changes_then_repeats(self):
        for i in "abc":
            self.notify(f"disk-{i}", "DiskFull", i)
        first = h.wait_for(lambda: self.hooks("DiskFull"), 20, "the group's first message")
        time.sleep(0.5)
        self.assertEqual(len(self.hooks("DiskFull")), 1, "three alerts, one message")
        headers, j = first[0]
        self.assertEqual(j["status"], "firing")
        self.assertEqual(j["groupLabels"], {"alertname": "DiskFull"})
        self.assertEqual(j["commonLabels"], {"alertname": "DiskFull"})
        self.assertEqual([a["labels"]["instance"] for a in j["alerts"]], ["a", "b", "c"])
        self.assertEqual([a["idempotencyKey"] for a in j["alerts"]], ["disk-a", "disk-b", "disk-c"])
        self.assertTrue(headers["Idempotency-Key"].startswith("group-"), headers)
        self.assertEqual(j["idempotencyKey"], headers["Idempotency-Key"])
        # Slack got the same group as one message (critical: the continue route).
        slack = h.wait_for(lambda: self.sink.matching("/slack"), 20, "the Slack message")
        title = json.loads(slack[0][3])["attachments"][0]["title"]
        self.assertTrue(title.startswith("[FIRING:3] DiskFull: DiskFull on a (+2 more)"), title)
        # b resolves: one message after group_interval, firing alerts first, then b.
        sent_first = time.monotonic()
        self.notify("disk-b-resolved", "DiskFull", "b", resolved=True)
        second = h.wait_for(lambda: self.hooks("DiskFull")[1:], 20, "the change")
        _, j = second[0]
        self.assertGreaterEqual(time.monotonic() - sent_first, 1.0, "group_interval paces it")
        self.assertEqual([(a["labels"]["instance"], a["status"]) for a in j["alerts"]],
                         [("a", "firing"), ("c", "firing"), ("b", "resolved")])
        # Nothing changes: the group (a, c) is sent again after repeat_interval, with a key of its
        # own so receivers that drop duplicate keys still see it.
        repeat = h.wait_for(lambda: self.hooks("DiskFull")[2:], 30, "the repeat")
        headers, j = repeat[0]
        self.assertTrue(headers["Idempotency-Key"].startswith("repeat-"), headers)
        self.assertEqual([a["labels"]["instance"] for a in j["alerts"]], ["a", "c"])

    def test_an_alert_fixed_within_group_wait_is_never_sent(self):
        self.notify("flap-1", "Flappy", "x", severity="warning")
        self.notify("flap-1-resolved", "Flappy", "x", resolved=True, severity="warning")
        self.notify("other-1", "Other", "y", severity="warning")
        h.wait_for(lambda: self.hooks("Other"), 20, "the other group's message")
        time.sleep(3)
        self.assertEqual(self.hooks("Flappy"), [])

        def skipped():
            code, out, err = h.buf("-d", json.dumps({"status": "skipped"}),
                                   f"http://{self.grpc}/vigie.v1.Notifier/ListDeliveries",
                                   token=self.token)
            self.assertEqual(code, 0, err)
            d = {x["idempotencyKey"]: x for x in json.loads(out or "{}").get("deliveries", [])}
            return d if {"flap-1", "flap-1-resolved"} <= d.keys() else None
        d = h.wait_for(skipped, 20, "both logged as skipped")
        self.assertIn("superseded", d["flap-1"]["lastError"])
        self.assertIn("resolved before its firing was sent", d["flap-1-resolved"]["lastError"])
        m = h.parse_metrics(h.http_get(f"http://{self.http}/metrics"))
        self.assertIn("vigie_notifier_alert_groups", m)


if __name__ == "__main__":
    unittest.main(verbosity=2)
