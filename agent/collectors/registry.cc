#include <fcntl.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>

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
      {{"processes", false}, NewProcessesCollector},  // off in node_exporter too: walks /proc
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

namespace {

// Kernel files: read, close. O_NONBLOCK so that a misconfigured root cannot hang the collector
// on a FIFO, and a bound so that it cannot read /dev/zero forever; no fstat, as /proc and
// /sys report no size anyway (textfiles use the stricter ReadRegularFile).
constexpr size_t kMaxProcFileBytes = 16 << 20;

// Kernel files: O_NONBLOCK so that a misconfigured root cannot hang the collector on a FIFO,
// and a bound so that it cannot read /dev/zero forever; no fstat, as /proc and /sys report no
// size anyway (textfiles use the stricter ReadRegularFile).
absl::StatusOr<std::string> ReadOpened(int fd, absl::string_view what) {
  if (fd < 0) {
    const int e = errno;
    return absl::Status(e == ENOENT ? absl::StatusCode::kNotFound : absl::StatusCode::kUnavailable,
                        absl::StrCat(what, ": ", strerror(e)));
  }
  absl::StatusOr<std::string> out = ReadFd(fd, kMaxProcFileBytes);
  close(fd);
  if (!out.ok())
    return absl::Status(out.status().code(), absl::StrCat(what, ": ", out.status().message()));
  return out;
}

}  // namespace

absl::StatusOr<std::string> ReadProcFile(const std::string& path) {
  return ReadOpened(open(path.c_str(), O_RDONLY | O_CLOEXEC | O_NONBLOCK), path);
}

absl::StatusOr<std::string> ReadProcFileAt(int dir_fd, const char* name) {
  if (dir_fd < 0) return absl::NotFoundError(name);
  return ReadOpened(openat(dir_fd, name, O_RDONLY | O_CLOEXEC | O_NONBLOCK), name);
}

ProcFile::~ProcFile() {
  if (fd_ >= 0) close(fd_);
}

absl::StatusOr<std::string> ProcFile::Read() {
  if (reopen_each_time_) return ReadProcFile(path_);
  for (int attempt = 0; attempt < 2; ++attempt) {
    if (fd_ < 0) {
      fd_ = open(path_.c_str(), O_RDONLY | O_CLOEXEC | O_NONBLOCK);
      if (fd_ < 0) return ReadOpened(-1, path_);  // the error, named
    }
    int error = 0;
    absl::StatusOr<std::string> out = ReadFd(fd_, kMaxProcFileBytes, /*from_start=*/true, &error);
    if (out.ok()) return out;
    // Gone (ENODEV) or absurdly large: start over once. Not seekable: open it each time.
    close(fd_);
    fd_ = -1;
    if (error == ESPIPE) reopen_each_time_ = true;
    if (error == 0 || reopen_each_time_) return ReadProcFile(path_);
  }
  return ReadProcFile(path_);
}

absl::StatusOr<std::string> ProcFileSet::Read(const std::string& path) {
  auto it = files_.find(path);
  if (it == files_.end()) {
    if (files_.size() >= max_) return ReadProcFile(path);
    it = files_.emplace(path, std::make_unique<ProcFile>(path)).first;
  }
  absl::StatusOr<std::string> text = it->second->Read();
  if (!text.ok()) files_.erase(it);
  return text;
}

OpenDir::OpenDir(const std::string& path)
    : fd_(open(path.c_str(), O_PATH | O_DIRECTORY | O_CLOEXEC)) {}
OpenDir::~OpenDir() {
  if (fd_ >= 0) close(fd_);
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
