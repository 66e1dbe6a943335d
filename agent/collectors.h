// Host collectors, named and shaped as node_exporter's so existing dashboards work.
#ifndef VIGIE_AGENT_COLLECTORS_H_
#define VIGIE_AGENT_COLLECTORS_H_

#include <map>
#include <memory>
#include <string>
#include <vector>

#include "absl/status/status.h"
#include "agent/collection.h"
#include "agent/textfile.h"
#include "re2/re2.h"

namespace vigie::agent {

struct HostPaths {
  std::string procfs = "/proc";
  std::string sysfs = "/sys";
  std::string rootfs = "/";
};

// node_cpu_seconds_total{cpu,mode}, node_cpu_guest_seconds_total{cpu,mode} from <procfs>/stat.
std::unique_ptr<Collector> NewCpuCollector(const HostPaths& paths);
// node_memory_<Field>_bytes from <procfs>/meminfo.
std::unique_ptr<Collector> NewMemoryCollector(const HostPaths& paths);
// node_load1, node_load5, node_load15 from <procfs>/loadavg.
std::unique_ptr<Collector> NewLoadCollector(const HostPaths& paths);
// node_filesystem_{size,free,avail}_bytes, _files, _files_free, _readonly
// {device,fstype,mountpoint} from <procfs>/mounts and statvfs(<rootfs>/<mountpoint>).
// Empty exclusion patterns take node_exporter's defaults.
std::unique_ptr<Collector> NewFilesystemCollector(const HostPaths& paths,
                                                  const std::string& fs_types_exclude,
                                                  const std::string& mount_points_exclude);
// *.prom files from `directory`.
std::unique_ptr<Collector> NewTextfileCollector(const std::string& directory,
                                                const TextfileLimits& limits);

// What the collectors read and how.
struct CollectorConfig {
  HostPaths paths;
  std::string textfile_directory;  // empty = no textfile collector
  TextfileLimits textfile;
  std::string fs_types_exclude, mount_points_exclude;  // regexes; empty = node_exporter's
};

// A collector's name (as node_exporter's, used in node_scrape_collector_*{collector} and in the
// config's `collectors` map) and whether it runs unless switched off.
struct CollectorInfo {
  const char* name;
  bool enabled_by_default;
};
const std::vector<CollectorInfo>& KnownCollectors();

// InvalidArgument naming the first name in `switches` that is not a known collector.
absl::Status ValidateCollectorSwitches(const std::map<std::string, bool>& switches);

// The collectors enabled by default, or as `switches` says, in KnownCollectors() order.
std::vector<std::unique_ptr<Collector>> NewCollectors(const CollectorConfig& config,
                                                      const std::map<std::string, bool>& switches);

// node_exporter's default exclusions.
extern const char kDefaultFsTypesExclude[];
extern const char kDefaultMountPointsExclude[];

}  // namespace vigie::agent

#endif  // VIGIE_AGENT_COLLECTORS_H_
