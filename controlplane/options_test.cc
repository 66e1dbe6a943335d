#include "controlplane/options.h"

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

}  // namespace
}  // namespace vigie::controlplane
