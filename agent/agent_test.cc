#include "agent/agent.h"

#include <fstream>

#include "common/status_matchers.h"
#include "common/yaml_config.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"

namespace vigie::agent {
namespace {

using ::testing::HasSubstr;
using ::vigie::testing::IsOk;
using ::vigie::testing::StatusIs;

absl::StatusOr<AgentOptions> FromYaml(const std::string& yaml) {
  v1::AgentConfig c;
  if (absl::Status s = ParseYamlConfig(yaml, &c); !s.ok()) return s;
  return AgentOptionsFromConfig(c);
}

TEST(AgentOptionsTest, DefaultsAndOverrides) {
  setenv("VIGIE_TEST_AGENT_TOKEN", "vigie_test", 1);
  auto o = FromYaml(
      "agent_id: web1\ncollect_interval: 2s\nlabels: {env: prod}\n"
      "token: {env: VIGIE_TEST_AGENT_TOKEN}\n");
  ASSERT_THAT(o, IsOk());
  EXPECT_EQ(o->agent_id, "web1");
  EXPECT_EQ(o->collect_interval, absl::Seconds(2));
  EXPECT_EQ(o->controlplane, "127.0.0.1:7400");
  EXPECT_EQ(o->collectors.paths.procfs, "/proc");
  EXPECT_EQ(o->token, "vigie_test");
  EXPECT_FALSE(o->security.tls);
}

TEST(AgentOptionsTest, BadValuesNameTheField) {
  setenv("VIGIE_TEST_AGENT_TOKEN", "vigie_test", 1);
  const std::string t = "token: {env: VIGIE_TEST_AGENT_TOKEN}\n";
  EXPECT_THAT(FromYaml("agent_id: web1\n"),
              StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr("token: required")));
  EXPECT_THAT(FromYaml(t + "agent_id: 'web 1'\n"),
              StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr("agent_id: \"web 1\"")));
  EXPECT_THAT(FromYaml(t + "collect_interval: soon\n"),
              StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr("collect_interval")));
  EXPECT_THAT(FromYaml(t + "controlplane: nowhere\n"),
              StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr("controlplane: \"nowhere\"")));
  // A token is never sent in clear beyond loopback unless said so.
  EXPECT_THAT(FromYaml(t + "controlplane: 10.9.8.7:7400\n"),
              StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr("tls: required")));
  EXPECT_THAT(FromYaml(t + "controlplane: 127.0.0.1.example:7400\n"),
              StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr("tls: required")));
  EXPECT_THAT(FromYaml(t + "controlplane: 10.9.8.7:7400\ntls: {ca_file: /nonexistent}\n"),
              StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr("tls.ca_file: cannot read")));
  EXPECT_THAT(FromYaml(t + "controlplane: 10.9.8.7:7400\ninsecure: true\n"), IsOk());
  EXPECT_THAT(FromYaml(t + "http_listen: 0.0.0.0:9101\n"),
              StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr("not a loopback IP")));
  EXPECT_THAT(FromYaml(t + "http_listen: 0.0.0.0:9101\nhttp: {insecure: true}\n"), IsOk());
  EXPECT_THAT(FromYaml(t + "labels: {'bad-label': x}\n"),
              StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr("bad-label")));
  EXPECT_THAT(FromYaml(t + "reconnect_backoff: {initial: 10s, max: 1s}\n"),
              StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr("reconnect_backoff")));
  EXPECT_THAT(FromYaml(t + "mount_points_exclude: ['(']\n"),
              StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr("mount_points_exclude")));
}

TEST(AgentOptionsTest, CollectorsSpoolAndLimits) {
  setenv("VIGIE_TEST_AGENT_TOKEN", "vigie_test", 1);
  const std::string t = "token: {env: VIGIE_TEST_AGENT_TOKEN}\n";
  auto o = FromYaml(t +
                    "collectors: {hwmon: false, processes: true}\n"
                    "spool: {directory: /var/lib/vigie/spool, fsync: never}\n"
                    "max_message_bytes: 65536\ncollect_interval: 2s\n");
  ASSERT_THAT(o, IsOk());
  EXPECT_EQ(o->collector_switches.at("hwmon"), false);
  EXPECT_EQ(o->spool.directory, "/var/lib/vigie/spool");
  EXPECT_FALSE(o->spool.fsync);
  EXPECT_EQ(o->limits.max_message_bytes, 65536u);
  EXPECT_EQ(o->collector_timeout, absl::Seconds(2)) << "never above collect_interval";
  EXPECT_THAT(FromYaml(t + "collectors: {hwmn: false}\n"),
              StatusIs(absl::StatusCode::kInvalidArgument,
                       HasSubstr("collectors: \"hwmn\" is not a collector (known: cpu,")));
  EXPECT_THAT(FromYaml(t + "collect_interval: 1s\ncollector_timeout: 5s\n"),
              StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr("collector_timeout")));
  EXPECT_THAT(FromYaml(t + "spool: {directory: /x, fsync: sometimes}\n"),
              StatusIs(absl::StatusCode::kInvalidArgument,
                       HasSubstr("spool.fsync: must be \"always\" or \"never\", got "
                                 "\"sometimes\"")));
  EXPECT_THAT(FromYaml(t + "spool: {directory: /x, max_bytes: 1000}\n"),
              StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr("spool.max_bytes")));
  EXPECT_THAT(FromYaml(t + "max_message_bytes: 100\n"),
              StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr("max_message_bytes")));
  EXPECT_THAT(FromYaml(t + "max_samples_per_batch: 1000000\n"),
              StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr("max_samples_per_batch")));
}

