#include "common/yaml_config.h"

#include <sys/stat.h>

#include <cstdlib>
#include <fstream>

#include "absl/strings/str_cat.h"
#include "common/status_matchers.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "vigie/v1/config.pb.h"

namespace vigie {
namespace {

using ::testing::HasSubstr;
using ::vigie::testing::IsOk;
using ::vigie::testing::StatusIs;

TEST(YamlConfigTest, MapsYamlOntoTheProto) {
  v1::ControlPlaneConfig c;
  ASSERT_THAT(ParseYamlConfig(R"(
grpc_listen: 127.0.0.1:7400
database_url: postgresql://vigie@127.0.0.1/vigie
storage_workers: 3
rules:
  - name: disk_low
    metric: node_filesystem_avail_bytes
    matchers: {mountpoint: /}
    op: "<"
    threshold: 1e9
    for: 5m
    labels: {team: ops}
)",
                              &c),
              IsOk());
  EXPECT_EQ(c.grpc_listen(), "127.0.0.1:7400");
  EXPECT_EQ(c.storage_workers(), 3u);
  ASSERT_EQ(c.rules_size(), 1);
  EXPECT_EQ(c.rules(0).matchers().at("mountpoint"), "/");
  EXPECT_EQ(c.rules(0).threshold(), 1e9);
  EXPECT_EQ(c.rules(0).for_(), "5m");
}

TEST(YamlConfigTest, NumbersAreAcceptedForStringFields) {
  v1::AgentConfig c;
  ASSERT_THAT(ParseYamlConfig("agent_id: 1234\nlabels: {rack: 7}\n", &c), IsOk());
  EXPECT_EQ(c.agent_id(), "1234");
  EXPECT_EQ(c.labels().at("rack"), "7");
}

TEST(YamlConfigTest, UnknownFieldNamesItsPathAndLine) {
  v1::ControlPlaneConfig c;
  absl::Status s = ParseYamlConfig("rules:\n  - name: a\n    opp: '>'\n", &c);
  EXPECT_THAT(s, StatusIs(absl::StatusCode::kInvalidArgument,
                          HasSubstr("rules[0].opp (line 3): unknown field")));
  EXPECT_THAT(std::string(s.message()), HasSubstr("known fields: name, metric"));
}

TEST(YamlConfigTest, MistypedValueNamesFieldAndValue) {
  v1::ControlPlaneConfig c;
  EXPECT_THAT(ParseYamlConfig("storage_workers: many\n", &c),
              StatusIs(absl::StatusCode::kInvalidArgument,
                       HasSubstr("storage_workers (line 1): expected a non-negative integer, "
                                 "got \"many\"")));
  EXPECT_THAT(ParseYamlConfig("rules:\n  - threshold: high\n", &c),
              StatusIs(absl::StatusCode::kInvalidArgument,
                       HasSubstr("rules[0].threshold (line 2): expected a number")));
  EXPECT_THAT(ParseYamlConfig("storage_workers: -1\n", &c),
              StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr("storage_workers")));
  EXPECT_THAT(
      ParseYamlConfig("rules: {name: a}\n", &c),
      StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr("rules (line 1): expected a list")));
}

TEST(YamlConfigTest, InvalidUtf8AndNonFiniteNumbersAreRefusedNotCrashedOn) {
  v1::ControlPlaneConfig c;
  EXPECT_THAT(ParseYamlConfig("external_url: \"http://h\xff/\"\n", &c),
              StatusIs(absl::StatusCode::kInvalidArgument,
                       HasSubstr("external_url (line 1): is not valid UTF-8")));
  EXPECT_THAT(ParseYamlConfig("rules:\n  - {name: a, labels: {\"k\xc3\": v}}\n", &c),
              StatusIs(absl::StatusCode::kInvalidArgument,
                       HasSubstr("rules[0].labels (line 2): a key is not valid UTF-8")));
  for (const char* bad : {"nan", "inf", "-inf", "1e999"}) {
    EXPECT_THAT(ParseYamlConfig(absl::StrCat("rules:\n  - {name: a, threshold: ", bad, "}\n"), &c),
                StatusIs(absl::StatusCode::kInvalidArgument,
                         HasSubstr("rules[0].threshold (line 2): expected a finite number")))
        << bad;
  }
}

TEST(YamlConfigTest, SyntaxErrorGivesLine) {
  v1::ControlPlaneConfig c;
  EXPECT_THAT(ParseYamlConfig("rules:\n  - name: [unclosed\n", &c),
              StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr("line ")));
}

TEST(YamlConfigTest, EmptyDocumentGivesDefaults) {
  v1::NotifierConfig c;
  EXPECT_THAT(ParseYamlConfig("", &c), IsOk());
  EXPECT_THAT(ParseYamlConfig("# only a comment\n", &c), IsOk());
}

