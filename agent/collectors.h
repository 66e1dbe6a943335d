// Host collectors, named and shaped as node_exporter's so existing dashboards work.
#ifndef VIGIE_AGENT_COLLECTORS_H_
#define VIGIE_AGENT_COLLECTORS_H_

#include <memory>
#include <string>
#include <vector>

#include "absl/status/status.h"
#include "agent/collection.h"
#include "agent/textfile.h"
#include "re2/re2.h"

namespace vigie::agent {

// One source of samples. Collect() is called from one thread at a time.
class Collector {
 public:
  virtual ~Collector() = default;
  virtual const char* name() const = 0;
  // Appends this round's samples, stamped `now_ms`. On error, appends nothing usable.
  virtual absl::Status Collect(int64_t now_ms, Collection* out) = 0;
};

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

// node_exporter's default exclusions.
extern const char kDefaultFsTypesExclude[];
extern const char kDefaultMountPointsExclude[];

}  // namespace vigie::agent

#endif  // VIGIE_AGENT_COLLECTORS_H_