// A fake procfs (the fixtures) and a textfile directory: one round yields node_exporter-named
// samples and queues them, split into batches of the configured size.
TEST(AgentTest, CollectOnceQueuesBatchesFromAllCollectors) {
  char tmpl[] = "/tmp/vigie-agent-test-XXXXXX";
  ASSERT_NE(mkdtemp(tmpl), nullptr);
  const std::string root = tmpl;
  ASSERT_EQ(system(("mkdir -p " + root + "/proc " + root + "/text && cp testdata/proc_stat " +
                    root + "/proc/stat && cp testdata/proc_meminfo " + root +
                    "/proc/meminfo && cp testdata/proc_loadavg " + root +
                    "/proc/loadavg && echo '/dev/root / ext4 rw 0 0' > " + root + "/proc/mounts")
                       .c_str()),
            0);
  std::ofstream(root + "/text/app.prom") << "app_queue_depth 7\n";

  AgentOptions o;
  o.agent_id = "t";
  o.collectors.paths.procfs = root + "/proc";
  o.collectors.textfile_directory = root + "/text";
  o.limits.max_samples_per_batch = 10;
  prometheus::Registry registry;
  FakeClock clock;
  clock.Set(absl::FromUnixSeconds(1764000000));
  Agent agent(o, &registry, &clock);
  agent.CollectOnce();

  std::map<std::string, int> names;
  for (const auto& f : agent.host_metrics().Collect()) names[f.name] = f.metric.size();
  EXPECT_EQ(names["node_cpu_seconds_total"], 16);  // 2 CPUs x 8 modes
  EXPECT_EQ(names["node_load1"], 1);
  EXPECT_EQ(names["node_memory_MemAvailable_bytes"], 1);
  EXPECT_EQ(names["node_filesystem_avail_bytes"], 1);
  EXPECT_EQ(names["app_queue_depth"], 1);
  size_t total = 0;
  for (const auto& [n, c] : names) total += c;
  // Batches of at most 10 samples, waiting for the first Welcome.
  EXPECT_EQ(agent.outbox().pending(), (total + 9) / 10);
  ASSERT_EQ(system(("rm -rf " + root).c_str()), 0);
}

// A new textfile value is queued at once (inotify), not at the next interval.
TEST(AgentTest, ATextfileChangeIsSentAtOnce) {
  char tmpl[] = "/tmp/vigie-agent-test-XXXXXX";
  ASSERT_NE(mkdtemp(tmpl), nullptr);
  const std::string root = tmpl;
  AgentOptions o;
  o.agent_id = "t";
  o.collectors.textfile_directory = root;
  o.collect_interval = absl::Hours(1);
  o.collector_switches = {
      {"cpu", false}, {"meminfo", false}, {"loadavg", false}, {"filesystem", false}};
  prometheus::Registry registry;
  FakeClock clock;
  Agent agent(o, &registry, &clock);
  agent.Start();
  auto wait_for = [&](size_t n) {
    for (int i = 0; i < 300 && agent.outbox().pending() < n; ++i) {
      absl::SleepFor(absl::Milliseconds(10));
    }
    return agent.outbox().pending();
  };
  EXPECT_EQ(wait_for(1), 1u);  // the first round, at start
  {
    std::ofstream tmp(root + "/.job.prom.tmp");
    tmp << "job_last_success_seconds 42\n";
  }
  ASSERT_EQ(rename((root + "/.job.prom.tmp").c_str(), (root + "/job.prom").c_str()), 0);
  EXPECT_EQ(wait_for(2), 2u) << "queued within 3s although the interval is an hour";
  agent.Stop();
  ASSERT_EQ(system(("rm -rf " + root).c_str()), 0);
}

}  // namespace
}  // namespace vigie::agent
