#include "agent/collectors/textfile.h"

#include <sys/stat.h>
#include <unistd.h>

#include <cmath>
#include <cstdio>
#include <filesystem>
#include <fstream>

#include "common/status_matchers.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"

namespace vigie::agent {
namespace {

constexpr int64_t kNow = 1764000000000;

using ::testing::HasSubstr;
using ::vigie::testing::IsOk;
using ::vigie::testing::StatusIs;

TEST(TextfileTest, ParsesSamplesLabelsTypesAndHelp) {
  Collection c;
  ASSERT_THAT(ParseTextfile(R"(# HELP backup_age_seconds Age of the last backup.
# TYPE backup_age_seconds gauge
backup_age_seconds{job="db",path="/var/backups \"x\""} 3600
jobs_run_total 12
up_ratio NaN
)",
                            kNow, {}, "Metric read from /t/a.prom", &c),
              IsOk());
  ASSERT_EQ(c.samples.size(), 3u);
  EXPECT_EQ(c.samples[0].name(), "backup_age_seconds");
  EXPECT_EQ(c.samples[0].labels().at("path"), "/var/backups \"x\"");
  EXPECT_EQ(c.samples[0].value(), 3600);
  EXPECT_EQ(c.samples[0].timestamp_ms(), kNow);
  EXPECT_TRUE(std::isnan(c.samples[2].value()));
  EXPECT_EQ(c.info.at("backup_age_seconds").type, MetricType::kGauge);
  EXPECT_EQ(c.info.at("backup_age_seconds").help, "Age of the last backup.");
  // Without HELP, node_exporter's text.
  EXPECT_EQ(c.info.at("jobs_run_total").help, "Metric read from /t/a.prom");
}

TEST(TextfileTest, ErrorsNameTheLineAndAppendNothing) {
  Collection c;
  const char* reason = "";
  EXPECT_THAT(ParseTextfile("ok 1\nbad{x=\"1\" 2\n", kNow, {}, "", &c, &reason),
              StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr("line 2")));
  EXPECT_STREQ(reason, "syntax");
  EXPECT_TRUE(c.samples.empty());
  EXPECT_THAT(ParseTextfile("m notanumber\n", kNow, {}, "", &c),
              StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr("bad value \"notanumber\"")));
  // What the control plane would refuse is refused here, so one line cannot stall the stream.
  EXPECT_THAT(ParseTextfile("m{a:b=\"1\"} 1\n", kNow, {}, "", &c),
              StatusIs(absl::StatusCode::kInvalidArgument,
                       HasSubstr("line 1: sample.labels: \"a:b\" is not a valid label name")));
  EXPECT_THAT(ParseTextfile("m{a=\"" + std::string(2000, 'x') + "\"} 1\n", kNow, {}, "", &c),
              StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr("exceeds 1024")));
  EXPECT_THAT(ParseTextfile("m{a=\"1\",a=\"2\"} 1\n", kNow, {}, "", &c),
              StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr("duplicate label a")));
  // The line that used to stall a whole agent.
  EXPECT_THAT(ParseTextfile("bad_metric{l=\"\xc3\x28\"} 1\n", kNow, {}, "", &c, &reason),
              StatusIs(absl::StatusCode::kInvalidArgument,
                       HasSubstr("line 1: sample.labels[\"l\"]: value \"\\xc3(\" is not valid "
                                 "UTF-8")));
  EXPECT_STREQ(reason, "invalid_sample");
  EXPECT_TRUE(c.samples.empty());
}

TEST(TextfileTest, ExplicitTimestampsAreRefusedAsNodeExporterDoes) {
  Collection c;
  const char* reason = "";
  EXPECT_THAT(ParseTextfile("m 1 1700000000123\n", kNow, {}, "", &c, &reason),
              StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr("explicit timestamps")));
  EXPECT_STREQ(reason, "timestamp");
}

TEST(TextfileTest, LimitsBoundOneFile) {
  Collection c;
  TextfileLimits limits;
  limits.max_samples_per_file = 2;
  EXPECT_THAT(ParseTextfile("a 1\nb 2\nc 3\n", kNow, limits, "", &c),
              StatusIs(absl::StatusCode::kResourceExhausted));
  limits.max_labels_per_sample = 1;
  EXPECT_THAT(ParseTextfile("a{x=\"1\",y=\"2\"} 1\n", kNow, limits, "", &c),
              StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr("labels")));
}