TEST(YamlConfigTest, MissingFileIsNotFound) {
  v1::NotifierConfig c;
  EXPECT_THAT(LoadYamlConfigFile("/nonexistent/vigie.yaml", &c),
              StatusIs(absl::StatusCode::kNotFound, HasSubstr("/nonexistent/vigie.yaml")));
}

TEST(YamlConfigTest, Durations) {
  EXPECT_EQ(*ParseConfigDuration("for", "5m", absl::ZeroDuration()), absl::Minutes(5));
  EXPECT_EQ(*ParseConfigDuration("for", "", absl::Seconds(3)), absl::Seconds(3));
  EXPECT_THAT(ParseConfigDuration("rules[0].for", "5 minutes", absl::ZeroDuration()),
              StatusIs(absl::StatusCode::kInvalidArgument,
                       HasSubstr("rules[0].for: \"5 minutes\" is not a duration")));
  EXPECT_THAT(ParseConfigDuration("x", "-1s", absl::ZeroDuration()),
              StatusIs(absl::StatusCode::kInvalidArgument));
}

TEST(YamlConfigTest, HostPort) {
  EXPECT_THAT(ValidateHostPort("grpc_listen", "127.0.0.1:7400"), IsOk());
  EXPECT_THAT(ValidateHostPort("grpc_listen", "[::1]:7400"), IsOk());
  EXPECT_THAT(ValidateHostPort("grpc_listen", "7400"),
              StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr("grpc_listen: \"7400\"")));
  EXPECT_TRUE(IsLoopback("127.0.0.1:1"));
  EXPECT_TRUE(IsLoopback("127.3.2.1:1"));
  EXPECT_FALSE(IsLoopback("localhost:1"));
  EXPECT_FALSE(IsLoopback("127.evil.example:1"));
  EXPECT_FALSE(IsLoopback("127.0.0.1.nip.io:1"));
  EXPECT_FALSE(IsLoopback("[::ffff:10.0.0.1]:1"));
  EXPECT_FALSE(IsLoopback("[::]:1"));
  EXPECT_TRUE(IsLoopback("[::1]:1"));
  EXPECT_FALSE(IsLoopback("0.0.0.0:1"));
  EXPECT_FALSE(IsLoopback("10.0.0.1:1"));
}

TEST(YamlConfigTest, ReadConfigFileRefusesWhatCouldHangOrFillMemory) {
  EXPECT_THAT(ReadConfigFile("tls.cert_file", "/dev/zero", 10),
              StatusIs(absl::StatusCode::kInvalidArgument,
                       HasSubstr("tls.cert_file: cannot read \"/dev/zero\": not a regular file")));
  char dir[] = "/tmp/vigie-readfile-XXXXXX";
  ASSERT_NE(mkdtemp(dir), nullptr);
  const std::string fifo = std::string(dir) + "/fifo", big = std::string(dir) + "/big";
  ASSERT_EQ(mkfifo(fifo.c_str(), 0600), 0);
  EXPECT_THAT(ReadConfigFile("token.file", fifo, 10),  // returns at once: no writer awaited
              StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr("not a regular file")));
  std::ofstream(big) << std::string(11, 'x');
  EXPECT_THAT(ReadConfigFile("token.file", big, 10),
              StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr("over 10 bytes")));
  EXPECT_THAT(ReadConfigFile("token.file", big, 11), IsOk());
  EXPECT_THAT(ReadConfigFile("token.file", std::string(dir) + "/none", 10),
              StatusIs(absl::StatusCode::kNotFound, HasSubstr("token.file")));
  std::system((std::string("rm -rf ") + dir).c_str());
}

}  // namespace
TEST(ParseConfigBytesTest, UnitsAndBadValues) {
  EXPECT_EQ(*ParseConfigBytes("f", "", 7), 7u);
  EXPECT_EQ(*ParseConfigBytes("f", "4096", 0), 4096u);
  EXPECT_EQ(*ParseConfigBytes("f", "512MiB", 0), 512u << 20);
  EXPECT_EQ(*ParseConfigBytes("f", "10MB", 0), 10000000u);
  EXPECT_EQ(*ParseConfigBytes("f", "1.5GiB", 0), 1610612736u);
  EXPECT_EQ(*ParseConfigBytes("f", "2 KiB", 0), 2048u);
  for (const char* bad : {"-1MiB", "lots", "nan", "infMiB", "12XB", "1e300", "MiB", "0x10",
                          "99999999999999999999GiB"}) {
    absl::StatusOr<uint64_t> r = ParseConfigBytes("services[0].memory_limit", bad, 0);
    ASSERT_FALSE(r.ok()) << bad;
    EXPECT_THAT(std::string(r.status().message()),
                ::testing::HasSubstr(absl::StrCat("services[0].memory_limit: \"", bad, "\"")));
  }
}

}  // namespace vigie
