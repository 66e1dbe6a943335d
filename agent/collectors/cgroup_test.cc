// The cgroup collector on fixture trees of both layouts (cgroup v2 as Linux 5.10 and 6.1
// write it, cgroup v1 as these build machines' kernel does), and live: a process OOM-killed in a
// memory cgroup of this host shows up in container_oom_events_total for that cgroup.
#include "agent/collectors/cgroup.h"

#include <sys/stat.h>
#include <unistd.h>

#include <fstream>

#include "agent/collectors/collector.h"
#include "common/status_matchers.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"

namespace vigie::agent {
namespace {

using ::vigie::testing::IsOk;

std::map<std::string, double> Collect(const std::string& sysfs) {
  CollectorConfig config;
  config.paths.sysfs = sysfs;
  Collection c;
  EXPECT_THAT(NewCgroupCollector(config)->Collect(1, &c), IsOk());
  std::map<std::string, double> out;
  for (const auto& s : c.samples) {
    std::string key = s.name();
    std::map<std::string, std::string> sorted(s.labels().begin(), s.labels().end());
    for (const auto& [k, v] : sorted) key += "," + k + "=" + v;
    out[key] = s.value();
  }
  return out;
}

TEST(CgroupTest, V2OfLinux61) {
  EXPECT_EQ(DetectCgroupLayout("testdata/cgroup_v2_linux-6.1/fs/cgroup"), CgroupLayout::kV2);
  auto m = Collect("testdata/cgroup_v2_linux-6.1");
  const std::string id = ",id=/system.slice/docker-abc.scope";
  EXPECT_EQ(m["container_cpu_usage_seconds_total,cpu=total" + id], 2.5);
  EXPECT_EQ(m["container_cpu_user_seconds_total" + id], 2);
  EXPECT_EQ(m["container_cpu_cfs_throttled_periods_total" + id], 4);
  EXPECT_DOUBLE_EQ(m["container_cpu_cfs_throttled_seconds_total" + id], 0.12);
  EXPECT_EQ(m["container_memory_usage_bytes" + id], 268435456);
  EXPECT_EQ(m["container_memory_working_set_bytes" + id], 268435456 - 33554432);
  EXPECT_EQ(m["container_memory_rss" + id], 201326592);
  EXPECT_EQ(m["container_memory_cache" + id], 50331648);
  EXPECT_EQ(m["container_memory_max_usage_bytes" + id], 530579456);
  EXPECT_EQ(m["container_spec_memory_limit_bytes" + id], 536870912);
  EXPECT_EQ(m["container_oom_events_total" + id], 2);
  EXPECT_EQ(m["container_processes" + id], 3);
  EXPECT_EQ(m["container_threads" + id], 7);
  EXPECT_EQ(m.count("container_threads_max" + id), 0u) << "\"max\" = unlimited";
  EXPECT_EQ(m["container_fs_reads_bytes_total,device=8:0" + id], 4096);
  EXPECT_EQ(m["container_fs_writes_total,device=8:0" + id], 2);
  EXPECT_EQ(m.count("container_spec_memory_limit_bytes,id=/system.slice"), 0u);
  EXPECT_EQ(m["container_cpu_usage_seconds_total,cpu=total,id=/"], 9);
  EXPECT_EQ(m["vigie_agent_cgroups_truncated"], 0);
}

TEST(CgroupTest, V2OfLinux510HasNoPeak) {
  auto m = Collect("testdata/cgroup_v2_linux-5.10");
  const std::string id = ",id=/system.slice/docker-abc.scope";
  EXPECT_EQ(m.count("container_memory_max_usage_bytes" + id), 0u) << "memory.peak is 5.19+";
  EXPECT_EQ(m["container_oom_events_total" + id], 2);
  EXPECT_EQ(m["container_memory_usage_bytes" + id], 268435456);
}

TEST(CgroupTest, V1) {
  EXPECT_EQ(DetectCgroupLayout("testdata/cgroup_v1/fs/cgroup"), CgroupLayout::kV1);
  auto m = Collect("testdata/cgroup_v1");
  const std::string id = ",id=/docker/abc";
  EXPECT_EQ(m["container_cpu_usage_seconds_total,cpu=total" + id], 1.5);
  EXPECT_EQ(m["container_cpu_user_seconds_total" + id], 100.0 / sysconf(_SC_CLK_TCK));
  EXPECT_DOUBLE_EQ(m["container_cpu_cfs_throttled_seconds_total" + id], 0.005);
  EXPECT_EQ(m["container_memory_usage_bytes" + id], 134217728);
  EXPECT_EQ(m["container_memory_working_set_bytes" + id], 134217728 - 16777216);
  EXPECT_EQ(m["container_memory_max_usage_bytes" + id], 167772160);
  EXPECT_EQ(m["container_memory_failcnt" + id], 42);
  EXPECT_EQ(m["container_oom_events_total" + id], 1);
  EXPECT_EQ(m["container_processes" + id], 2);
  EXPECT_EQ(m["container_threads" + id], 5);
  EXPECT_EQ(m["container_fs_reads_bytes_total,device=8:0" + id], 4096);
  EXPECT_EQ(m["container_fs_writes_bytes_total,device=8:0" + id], 12288);
  EXPECT_EQ(m["container_fs_writes_total,device=8:0" + id], 3);
  EXPECT_EQ(m.count("container_spec_memory_limit_bytes,id=/"), 0u) << "unlimited";
}

TEST(CgroupTest, TheNumberOfCgroupsIsBounded) {
  bool truncated = false;
  auto groups =
      ReadCgroups("testdata/cgroup_v2_linux-6.1/fs/cgroup", CgroupLayout::kV2, 2, &truncated);
  ASSERT_THAT(groups, IsOk());
  EXPECT_EQ(groups->size(), 2u);
  EXPECT_TRUE(truncated);
  EXPECT_EQ((*groups)[0].id, "/") << "nearest the root first";
}

bool Write(const std::string& path, const std::string& value) {
  std::ofstream f(path);
  f << value;
  f.flush();
  return static_cast<bool>(f);
}

// Live, on whichever layout this host has: an OOM kill is attributed to its cgroup.
TEST(CgroupLiveTest, AnOomKillShowsUpForItsCgroup) {
  if (geteuid() != 0) GTEST_SKIP() << "needs root to make a cgroup";
  const std::string root = "/sys/fs/cgroup";
  const CgroupLayout layout = DetectCgroupLayout(root);
  const std::string name = "vigie-oom-test-" + std::to_string(getpid());
  std::string dir;
  if (layout == CgroupLayout::kV1) {
    dir = root + "/memory/" + name;
    if (mkdir(dir.c_str(), 0755) != 0) GTEST_SKIP() << "cannot make " << dir;
    ASSERT_TRUE(Write(dir + "/memory.limit_in_bytes", "67108864"));
    Write(dir + "/memory.memsw.limit_in_bytes", "67108864");  // no escape into swap
  } else if (layout == CgroupLayout::kV2) {
    Write(root + "/cgroup.subtree_control", "+memory");
    dir = root + "/" + name;
    if (mkdir(dir.c_str(), 0755) != 0) GTEST_SKIP() << "cannot make " << dir;
    if (!Write(dir + "/memory.max", "67108864")) {
      rmdir(dir.c_str());
      GTEST_SKIP() << "no memory controller here";
    }
    Write(dir + "/memory.swap.max", "0");
  } else {
    GTEST_SKIP() << "no cgroups here";
  }
  // A process that allocates 512 MiB inside the 64 MiB cgroup is OOM-killed.
  const std::string cmd = "sh -c 'echo $$ > " + dir +
                          "/cgroup.procs && exec /usr/bin/python3 -c \"b = bytearray(512 << "
                          "20); b[::4096] = b\\\"x\\\" * len(b[::4096])\"' 2>/dev/null";
  const int rc = system(cmd.c_str());
  EXPECT_NE(rc, 0) << "the allocation should have been killed";

  auto m = Collect("/sys");
  const std::string id = ",id=/" + name;
  EXPECT_GE(m["container_oom_events_total" + id], 1) << "OOM kill attributed to the cgroup";
  EXPECT_EQ(m["container_spec_memory_limit_bytes" + id], 67108864);
  EXPECT_EQ(m["container_processes" + id], 0);
  EXPECT_EQ(rmdir(dir.c_str()), 0);
}

}  // namespace
}  // namespace vigie::agent
