// Parsers for the /proc files the host collectors read. Pure functions over file contents so
// tests run on fixture files captured from real hosts.
#ifndef VIGIE_AGENT_COLLECTORS_PROCFS_H_
#define VIGIE_AGENT_COLLECTORS_PROCFS_H_

#include <map>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"

namespace vigie::agent {

struct CpuTimes {
  std::string cpu;  // "0", "1", ...
  // Seconds per mode: user, nice, system, idle, iowait, irq, softirq, steal.
  std::map<std::string, double> seconds;
  // guest and guest_nice (already included in user and nice by the kernel).
  std::map<std::string, double> guest_seconds;
};

// /proc/stat; `ticks_per_second` is sysconf(_SC_CLK_TCK).
absl::StatusOr<std::vector<CpuTimes>> ParseProcStat(absl::string_view text,
                                                    double ticks_per_second);

// /proc/meminfo: node_exporter's metric suffix ("MemAvailable", "Active_anon", ...) -> value,
// in bytes where the file says kB.
struct MeminfoValue {
  double value;
  bool bytes;  // false for counts such as HugePages_Total
};
absl::StatusOr<std::map<std::string, MeminfoValue>> ParseMeminfo(absl::string_view text);

struct LoadAverage {
  double load1, load5, load15;
};
absl::StatusOr<LoadAverage> ParseLoadavg(absl::string_view text);

struct Mount {
  std::string device, mount_point, fs_type;
  bool read_only;
};
// /proc/mounts (or /proc/1/mounts); octal escapes such as \040 are decoded.
absl::StatusOr<std::vector<Mount>> ParseMounts(absl::string_view text);

}  // namespace vigie::agent

#endif  // VIGIE_AGENT_COLLECTORS_PROCFS_H_
