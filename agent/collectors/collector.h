// Host collectors, named and shaped as node_exporter's so existing dashboards work.
#ifndef VIGIE_AGENT_COLLECTORS_COLLECTOR_H_
#define VIGIE_AGENT_COLLECTORS_COLLECTOR_H_

#include <map>
#include <memory>
#include <string>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"
#include "agent/collection.h"
#include "agent/collectors/textfile.h"

namespace vigie::agent {

struct HostPaths {
  std::string procfs = "/proc";
  std::string sysfs = "/sys";
  std::string rootfs = "/";
};

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

// Reads a /proc or /sys file (at most 16 MiB; never blocks on a FIFO).
absl::StatusOr<std::string> ReadProcFile(const std::string& path);
// The same for `name` in an open directory: many attributes of one device or cgroup without
// walking (and re-resolving the symlinks of) the whole path for each.
absl::StatusOr<std::string> ReadProcFileAt(int dir_fd, const char* name);
// A /proc or /sys file read every round: kept open and read again from its start with pread
// (the kernel regenerates the text), so a round neither walks the path nor opens the file.
// Reopened if the descriptor stops reading (the file went away and came back); files that
// refuse pread are opened each time. One reader at a time.
class ProcFile {
 public:
  explicit ProcFile(std::string path) : path_(std::move(path)) {}
  ~ProcFile();
  ProcFile(const ProcFile&) = delete;
  ProcFile& operator=(const ProcFile&) = delete;
  absl::StatusOr<std::string> Read();
  const std::string& path() const { return path_; }

 private:
  const std::string path_;
  int fd_ = -1;
  bool reopen_each_time_ = false;
};

// ProcFiles by path, opened on first use: at most `max` kept (then files are read without
// being kept), and a file that fails to read is forgotten (a device that went away).
class ProcFileSet {
 public:
  explicit ProcFileSet(size_t max = 64) : max_(max) {}
  absl::StatusOr<std::string> Read(const std::string& path);

 private:
  const size_t max_;
  std::map<std::string, std::unique_ptr<ProcFile>> files_;
};

// An open directory (O_PATH), closed on destruction; fd() is -1 if it could not be opened.
class OpenDir {
 public:
  explicit OpenDir(const std::string& path);
  ~OpenDir();
  OpenDir(const OpenDir&) = delete;
  OpenDir& operator=(const OpenDir&) = delete;
  int fd() const { return fd_; }

