#include "controlplane/options.h"

#include <fstream>

#include "absl/strings/str_cat.h"
#include "common/status_matchers.h"
#include "common/yaml_config.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"

namespace vigie::controlplane {
namespace {

using ::testing::HasSubstr;
using ::vigie::testing::IsOk;
using ::vigie::testing::StatusIs;

absl::StatusOr<ControlPlaneOptions> FromYaml(const std::string& yaml) {
  v1::ControlPlaneConfig c;
  if (absl::Status s = ParseYamlConfig(yaml, &c); !s.ok()) return s;
  return ControlPlaneOptionsFromConfig(c);
}

TEST(ControlPlaneOptionsTest, MinimalConfigGetsDefaults) {
  auto o = FromYaml("database_url: postgresql://vigie@127.0.0.1:5432/vigie\n");
  ASSERT_THAT(o, IsOk());
  EXPECT_EQ(o->grpc.listen, "127.0.0.1:7400");
  EXPECT_EQ(o->gateway.max_samples_per_batch, 10000u);
  EXPECT_EQ(o->gateway.generator_url, "http://127.0.0.1:9102/");
}

TEST(ControlPlaneOptionsTest, PlaintextBeyondLoopbackOnlyWhenInsecureIsSaid) {
  auto o = FromYaml("database_url: x\ngrpc_listen: 0.0.0.0:7400\ninsecure: true\n");
  ASSERT_THAT(o, IsOk());
  EXPECT_TRUE(o->grpc.insecure);
  o = FromYaml("database_url: x\ngrpc_listen: 0.0.0.0:7400\ntls: {cert_file: a, key_file: b}\n");
  ASSERT_THAT(o, IsOk());
  EXPECT_FALSE(o->grpc.insecure);
}

TEST(ControlPlaneOptionsTest, SecretsComeFromFilesOrEnvironment) {
  setenv("VIGIE_TEST_DB_URL", "postgresql://vigie:pw@127.0.0.1/vigie", 1);
  auto o = FromYaml("database_url_from: {env: VIGIE_TEST_DB_URL}\n");
  ASSERT_THAT(o, IsOk());
  EXPECT_EQ(o->database_url, "postgresql://vigie:pw@127.0.0.1/vigie");
  EXPECT_THAT(FromYaml("database_url_from: {env: VIGIE_TEST_DB_URL, file: /x}\n"),
              StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr("set exactly one")));
}

TEST(ControlPlaneOptionsTest, ErrorsNameTheField) {
  EXPECT_THAT(FromYaml("grpc_listen: 127.0.0.1:1\n"),
              StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr("database_url: required")));
  EXPECT_THAT(FromYaml("database_url: x\ngrpc_listen: 0.0.0.0:7400\n"),
              StatusIs(absl::StatusCode::kInvalidArgument,
                       HasSubstr("grpc_listen: \"0.0.0.0:7400\" is not a loopback IP")));
  EXPECT_THAT(FromYaml("database_url: x\ngrpc_listen: 127.evil.example:7400\n"),
              StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr("is not a loopback IP")));
  EXPECT_THAT(FromYaml("database_url: x\nhttp_listen: 0.0.0.0:9102\n"),
              StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr("http_listen")));
  EXPECT_THAT(FromYaml("database_url: x\nnotifier: 127.0.0.1:1\n"),
              StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr("notifier_token: required")));
  EXPECT_THAT(FromYaml("database_url: x\nnotifier: 10.1.2.3:1\nnotifier_token: {env: HOME}\n"),
              StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr("notifier_tls: required")));
  EXPECT_THAT(FromYaml("database_url: x\nbootstrap_admin_token: {file: /nonexistent}\n"),
              StatusIs(absl::StatusCode::kInvalidArgument,
                       HasSubstr("bootstrap_admin_token.file: cannot read")));
  EXPECT_THAT(
      FromYaml("database_url: x\ntls: {cert_file: /a}\n"),
      StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr("tls: cert_file and key_file")));
  EXPECT_THAT(FromYaml("database_url: x\nnotifier: nohost\n"),
              StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr("notifier: \"nohost\"")));
  EXPECT_THAT(FromYaml("database_url: x\nheartbeat_interval: 10\n"),
              StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr("heartbeat_interval")));
  EXPECT_THAT(FromYaml("database_url: x\nnotify_backoff: {multiplier: 0.5}\n"),
              StatusIs(absl::StatusCode::kInvalidArgument,
                       HasSubstr("notify_backoff.multiplier: must be >= 1, got 0.5")));
  EXPECT_THAT(FromYaml("database_url: x\nrules:\n  - {name: a, metric: m, op: '>>'}\n"),
              StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr("rules[0].op")));
}

TEST(ControlPlaneOptionsTest, CheckRulesReadsARulesFileAndNamesThePathAndField) {
  const std::string dir = ::testing::TempDir();
  const std::string good = dir + "/good-rules.yaml", bad = dir + "/bad-rules.yaml";
  {
    std::ofstream f(good);
    f << "rules:\n  - {name: HighLoad, metric: node_load1, op: '>', threshold: 4, for: 5m}\n"
         "  - {name: Down, absent_for: 2m}\n";
    std::ofstream g(bad);
    g << "rules:\n  - {name: A, metric: m, op: '>', threshold: 1}\n"
         "  - {name: B, metric: m, op: '=>', threshold: 1}\n";
  }
  absl::StatusOr<std::vector<Rule>> rules = LoadRulesFile(good);
  ASSERT_THAT(rules.status(), IsOk());
  EXPECT_EQ(rules->size(), 2u);
  EXPECT_THAT(LoadRulesFile(bad).status(),
              StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr(bad + ": rules[1].op")));
  EXPECT_THAT(LoadRulesFile(dir + "/missing.yaml").status(),
              StatusIs(absl::StatusCode::kNotFound, HasSubstr("missing.yaml")));
}