class TextfileDirTest : public ::testing::Test {
 protected:
  void SetUp() override {
    char tmpl[] = "/tmp/vigie-textfile-XXXXXX";
    ASSERT_NE(mkdtemp(tmpl), nullptr);
    dir_ = tmpl;
  }
  void TearDown() override { std::filesystem::remove_all(dir_); }
  std::map<std::string, double> Collect(TextfileCollector& t) {
    Collection c;
    EXPECT_THAT(t.Collect(kNow, &c), IsOk());
    std::map<std::string, double> by_name;
    for (const auto& s : c.samples) {
      std::string key = s.name();
      if (s.labels().count("reason")) key += "/" + s.labels().at("reason");
      by_name[key] = s.value();
    }
    return by_name;
  }
  std::string dir_;
};

TEST_F(TextfileDirTest, SkipsBadFilesAndReportsScrapeError) {
  std::ofstream(dir_ + "/good.prom") << "good_metric 1\n";
  std::ofstream(dir_ + "/bad.prom") << "bad metric\n";
  std::ofstream(dir_ + "/ignored.txt") << "ignored 1\n";
  TextfileCollector t(dir_, {});
  auto by_name = Collect(t);
  EXPECT_EQ(by_name.count("good_metric"), 1u);
  EXPECT_EQ(by_name.count("ignored"), 0u);
  EXPECT_EQ(by_name.at("node_textfile_scrape_error"), 1);
  EXPECT_EQ(by_name.at("vigie_agent_textfile_files_refused_total/syntax"), 1);
  std::filesystem::remove_all(dir_);
  Collection c;
  EXPECT_THAT(t.Collect(kNow, &c), StatusIs(absl::StatusCode::kUnavailable));
}

// Each hostile file is refused with its own reason, quickly, and the good file still counts.
TEST_F(TextfileDirTest, HostileFilesAreRefusedWithoutHanging) {
  std::ofstream(dir_ + "/good.prom") << "good_metric 1\n";
  ASSERT_EQ(mkfifo((dir_ + "/fifo.prom").c_str(), 0600), 0);
  ASSERT_EQ(symlink("/dev/zero", (dir_ + "/zero.prom").c_str()), 0);
  {
    std::ofstream big(dir_ + "/big.prom");
    big << "# " << std::string(2 << 20, 'x') << "\n";
  }
  {
    std::ofstream many(dir_ + "/many.prom");
    for (int i = 0; i < 100000; ++i) many << "series{i=\"" << i << "\"} 1\n";
  }
  std::ofstream(dir_ + "/stamped.prom") << "m 1 1700000000000\n";
  std::ofstream(dir_ + "/utf8.prom") << "bad_metric{l=\"\xc3\x28\"} 1\n";
  TextfileLimits limits;
  limits.max_file_bytes = 4 << 20;  // so many.prom (about 2.4 MB) fails on its sample count
  TextfileCollector t(dir_, limits);
  const absl::Time start = absl::Now();
  auto by_name = Collect(t);
  EXPECT_LT(absl::Now() - start, absl::Seconds(5)) << "nothing blocks";
  EXPECT_EQ(by_name.count("good_metric"), 1u);
  EXPECT_EQ(by_name.count("series"), 0u);
  EXPECT_EQ(by_name.at("vigie_agent_textfile_files_refused_total/not_regular"), 2);
  EXPECT_EQ(by_name.at("vigie_agent_textfile_files_refused_total/too_many_samples"), 1);
  EXPECT_EQ(by_name.at("vigie_agent_textfile_files_refused_total/timestamp"), 1);
  EXPECT_EQ(by_name.at("vigie_agent_textfile_files_refused_total/invalid_sample"), 1);
  limits.max_file_bytes = 1 << 20;
  TextfileCollector small(dir_, limits);
  by_name = Collect(small);
  EXPECT_EQ(by_name.at("vigie_agent_textfile_files_refused_total/too_large"), 2);  // big, many
}

}  // namespace
}  // namespace vigie::agent