 private:
  int fd_;
};
// `root` + `rel`, where `rel` starts with "/" and a root of "/" or "" adds nothing.
std::string JoinPath(const std::string& root, const std::string& rel);

// The collectors, one factory each (one file each in agent/collectors/). A factory may return
// null when the collector does not apply (textfile without a directory).
//
// node_cpu_seconds_total{cpu,mode}, node_cpu_guest_seconds_total{cpu,mode} from <procfs>/stat.
std::unique_ptr<Collector> NewCpuCollector(const CollectorConfig& config);
// node_memory_<Field>_bytes from <procfs>/meminfo.
std::unique_ptr<Collector> NewMeminfoCollector(const CollectorConfig& config);
// node_load1, node_load5, node_load15 from <procfs>/loadavg.
std::unique_ptr<Collector> NewLoadavgCollector(const CollectorConfig& config);
// node_filesystem_{size,free,avail}_bytes, _files, _files_free, _readonly
// {device,fstype,mountpoint} from <procfs>/mounts and statvfs(<rootfs>/<mountpoint>).
// Empty exclusion patterns take node_exporter's defaults (below).
std::unique_ptr<Collector> NewFilesystemCollector(const CollectorConfig& config);
extern const char kDefaultFsTypesExclude[];
extern const char kDefaultMountPointsExclude[];
// *.prom files from textfile_directory (textfile.h).
std::unique_ptr<Collector> NewTextfileCollector(const CollectorConfig& config);
// node_boot_time_seconds, node_context_switches_total, node_forks_total, node_intr_total,
// node_procs_{running,blocked} from <procfs>/stat.
std::unique_ptr<Collector> NewStatCollector(const CollectorConfig& config);
// node_disk_*{device} from <procfs>/diskstats; partitions, loop and ram devices left out as by
// node_exporter (below).
std::unique_ptr<Collector> NewDiskstatsCollector(const CollectorConfig& config);
extern const char kDefaultDiskDevicesExclude[];
// node_network_{receive,transmit}_*_total{device} from <procfs>/net/dev.
std::unique_ptr<Collector> NewNetdevCollector(const CollectorConfig& config);
// node_netstat_* from <procfs>/net/{netstat,snmp,snmp6}, node_exporter's default fields.
std::unique_ptr<Collector> NewNetstatCollector(const CollectorConfig& config);
extern const char kDefaultNetstatFields[];
// node_sockstat_* from <procfs>/net/sockstat{,6}.
std::unique_ptr<Collector> NewSockstatCollector(const CollectorConfig& config);
// node_pressure_* from <procfs>/pressure/ (nothing on kernels without PSI).
std::unique_ptr<Collector> NewPressureCollector(const CollectorConfig& config);
// node_vmstat_* from <procfs>/vmstat, node_exporter's default fields.
std::unique_ptr<Collector> NewVmstatCollector(const CollectorConfig& config);
// node_filefd_{allocated,maximum} from <procfs>/sys/fs/file-nr.
std::unique_ptr<Collector> NewFilefdCollector(const CollectorConfig& config);
// node_entropy_{available,pool_size}_bits.
std::unique_ptr<Collector> NewEntropyCollector(const CollectorConfig& config);
// node_nf_conntrack_entries{,_limit} where conntrack is loaded.
std::unique_ptr<Collector> NewConntrackCollector(const CollectorConfig& config);
// node_time_seconds, node_time_zone_offset_seconds{time_zone}.
std::unique_ptr<Collector> NewTimeCollector(const CollectorConfig& config);
// node_timex_* from adjtimex(2).
std::unique_ptr<Collector> NewTimexCollector(const CollectorConfig& config);
// node_processes_* from <procfs>/<pid>/stat.
std::unique_ptr<Collector> NewProcessesCollector(const CollectorConfig& config);
// node_uname_info; node_os_info and node_os_version from <rootfs>/etc/os-release.
std::unique_ptr<Collector> NewUnameCollector(const CollectorConfig& config);
std::unique_ptr<Collector> NewOsCollector(const CollectorConfig& config);
// node_network_{up,info,mtu_bytes,speed_bytes,carrier,...}{device} from <sysfs>/class/net.
std::unique_ptr<Collector> NewNetclassCollector(const CollectorConfig& config);
// node_arp_entries{device} from <procfs>/net/arp.
std::unique_ptr<Collector> NewArpCollector(const CollectorConfig& config);
// node_softnet_*_total{cpu} from <procfs>/net/softnet_stat.
std::unique_ptr<Collector> NewSoftnetCollector(const CollectorConfig& config);
// node_udp_queues{ip,queue} from <procfs>/net/udp{,6}.
std::unique_ptr<Collector> NewUdpQueuesCollector(const CollectorConfig& config);
// node_selinux_enabled (and current_mode when enabled).
std::unique_ptr<Collector> NewSelinuxCollector(const CollectorConfig& config);
// container_*{id} per cgroup from <sysfs>/fs/cgroup, v1 or v2 (cgroup.h).
std::unique_ptr<Collector> NewCgroupCollector(const CollectorConfig& config);
// node_hwmon_*{chip,sensor} from <sysfs>/class/hwmon.
std::unique_ptr<Collector> NewHwmonCollector(const CollectorConfig& config);
// node_exporter's label cleaning for hwmon chips: lower case, [^a-z0-9:_] -> '_', trimmed.
std::string HwmonCleanName(absl::string_view s);

}  // namespace vigie::agent

#endif  // VIGIE_AGENT_COLLECTORS_COLLECTOR_H_
