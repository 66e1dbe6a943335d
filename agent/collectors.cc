#include "agent/collectors.h"

#include <sys/statvfs.h>
#include <unistd.h>

#include <fstream>
#include <functional>
#include <set>
#include <sstream>

#include "absl/strings/str_cat.h"
#include "agent/procfs.h"
#include "common/status.h"

namespace vigie::agent {

const char kDefaultFsTypesExclude[] =
    "^(autofs|binfmt_misc|bpf|cgroup2?|configfs|debugfs|devpts|devtmpfs|fusectl|hugetlbfs|"
    "iso9660|mqueue|nsfs|overlay|proc|procfs|pstore|rpc_pipefs|securityfs|selinuxfs|squashfs|"
    "sysfs|tracefs)$";
const char kDefaultMountPointsExclude[] =
    "^/(dev|proc|run/credentials/.+|sys|var/lib/docker/.+|var/lib/containers/storage/.+)($|/)";

namespace {

absl::StatusOr<std::string> ReadFile(const std::string& path) {
  std::ifstream in(path);
  if (!in) return absl::UnavailableError(absl::StrCat(path, ": cannot open"));
  std::stringstream ss;
  ss << in.rdbuf();
  return ss.str();
}

std::string JoinPath(const std::string& root, const std::string& rel) {
  if (root.empty() || root == "/") return rel;
  return absl::StrCat(root, rel);
}

class CpuCollector : public Collector {
 public:
  explicit CpuCollector(const HostPaths& p)
      : path_(JoinPath(p.procfs, "/stat")), ticks_(static_cast<double>(sysconf(_SC_CLK_TCK))) {}
  const char* name() const override { return "cpu"; }
  absl::Status Collect(int64_t now_ms, Collection* out) override {
    VIGIE_ASSIGN_OR_RETURN(std::string text, ReadFile(path_));
    VIGIE_ASSIGN_OR_RETURN(std::vector<CpuTimes> cpus, ParseProcStat(text, ticks_));
    for (const CpuTimes& c : cpus) {
      for (const auto& [mode, s] : c.seconds) {
        out->Add("node_cpu_seconds_total", {{"cpu", c.cpu}, {"mode", mode}}, s, now_ms,
                 MetricType::kCounter, "Seconds the CPUs spent in each mode.");
      }
      for (const auto& [mode, s] : c.guest_seconds) {
        out->Add("node_cpu_guest_seconds_total", {{"cpu", c.cpu}, {"mode", mode}}, s, now_ms,
                 MetricType::kCounter, "Seconds the CPUs spent in guests (VMs) for each mode.");
      }
    }
    return absl::OkStatus();
  }

 private:
  std::string path_;
  double ticks_;
};

class MemoryCollector : public Collector {
 public:
  explicit MemoryCollector(const HostPaths& p) : path_(JoinPath(p.procfs, "/meminfo")) {}
  const char* name() const override { return "meminfo"; }
  absl::Status Collect(int64_t now_ms, Collection* out) override {
    VIGIE_ASSIGN_OR_RETURN(std::string text, ReadFile(path_));
    VIGIE_ASSIGN_OR_RETURN(auto values, ParseMeminfo(text));
    for (const auto& [field, v] : values) {
      out->Add(absl::StrCat("node_memory_", field, v.bytes ? "_bytes" : ""), {}, v.value, now_ms,
               MetricType::kGauge, absl::StrCat("Memory information field ", field, "."));
    }
    return absl::OkStatus();
  }

 private:
  std::string path_;
};

class LoadCollector : public Collector {
 public:
  explicit LoadCollector(const HostPaths& p) : path_(JoinPath(p.procfs, "/loadavg")) {}
  const char* name() const override { return "loadavg"; }
  absl::Status Collect(int64_t now_ms, Collection* out) override {
    VIGIE_ASSIGN_OR_RETURN(std::string text, ReadFile(path_));
    VIGIE_ASSIGN_OR_RETURN(LoadAverage l, ParseLoadavg(text));
    out->Add("node_load1", {}, l.load1, now_ms, MetricType::kGauge, "1m load average.");
    out->Add("node_load5", {}, l.load5, now_ms, MetricType::kGauge, "5m load average.");
    out->Add("node_load15", {}, l.load15, now_ms, MetricType::kGauge, "15m load average.");
    return absl::OkStatus();
  }

