// Per-cgroup (per-container, per-service) resource usage from both cgroup layouts, so a
// platform team sees which container eats memory and which one was OOM-killed. Metric names
// follow cAdvisor's (container_*), with the cgroup path as the `id` label.
#ifndef VIGIE_AGENT_COLLECTORS_CGROUP_H_
#define VIGIE_AGENT_COLLECTORS_CGROUP_H_

#include <map>
#include <optional>
#include <string>
#include <vector>

#include "absl/status/statusor.h"

namespace vigie::agent {

// What one cgroup reports. A field the kernel does not provide (memory.peak before 5.19, the
// OOM kill count before 4.13 on v1) is left empty and not exported.
struct CgroupStats {
  std::string id;  // path below the root, "/" for the root itself
  std::optional<double> cpu_usage_seconds, cpu_user_seconds, cpu_system_seconds;
  std::optional<double> cfs_periods, cfs_throttled_periods, cfs_throttled_seconds;
  std::optional<double> memory_usage_bytes, memory_working_set_bytes, memory_rss_bytes,
      memory_cache_bytes, memory_max_usage_bytes, memory_failcnt, memory_limit_bytes;
  std::optional<double> oom_kills;
  std::optional<double> processes, threads, threads_max;
  // By device ("major:minor"): read and write bytes and operations.
  struct Io {
    double read_bytes = 0, write_bytes = 0, reads = 0, writes = 0;
  };
  std::map<std::string, Io> io;
};

enum class CgroupLayout { kNone, kV1, kV2 };

// v2 when <root>/cgroup.controllers exists, v1 when <root>/memory or <root>/cpuacct does.
CgroupLayout DetectCgroupLayout(const std::string& root);

// Every cgroup below `root` (the root included), at most `max_cgroups` of them in
// depth-first order, nearest the root first; `*truncated` says whether some were left out.
absl::StatusOr<std::vector<CgroupStats>> ReadCgroups(const std::string& root, CgroupLayout layout,
                                                     size_t max_cgroups, bool* truncated);

}  // namespace vigie::agent

#endif  // VIGIE_AGENT_COLLECTORS_CGROUP_H_
