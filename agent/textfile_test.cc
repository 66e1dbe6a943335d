#include "agent/textfile.h"

#include <cmath>
#include <cstdio>
#include <fstream>

#include "common/status_matchers.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"

namespace vigie::agent {
namespace {

using ::testing::HasSubstr;
using ::vigie::testing::IsOk;
using ::vigie::testing::StatusIs;

TEST(TextfileTest, ParsesSamplesLabelsTypesAndTimestamps) {
  Collection c;
  ASSERT_THAT(ParseTextfile(R"(# HELP backup_age_seconds Age of the last backup.
# TYPE backup_age_seconds gauge
backup_age_seconds{job="db",path="/var/backups \"x\""} 3600
jobs_run_total 12 1700000000123
up_ratio NaN
)",
                            1000, {}, &c),
              IsOk());
  ASSERT_EQ(c.samples.size(), 3u);
  EXPECT_EQ(c.samples[0].name(), "backup_age_seconds");
  EXPECT_EQ(c.samples[0].labels().at("path"), "/var/backups \"x\"");
  EXPECT_EQ(c.samples[0].value(), 3600);
  EXPECT_EQ(c.samples[0].timestamp_ms(), 1000);
  EXPECT_EQ(c.samples[1].timestamp_ms(), 1700000000123);
  EXPECT_TRUE(std::isnan(c.samples[2].value()));
  EXPECT_EQ(c.info.at("backup_age_seconds").type, MetricType::kGauge);
  EXPECT_EQ(c.info.at("backup_age_seconds").help, "Age of the last backup.");
}

TEST(TextfileTest, ErrorsNameTheLineAndAppendNothing) {
  Collection c;
  EXPECT_THAT(ParseTextfile("ok 1\nbad{x=\"1\" 2\n", 0, {}, &c),
              StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr("line 2")));
  EXPECT_TRUE(c.samples.empty());
  EXPECT_THAT(ParseTextfile("m notanumber\n", 0, {}, &c),
              StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr("bad value \"notanumber\"")));
  // What the control plane would refuse is refused here, so one line cannot stall the stream.
  EXPECT_THAT(ParseTextfile("m{a:b=\"1\"} 1\n", 0, {}, &c),
              StatusIs(absl::StatusCode::kInvalidArgument,
                       HasSubstr("line 1: sample.labels: \"a:b\" is not a valid label name")));
  EXPECT_THAT(ParseTextfile("m 1 -5\n", 0, {}, &c),
              StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr("timestamp_ms: -5")));
  EXPECT_THAT(ParseTextfile("m{a=\"" + std::string(2000, 'x') + "\"} 1\n", 0, {}, &c),
              StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr("longer than 1024")));
  EXPECT_THAT(ParseTextfile("m{a=\"1\",a=\"2\"} 1\n", 0, {}, &c),
              StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr("duplicate label a")));
}

TEST(TextfileTest, LimitsBoundOneFile) {
  Collection c;
  TextfileLimits limits;
  limits.max_samples_per_file = 2;
  EXPECT_THAT(ParseTextfile("a 1\nb 2\nc 3\n", 0, limits, &c),
              StatusIs(absl::StatusCode::kResourceExhausted));
  limits.max_labels_per_sample = 1;
  EXPECT_THAT(ParseTextfile("a{x=\"1\",y=\"2\"} 1\n", 0, limits, &c),
              StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr("labels")));
}

TEST(TextfileTest, DirectorySkipsBadFilesAndReportsScrapeError) {
  char tmpl[] = "/tmp/vigie-textfile-XXXXXX";
  ASSERT_NE(mkdtemp(tmpl), nullptr);
  const std::string dir = tmpl;
  std::ofstream(dir + "/good.prom") << "good_metric 1\n";
  std::ofstream(dir + "/bad.prom") << "bad metric\n";
  std::ofstream(dir + "/ignored.txt") << "ignored 1\n";
  Collection c;
  ASSERT_THAT(CollectTextfiles(dir, 5, {}, &c), IsOk());
  std::map<std::string, double> by_name;
  for (const auto& s : c.samples) by_name[s.name()] = s.value();
  EXPECT_EQ(by_name.count("good_metric"), 1u);
  EXPECT_EQ(by_name.count("ignored"), 0u);
  EXPECT_EQ(by_name.at("node_textfile_scrape_error"), 1);
  std::remove((dir + "/good.prom").c_str());
  std::remove((dir + "/bad.prom").c_str());
  std::remove((dir + "/ignored.txt").c_str());
  rmdir(dir.c_str());
  EXPECT_THAT(CollectTextfiles(dir, 5, {}, &c), StatusIs(absl::StatusCode::kUnavailable));
}

}  // namespace
}  // namespace vigie::agent
