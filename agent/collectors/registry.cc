#include "absl/strings/str_cat.h"
#include "agent/collectors/collector.h"
#include "common/files.h"

namespace vigie::agent {

namespace {

struct Factory {
  CollectorInfo info;
  std::unique_ptr<Collector> (*make)(const CollectorConfig&);
};

const std::vector<Factory>& Factories() {
  static const auto* kAll = new std::vector<Factory>{
      // One line per collector: name, on by default, factory.
      {{"cpu", true}, NewCpuCollector},
      {{"meminfo", true}, NewMeminfoCollector},
      {{"loadavg", true}, NewLoadavgCollector},
      {{"filesystem", true}, NewFilesystemCollector},
      {{"textfile", true}, NewTextfileCollector},
      {{"stat", true}, NewStatCollector},
      {{"diskstats", true}, NewDiskstatsCollector},
      {{"netdev", true}, NewNetdevCollector},
      {{"netstat", true}, NewNetstatCollector},
      {{"sockstat", true}, NewSockstatCollector},
      {{"pressure", true}, NewPressureCollector},
      {{"vmstat", true}, NewVmstatCollector},
      {{"filefd", true}, NewFilefdCollector},
      {{"entropy", true}, NewEntropyCollector},
      {{"conntrack", true}, NewConntrackCollector},
      {{"time", true}, NewTimeCollector},
      {{"timex", true}, NewTimexCollector},
      {{"processes", true}, NewProcessesCollector},
      {{"uname", true}, NewUnameCollector},
      {{"os", true}, NewOsCollector},
      {{"netclass", true}, NewNetclassCollector},
      {{"hwmon", true}, NewHwmonCollector},
      {{"arp", true}, NewArpCollector},
      {{"softnet", true}, NewSoftnetCollector},
      {{"udp_queues", true}, NewUdpQueuesCollector},
      {{"selinux", true}, NewSelinuxCollector},
      {{"cgroup", true}, NewCgroupCollector},
  };
  return *kAll;
}

}  // namespace

absl::StatusOr<std::string> ReadProcFile(const std::string& path) {
  absl::StatusOr<std::string> text = ReadRegularFile(path, 16 << 20);
  if (!text.ok()) {
    return absl::Status(text.status().code(), absl::StrCat(path, ": ", text.status().message()));
  }
  return text;
}

std::string JoinPath(const std::string& root, const std::string& rel) {
  if (root.empty() || root == "/") return rel;
  return absl::StrCat(root, rel);
}

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
