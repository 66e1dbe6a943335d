#include "agent/collectors/procfs.h"

#include <fstream>
#include <sstream>

#include "common/status_matchers.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"

namespace vigie::agent {
namespace {

using ::testing::SizeIs;
using ::vigie::testing::IsOk;

// Fixtures are real /proc files captured from a 2-CPU Debian 12 host (agent/testdata).
std::string Fixture(const std::string& name) {
  std::ifstream in("testdata/" + name);
  std::stringstream ss;
  ss << in.rdbuf();
  EXPECT_FALSE(ss.str().empty()) << "missing fixture " << name;
  return ss.str();
}

TEST(ProcfsTest, StatGivesSecondsPerCpuAndMode) {
  auto cpus = ParseProcStat(Fixture("proc_stat"), 100);
  ASSERT_THAT(cpus, IsOk());
  ASSERT_THAT(*cpus, SizeIs(2));
  EXPECT_EQ((*cpus)[0].cpu, "0");
  EXPECT_EQ((*cpus)[1].cpu, "1");
  // cpu0 4407 0 1074 365815 9 0 5 10 0 0
  EXPECT_DOUBLE_EQ((*cpus)[0].seconds.at("user"), 44.07);
  EXPECT_DOUBLE_EQ((*cpus)[0].seconds.at("idle"), 3658.15);
  EXPECT_DOUBLE_EQ((*cpus)[0].seconds.at("steal"), 0.10);
  EXPECT_THAT((*cpus)[0].seconds, SizeIs(8));
  EXPECT_THAT((*cpus)[0].guest_seconds, SizeIs(2));
}

TEST(ProcfsTest, StatRejectsGarbage) {
  EXPECT_FALSE(ParseProcStat("intr 1 2 3\n", 100).ok());
  EXPECT_FALSE(ParseProcStat("cpu0 1 x 3 4 5\n", 100).ok());
}

TEST(ProcfsTest, MeminfoConvertsKilobytesAndNamesAsNodeExporter) {
  auto m = ParseMeminfo(Fixture("proc_meminfo"));
  ASSERT_THAT(m, IsOk());
  ASSERT_TRUE(m->count("MemAvailable"));
  EXPECT_TRUE(m->at("MemAvailable").bytes);
  EXPECT_GT(m->at("MemTotal").value, 1e9);
  EXPECT_TRUE(m->count("Active_anon")) << "Active(anon) must become Active_anon";
  EXPECT_FALSE(m->at("HugePages_Total").bytes);
  auto small = ParseMeminfo("MemTotal:       2048 kB\nHugePages_Total:       3\n");
  ASSERT_THAT(small, IsOk());
  EXPECT_EQ(small->at("MemTotal").value, 2048.0 * 1024);
  EXPECT_EQ(small->at("HugePages_Total").value, 3);
}

TEST(ProcfsTest, Loadavg) {
  auto l = ParseLoadavg("0.52 0.58 0.59 2/456 12345\n");
  ASSERT_THAT(l, IsOk());
  EXPECT_DOUBLE_EQ(l->load1, 0.52);
  EXPECT_DOUBLE_EQ(l->load15, 0.59);
  EXPECT_THAT(ParseLoadavg(Fixture("proc_loadavg")), IsOk());
  EXPECT_FALSE(ParseLoadavg("garbage").ok());
}

TEST(ProcfsTest, MountsDecodeEscapesAndReadOnly) {
  auto mounts = ParseMounts(Fixture("proc_mounts"));
  ASSERT_THAT(mounts, IsOk());
  EXPECT_EQ((*mounts)[0].mount_point, "/proc");
  auto m = ParseMounts("/dev/sdb1 /mnt/my\\040disk ext4 ro,relatime 0 0\n");
  ASSERT_THAT(m, IsOk());
  EXPECT_EQ((*m)[0].mount_point, "/mnt/my disk");
  EXPECT_TRUE((*m)[0].read_only);
}

}  // namespace
}  // namespace vigie::agent
