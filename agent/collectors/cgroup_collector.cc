#include <limits.h>
#include <unistd.h>

#include "absl/strings/str_cat.h"
#include "agent/collectors/cgroup.h"
#include "agent/collectors/collector.h"
#include "common/status.h"

namespace vigie::agent {
namespace {

constexpr size_t kMaxCgroups = 500;

// container_*{id} from every cgroup (cAdvisor's names; see cgroup.h), on cgroup v1 and v2.
class CgroupCollector : public Collector {
 public:
  explicit CgroupCollector(const HostPaths& p)
      : root_(JoinPath(p.sysfs, "/fs/cgroup")), sysfs_(p.sysfs) {}
  const char* name() const override { return "cgroup"; }
  absl::Status Collect(int64_t now_ms, Collection* out) override {
    bool truncated = false;
    VIGIE_ASSIGN_OR_RETURN(std::vector<CgroupStats> groups,
                           ReadCgroups(root_, DetectCgroupLayout(root_), kMaxCgroups, &truncated));
    for (const CgroupStats& g : groups) {
      auto add = [&](const char* metric, const std::optional<double>& v, MetricType type,
                     const char* help) {
        if (v) out->Add(metric, {{"id", g.id}}, *v, now_ms, type, help);
      };
      if (g.cpu_usage_seconds) {
        out->Add("container_cpu_usage_seconds_total", {{"id", g.id}, {"cpu", "total"}},
                 *g.cpu_usage_seconds, now_ms, MetricType::kCounter,
                 "Cumulative cpu time consumed in seconds.");
      }
      add("container_cpu_user_seconds_total", g.cpu_user_seconds, MetricType::kCounter,
          "Cumulative user cpu time consumed in seconds.");
      add("container_cpu_system_seconds_total", g.cpu_system_seconds, MetricType::kCounter,
          "Cumulative system cpu time consumed in seconds.");
      if (g.cfs_periods.value_or(0) > 0) {  // only where a CPU quota applies
        add("container_cpu_cfs_periods_total", g.cfs_periods, MetricType::kCounter,
            "Number of elapsed enforcement period intervals.");
        add("container_cpu_cfs_throttled_periods_total", g.cfs_throttled_periods,
            MetricType::kCounter, "Number of throttled period intervals.");
        add("container_cpu_cfs_throttled_seconds_total", g.cfs_throttled_seconds,
            MetricType::kCounter, "Total time duration the container has been throttled.");
      }
      add("container_memory_usage_bytes", g.memory_usage_bytes, MetricType::kGauge,
          "Current memory usage in bytes, including all memory regardless of when it was "
          "accessed");
      add("container_memory_working_set_bytes", g.memory_working_set_bytes, MetricType::kGauge,
          "Current working set in bytes.");
      add("container_memory_rss", g.memory_rss_bytes, MetricType::kGauge, "Size of RSS in bytes.");
      add("container_memory_cache", g.memory_cache_bytes, MetricType::kGauge,
          "Number of bytes of page cache memory.");
      add("container_memory_max_usage_bytes", g.memory_max_usage_bytes, MetricType::kGauge,
          "Maximum memory usage recorded in bytes");
      add("container_memory_failcnt", g.memory_failcnt, MetricType::kCounter,
          "Number of memory usage hits limits");
      add("container_spec_memory_limit_bytes", g.memory_limit_bytes, MetricType::kGauge,
          "Memory limit for the container.");
      add("container_oom_events_total", g.oom_kills, MetricType::kCounter,
          "Count of out of memory events observed for the container (the kernel's oom_kill "
          "count for the cgroup)");
      add("container_processes", g.processes, MetricType::kGauge,
          "Number of processes running inside the container.");
      add("container_threads", g.threads, MetricType::kGauge,
          "Number of threads running inside the container");
      add("container_threads_max", g.threads_max, MetricType::kGauge,
          "Maximum number of threads allowed inside the container, infinity if value is zero");
      for (const auto& [dev, io] : g.io) {
        const std::map<std::string, std::string> labels = {{"id", g.id},
                                                           {"device", DeviceName(dev)}};
        out->Add("container_fs_reads_bytes_total", labels, io.read_bytes, now_ms,
                 MetricType::kCounter, "Cumulative count of bytes read");
        out->Add("container_fs_writes_bytes_total", labels, io.write_bytes, now_ms,
                 MetricType::kCounter, "Cumulative count of bytes written");
        out->Add("container_fs_reads_total", labels, io.reads, now_ms, MetricType::kCounter,
                 "Cumulative count of reads completed");
        out->Add("container_fs_writes_total", labels, io.writes, now_ms, MetricType::kCounter,
                 "Cumulative count of writes completed");
      }
    }
    out->Add("vigie_agent_cgroups_truncated", {}, truncated ? 1 : 0, now_ms, MetricType::kGauge,
             "1 if there were more cgroups than the agent reports (500); the ones nearest the "
             "root are kept.");
    return absl::OkStatus();
  }

 private:
  // "8:0" -> "sda" through /sys/dev/block/8:0, as cAdvisor shows devices; else "8:0".
  std::string DeviceName(const std::string& major_minor) {
    auto it = devices_.find(major_minor);
    if (it != devices_.end()) return it->second;
    std::string name = major_minor;
    char target[PATH_MAX];
    ssize_t n =
        readlink(JoinPath(sysfs_, "/dev/block/" + major_minor).c_str(), target, sizeof(target) - 1);
    if (n > 0) {
      std::string t(target, static_cast<size_t>(n));
      name = t.substr(t.rfind('/') + 1);
    }
    if (devices_.size() < 256) devices_[major_minor] = name;
    return name;
  }

  std::string root_, sysfs_;
  std::map<std::string, std::string> devices_;
};

}  // namespace

std::unique_ptr<Collector> NewCgroupCollector(const CollectorConfig& c) {
  return std::make_unique<CgroupCollector>(c.paths);
}

}  // namespace vigie::agent