 private:
  std::string path_;
};

class FilesystemCollector : public Collector {
 public:
  FilesystemCollector(const HostPaths& p, const std::string& types, const std::string& points)
      : mounts_path_(JoinPath(p.procfs, "/mounts")),
        rootfs_(p.rootfs),
        types_exclude_(types.empty() ? kDefaultFsTypesExclude : types),
        points_exclude_(points.empty() ? kDefaultMountPointsExclude : points) {}
  const char* name() const override { return "filesystem"; }
  absl::Status Collect(int64_t now_ms, Collection* out) override {
    VIGIE_ASSIGN_OR_RETURN(std::string text, ReadFile(mounts_path_));
    VIGIE_ASSIGN_OR_RETURN(std::vector<Mount> mounts, ParseMounts(text));
    std::set<std::string> seen;
    for (const Mount& m : mounts) {
      if (RE2::PartialMatch(m.fs_type, types_exclude_) ||
          RE2::PartialMatch(m.mount_point, points_exclude_) || !seen.insert(m.mount_point).second) {
        continue;
      }
      struct statvfs st;
      // A filesystem that cannot be stat'ed (gone, permission) is left out, as node_exporter does.
      if (statvfs(JoinPath(rootfs_, m.mount_point).c_str(), &st) != 0) continue;
      std::map<std::string, std::string> labels = {
          {"device", m.device}, {"fstype", m.fs_type}, {"mountpoint", m.mount_point}};
      const double bsize = static_cast<double>(st.f_frsize);
      auto add = [&](const char* name, double v, const char* help) {
        out->Add(name, labels, v, now_ms, MetricType::kGauge, help);
      };
      add("node_filesystem_size_bytes", bsize * st.f_blocks, "Filesystem size in bytes.");
      add("node_filesystem_free_bytes", bsize * st.f_bfree, "Filesystem free space in bytes.");
      add("node_filesystem_avail_bytes", bsize * st.f_bavail,
          "Filesystem space available to non-root users in bytes.");
      add("node_filesystem_files", st.f_files, "Filesystem total file nodes.");
      add("node_filesystem_files_free", st.f_ffree, "Filesystem total free file nodes.");
      add("node_filesystem_readonly", m.read_only ? 1 : 0, "Filesystem read-only status.");
    }
    return absl::OkStatus();
  }

 private:
  std::string mounts_path_, rootfs_;
  RE2 types_exclude_, points_exclude_;
};

}  // namespace

std::unique_ptr<Collector> NewCpuCollector(const HostPaths& p) {
  return std::make_unique<CpuCollector>(p);
}
std::unique_ptr<Collector> NewMemoryCollector(const HostPaths& p) {
  return std::make_unique<MemoryCollector>(p);
}
std::unique_ptr<Collector> NewLoadCollector(const HostPaths& p) {
  return std::make_unique<LoadCollector>(p);
}
std::unique_ptr<Collector> NewFilesystemCollector(const HostPaths& p, const std::string& types,
                                                  const std::string& points) {
  return std::make_unique<FilesystemCollector>(p, types, points);
}
std::unique_ptr<Collector> NewTextfileCollector(const std::string& directory,
                                                const TextfileLimits& limits) {
  return std::make_unique<TextfileCollector>(directory, limits);
}

namespace {

struct Factory {
  CollectorInfo info;
  std::function<std::unique_ptr<Collector>(const CollectorConfig&)> make;
};

const std::vector<Factory>& Factories() {
  static const auto* kAll = new std::vector<Factory>{
      {{"cpu", true}, [](const CollectorConfig& c) { return NewCpuCollector(c.paths); }},
      {{"meminfo", true}, [](const CollectorConfig& c) { return NewMemoryCollector(c.paths); }},
      {{"loadavg", true}, [](const CollectorConfig& c) { return NewLoadCollector(c.paths); }},
      {{"filesystem", true},
       [](const CollectorConfig& c) {
         return NewFilesystemCollector(c.paths, c.fs_types_exclude, c.mount_points_exclude);
       }},
      {{"textfile", true},
       [](const CollectorConfig& c) -> std::unique_ptr<Collector> {
         if (c.textfile_directory.empty()) return nullptr;
         return NewTextfileCollector(c.textfile_directory, c.textfile);
       }},
  };
  return *kAll;
}

}  // namespace

const std::vector<CollectorInfo>& KnownCollectors() {
  static const auto* kAll = [] {
    auto* v = new std::vector<CollectorInfo>;
    for (const Factory& f : Factories()) v->push_back(f.info);
    return v;
  }();
  return *kAll;
}

absl::Status ValidateCollectorSwitches(const std::map<std::string, bool>& switches) {
  for (const auto& [name, on] : switches) {
    bool known = false;
    for (const CollectorInfo& c : KnownCollectors()) known = known || name == c.name;
    if (!known) {
      std::string names;
      for (const CollectorInfo& c : KnownCollectors()) {
        absl::StrAppend(&names, names.empty() ? "" : ", ", c.name);
      }
      return absl::InvalidArgumentError(
          absl::StrCat("collectors: \"", name, "\" is not a collector (known: ", names, ")"));
    }
  }
  return absl::OkStatus();
}

std::vector<std::unique_ptr<Collector>> NewCollectors(const CollectorConfig& config,
                                                      const std::map<std::string, bool>& switches) {
  std::vector<std::unique_ptr<Collector>> out;
  for (const Factory& f : Factories()) {
    auto it = switches.find(f.info.name);
    if (!(it == switches.end() ? f.info.enabled_by_default : it->second)) continue;
    if (std::unique_ptr<Collector> c = f.make(config)) out.push_back(std::move(c));
  }
  return out;
}

}  // namespace vigie::agent