TEST(ControlPlaneOptionsTest, RulesWithHysteresisAndAbsenceFromYaml) {
  auto o = FromYaml(
      "database_url: x\nrules:\n"
      "  - {name: hot, metric: temp, op: '>', threshold: 90, clear_threshold: 80, "
      "clear_for: 1m}\n"
      "  - {name: AgentDown, absent_for: 2m}\n");
  ASSERT_THAT(o, IsOk());
  ASSERT_EQ(o->rules.size(), 2u);
  EXPECT_EQ(o->rules[0].clear_threshold, 80);
  EXPECT_EQ(o->rules[0].clear_for, absl::Minutes(1));
  EXPECT_EQ(o->rules[1].absent_for, absl::Minutes(2));
  // Without clear_threshold the threshold clears, and 0 is a threshold like any other.
  o = FromYaml(
      "database_url: x\nrules:\n  - {name: z, metric: m, op: '<', threshold: 5, "
      "clear_threshold: 0}\n");
  EXPECT_THAT(o, StatusIs(absl::StatusCode::kInvalidArgument,
                          HasSubstr("rules[0].clear_threshold: 0 must be on the good side")));
}

TEST(ControlPlaneOptionsTest, RetentionAndSeriesCache) {
  auto o = FromYaml("database_url: x\nretention: {raw: 30d, rollups: 2y}\n");
  EXPECT_THAT(o, StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr("retention.rollups")));
  o = FromYaml("database_url: x\nretention: {raw: 30d}\nseries_cache_bytes: 2000000\n");
  ASSERT_THAT(o, IsOk());
  EXPECT_EQ(o->retention_raw, absl::Hours(24 * 30));
  EXPECT_EQ(o->retention_rollups, absl::Hours(24 * 400));
  EXPECT_EQ(o->series_cache_bytes, 2000000u);
  o = FromYaml("database_url: x\nretention: {raw: 40h}\n");
  EXPECT_THAT(o, StatusIs(absl::StatusCode::kInvalidArgument,
                          HasSubstr("retention.raw: at least 2d, got \"40h\"")));
  o = FromYaml("database_url: x\nretention: {raw: 30d, rollups: 10d}\n");
  EXPECT_THAT(o, StatusIs(absl::StatusCode::kInvalidArgument,
                          HasSubstr("retention.rollups: at least retention.raw")));
  o = FromYaml("database_url: x\nseries_cache_bytes: 100\n");
  EXPECT_THAT(o, StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr("series_cache_bytes")));
}

TEST(ControlPlaneOptionsTest, RemoteWrite) {
  auto o = FromYaml(
      "database_url: x\nremote_write:\n"
      "  - {name: vm, url: 'http://10.0.0.9:8428/api/v1/write', shards: 4}\n");
  ASSERT_THAT(o, IsOk());
  ASSERT_EQ(o->remote_write.size(), 1u);
  EXPECT_EQ(o->remote_write[0].shards, 4);
  EXPECT_EQ(o->remote_write[0].max_samples_per_send, 2000u);
  struct Case {
    const char* yaml;
    const char* error;
  } cases[] = {
      {"- {name: 'a b', url: 'http://x/'}", "remote_write[0].name: \"a b\""},
      {"- {name: a, url: 'http://x/'}\n  - {name: a, url: 'http://y/'}",
       "remote_write[1].name: \"a\" is used"},
      {"- {name: a, url: 'ftp://x/'}", "remote_write[0].url: must start with http"},
      {"- {name: a, url: 'http://x/', shards: 99}", "remote_write[0].shards: at most 16"},
      {"- {name: a, url: 'http://x/', max_samples_per_send: 1000000}",
       "max_samples_per_send: at most 100000"},
      {"- {name: a, url: 'http://x/', timeout: 1ms}", "remote_write[0].timeout: between 100ms"},
      {"- {name: a, url: 'http://x/', timeout: 5m}", "remote_write[0].timeout: between 100ms"},
      // A token in clear beyond loopback.
      {"- {name: a, url: 'http://10.0.0.9/api/v1/write', bearer_token: {env: HOME}}",
       "credentials over plain http beyond loopback"},
  };
  for (const Case& c : cases) {
    EXPECT_THAT(FromYaml(absl::StrCat("database_url: x\nremote_write:\n  ", c.yaml, "\n")),
                StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr(c.error)))
        << c.yaml;
  }
  // Loopback, https, or insecure: true may carry credentials.
  EXPECT_THAT(FromYaml("database_url: x\nremote_write:\n  - {name: a, url: "
                       "'http://127.0.0.1:9090/api/v1/write', bearer_token: {env: HOME}}\n"),
              IsOk());
  EXPECT_THAT(FromYaml("database_url: x\nremote_write:\n  - {name: a, url: "
                       "'http://10.0.0.9/api/v1/write', bearer_token: {env: HOME}, "
                       "insecure: true}\n"),
              IsOk());
}

}  // namespace
}  // namespace vigie::controlplane
