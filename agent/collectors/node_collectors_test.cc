// The node_exporter-compatible collectors on fixture files captured from real hosts
// (agent/testdata: a Linux 6.18 VM, and a Linux 4.14 diskstats without discard fields).
#include <sys/stat.h>

#include <fstream>
#include <sstream>

#include "agent/collectors/collector.h"
#include "agent/collectors/procfs.h"
#include "common/status_matchers.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"

namespace vigie::agent {
namespace {

using ::testing::Contains;
using ::testing::Pair;
using ::vigie::testing::IsOk;

std::string Fixture(const std::string& name) {
  std::ifstream in("testdata/" + name);
  std::stringstream ss;
  ss << in.rdbuf();
  EXPECT_FALSE(ss.str().empty()) << "missing fixture " << name;
  return ss.str();
}

// "name{k=v,...}" -> value, for assertions.
std::map<std::string, double> Flatten(const Collection& c) {
  std::map<std::string, double> out;
  for (const auto& s : c.samples) {
    std::string key = s.name();
    std::map<std::string, std::string> sorted(s.labels().begin(), s.labels().end());
    if (!sorted.empty()) {
      key += "{";
      for (const auto& [k, v] : sorted) key += k + "=" + v + ",";
      key.back() = '}';
    }
    out[key] = s.value();
  }
  return out;
}

TEST(ProcfsParsersTest, DiskstatsOfTwoKernelGenerations) {
  auto now = ParseDiskstats(Fixture("proc_diskstats"));
  ASSERT_THAT(now, IsOk());
  ASSERT_EQ(now->size(), 10u);
  EXPECT_EQ((*now)[8].device, "vda");
  EXPECT_EQ((*now)[8].fields.size(), 17u) << "6.x: discards and flushes";
  auto old = ParseDiskstats(Fixture("linux-4.14/proc_diskstats"));
  ASSERT_THAT(old, IsOk());
  EXPECT_EQ((*old)[0].fields.size(), 11u);
  EXPECT_EQ((*old)[0].fields[2], 5958022);  // sectors read
  EXPECT_FALSE(ParseDiskstats("8 0 sda 1 2\n").ok()) << "too short";
  EXPECT_FALSE(ParseDiskstats("8 0 sda 1 2 3 4 5 6 7 8 9 x 11\n").ok()) << "not a number";
}

TEST(ProcfsParsersTest, NetDevNamesColumnsFromTheHeader) {
  auto devs = ParseNetDev(Fixture("proc_net_dev"));
  ASSERT_THAT(devs, IsOk());
  ASSERT_EQ(devs->size(), 4u);
  EXPECT_EQ((*devs)[0].device, "lo");
  EXPECT_THAT((*devs)[3].values, Contains(Pair("receive_bytes", 162189031)));
  EXPECT_THAT((*devs)[3].values, Contains(Pair("transmit_colls", 0)));
  EXPECT_EQ((*devs)[3].values.size(), 16u);
  EXPECT_FALSE(ParseNetDev("garbage").ok());
}

TEST(ProcfsParsersTest, PressureTotalsInSeconds) {
  auto p = ParsePressure(Fixture("proc_pressure_cpu"));
  ASSERT_THAT(p, IsOk());
  EXPECT_DOUBLE_EQ(p->some_seconds, 54.696554);
  p = ParsePressure("some avg10=0.00 avg60=0.00 avg300=0.00 total=1500000\n");
  ASSERT_THAT(p, IsOk());
  EXPECT_EQ(p->full_seconds, -1) << "cpu before 5.13 has no full line";
  EXPECT_FALSE(ParsePressure("").ok());
}

TEST(ProcfsParsersTest, NetstatSnmpAndSockstat) {
  auto n = ParseNetstat(Fixture("proc_net_snmp"));
  ASSERT_THAT(n, IsOk());
  EXPECT_THAT(*n, Contains(Pair("Tcp_CurrEstab", ::testing::_)));
  EXPECT_THAT(*n, Contains(Pair("Udp_InDatagrams", ::testing::_)));
  EXPECT_FALSE(ParseNetstat("Tcp: A B\nUdp: 1 2\n").ok()) << "mismatched pair";
  auto s = ParseSockstat(Fixture("proc_net_sockstat"));
  ASSERT_THAT(s, IsOk());
  EXPECT_THAT(*s, Contains(Pair("sockets_used", 10)));
  EXPECT_THAT(*s, Contains(Pair("TCP_mem", 199)));
  auto v = ParseNameValueLines(Fixture("proc_vmstat"));
  ASSERT_THAT(v, IsOk());
  EXPECT_THAT(*v, Contains(Pair("pgmajfault", ::testing::_)));
}

TEST(ProcfsParsersTest, StatCountersAndProcessStatWithParenthesesInTheName) {
  auto c = ParseStatCounters(Fixture("proc_stat"));
  ASSERT_THAT(c, IsOk());
  EXPECT_GT(c->boot_time, 1e9);
  EXPECT_GT(c->context_switches, 0);
  auto p = ParseProcessStat(Fixture("proc_pid_stat_spaces"));
  ASSERT_THAT(p, IsOk());
  EXPECT_EQ(p->state, 'S');
  EXPECT_EQ(p->threads, 7);
  EXPECT_FALSE(ParseProcessStat("1 (x) S 1").ok());
}

TEST(HwmonTest, ChipAndSensorLabelsAsNodeExporter) {
  CollectorConfig config;
  config.paths.sysfs = "testdata/sys_hwmon";
  auto hwmon = NewHwmonCollector(config);
  Collection c;
  ASSERT_THAT(hwmon->Collect(1, &c), IsOk());
  auto m = Flatten(c);
  EXPECT_EQ(m["node_hwmon_temp_celsius{chip=platform_coretemp_0,sensor=temp1}"], 45);
  EXPECT_EQ(m["node_hwmon_temp_crit_celsius{chip=platform_coretemp_0,sensor=temp1}"], 100);
  EXPECT_EQ(m["node_hwmon_sensor_label{chip=platform_coretemp_0,label=package_id_0,sensor=temp1}"],
            1);
  EXPECT_EQ(m["node_hwmon_chip_names{chip=platform_coretemp_0,chip_name=coretemp}"], 1);
  // No device link: the chip is named after its name file.
  EXPECT_EQ(m["node_hwmon_fan_rpm{chip=nct6775,sensor=fan1}"], 1200);
  EXPECT_DOUBLE_EQ(m["node_hwmon_in_volts{chip=nct6775,sensor=in0}"], 1.104);
  EXPECT_EQ(HwmonCleanName("__Package id 0__"), "package_id_0");
}

TEST(HwmonTest, AHostWithoutHwmonExportsNothingAndSucceeds) {
  CollectorConfig config;
  config.paths.sysfs = "testdata/nonexistent";
  Collection c;
  EXPECT_THAT(NewHwmonCollector(config)->Collect(1, &c), IsOk());
  EXPECT_TRUE(c.samples.empty());
}

// Every default collector runs against this host's real /proc and /sys and succeeds.
TEST(LiveCollectorsTest, EveryDefaultCollectorSucceedsOnThisHost) {
  CollectorConfig config;
  for (auto& collector : NewCollectors(config, {})) {
    Collection c;
    absl::Status s = collector->Collect(1, &c);
    if (std::string(collector->name()) == "pressure" && !s.ok()) continue;  // kernel without PSI
    EXPECT_THAT(s, IsOk()) << collector->name();
  }
}

TEST(DiskstatsTest, PartitionsAndLoopDevicesAreLeftOutUnitsConverted) {
  std::string dir = ::testing::TempDir() + "/diskstats-proc";
  ASSERT_EQ(
      system(("mkdir -p " + dir + " && cp testdata/linux-4.14/proc_diskstats " + dir + "/diskstats")
                 .c_str()),
      0);
  CollectorConfig config;
  config.paths.procfs = dir;
  Collection c;
  ASSERT_THAT(NewDiskstatsCollector(config)->Collect(1, &c), IsOk());
  auto m = Flatten(c);
  EXPECT_EQ(m["node_disk_read_bytes_total{device=sda}"], 5958022.0 * 512);
  EXPECT_DOUBLE_EQ(m["node_disk_read_time_seconds_total{device=sda}"], 73.152);
  EXPECT_EQ(m.count("node_disk_read_bytes_total{device=sda1}"), 0u) << "a partition";
  EXPECT_EQ(m.count("node_disk_read_bytes_total{device=dm-0}"), 1u);
  EXPECT_EQ(m.count("node_disk_discards_completed_total{device=sda}"), 0u) << "not on 4.14";
}

// The netstat collector parses names once and then picks values by position: a second round,
// with new values in the same layout, must give the new values.
TEST(NetstatTest, SecondRoundPicksTheNewValues) {
  const std::string dir = ::testing::TempDir() + "/netstat-proc";
  ASSERT_EQ(system(("mkdir -p " + dir + "/net && cp testdata/proc_net_netstat " + dir +
                    "/net/netstat && cp testdata/proc_net_snmp6 " + dir + "/net/snmp6")
                       .c_str()),
            0);
  auto write_snmp = [&](int estab) {
    std::ofstream(dir + "/net/snmp") << "Tcp: RtoAlgorithm RtoMin CurrEstab InSegs\n"
                                     << "Tcp: 1 200 " << estab << " 77\n"
                                     << "Udp: InDatagrams NoPorts\nUdp: 5 6\n";
  };
  CollectorConfig config;
  config.paths.procfs = dir;
  auto netstat = NewNetstatCollector(config);
  for (int estab : {3, 9}) {
    write_snmp(estab);
    Collection c;
    ASSERT_THAT(netstat->Collect(1, &c), IsOk());
    auto m = Flatten(c);
    EXPECT_EQ(m["node_netstat_Tcp_CurrEstab"], estab);
    EXPECT_EQ(m["node_netstat_Tcp_InSegs"], 77);
    EXPECT_EQ(m["node_netstat_Udp_NoPorts"], 6);
    EXPECT_EQ(m.count("node_netstat_Tcp_RtoMin"), 0u) << "not in the default field set";
    EXPECT_EQ(m.count("node_netstat_Ip6_InOctets"), 1u);
  }
  std::ofstream(dir + "/net/snmp") << "Tcp: CurrEstab\nTcp: x\n";
  Collection c;
  EXPECT_FALSE(netstat->Collect(1, &c).ok()) << "a bad number is an error, not a zero";
}

TEST(ProcFileTest, ReadsAgainFromTheStartAndCopesWithOddFiles) {
  const std::string dir = ::testing::TempDir() + "/procfile";
  ASSERT_EQ(system(("rm -rf " + dir + " && mkdir -p " + dir).c_str()), 0);
  std::ofstream(dir + "/value") << "first\n";
  ProcFile f(dir + "/value");
  EXPECT_EQ(*f.Read(), "first\n");
  std::ofstream(dir + "/value") << "second, longer\n";  // rewritten in place
  EXPECT_EQ(*f.Read(), "second, longer\n");
  ProcFile live("/proc/loadavg");
  ASSERT_THAT(live.Read(), IsOk());
  ASSERT_THAT(live.Read(), IsOk()) << "the kernel regenerates it on each pread from 0";
  ASSERT_EQ(mkfifo((dir + "/fifo").c_str(), 0600), 0);
  ProcFile fifo(dir + "/fifo");
  const absl::Time start = absl::Now();
  (void)fifo.Read();  // whatever it says, it must not block
  EXPECT_LT(absl::Now() - start, absl::Seconds(2));
  ProcFile missing(dir + "/missing");
  EXPECT_EQ(missing.Read().status().code(), absl::StatusCode::kNotFound);
}

}  // namespace
}  // namespace vigie::agent
