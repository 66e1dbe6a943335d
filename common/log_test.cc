#include "common/log.h"

#include "gmock/gmock.h"
#include "gtest/gtest.h"

namespace vigie::log {
namespace {

using ::testing::HasSubstr;
using ::testing::Not;

TEST(LogTest, FormatsKeyValuePairsAndQuotesWhenNeeded) {
  EXPECT_EQ(FormatLine("agent connected", {{"agent", "web1"}, {"seq", 42}, {"ok", true}}),
            "msg=\"agent connected\" agent=web1 seq=42 ok=true");
  EXPECT_EQ(FormatLine("x", {{"err", "a \"b\"\nc"}, {"empty", ""}}),
            "msg=\"x\" err=\"a \\\"b\\\"\\nc\" empty=\"\"");
}

TEST(LogTest, RedactsSecretKeys) {
  std::string line = FormatLine("login", {{"admin_token", "s3cret"}, {"Password", "hunter2"}});
  EXPECT_THAT(line, Not(HasSubstr("s3cret")));
  EXPECT_THAT(line, Not(HasSubstr("hunter2")));
  EXPECT_THAT(line, HasSubstr("admin_token=[redacted]"));
}

TEST(LogTest, RedactsPasswordsInConnectionStrings) {
  EXPECT_EQ(RedactUrl("postgresql://vigie:s3cret@db:5432/vigie"),
            "postgresql://vigie:[redacted]@db:5432/vigie");
  EXPECT_EQ(RedactUrl("host=db user=vigie password=s3cret dbname=vigie"),
            "host=db user=vigie password=[redacted] dbname=vigie");
  EXPECT_EQ(RedactUrl("postgresql://vigie@db/vigie?password=x&sslmode=require"),
            "postgresql://vigie@db/vigie?password=[redacted]&sslmode=require");
  EXPECT_EQ(RedactUrl("postgresql://vigie@127.0.0.1:5432/vigie"),
            "postgresql://vigie@127.0.0.1:5432/vigie");
}

TEST(LogTest, ParsesLevels) {
  EXPECT_TRUE(SetLevel("debug").ok());
  EXPECT_TRUE(Enabled(Level::kDebug));
  EXPECT_TRUE(SetLevel("WARN").ok());
  EXPECT_FALSE(Enabled(Level::kInfo));
  absl::Status bad = SetLevel("loud");
  EXPECT_THAT(std::string(bad.message()), HasSubstr("\"loud\""));
  SetLevel(Level::kInfo);
}

}  // namespace
}  // namespace vigie::log
