#include "agent/collectors/cgroup.h"

#include <dirent.h>
#include <sys/stat.h>
#include <unistd.h>

#include <deque>
#include <functional>

#include "absl/strings/ascii.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_split.h"
#include "absl/strings/strip.h"
#include "agent/collectors/collector.h"
#include "common/status.h"

namespace vigie::agent {
namespace {

bool Exists(const std::string& path) {
  struct stat st;
  return stat(path.c_str(), &st) == 0;
}

// Files are read relative to the cgroup's directory, opened once per cgroup.
std::optional<std::string> Read(int dir, const char* name) {
  absl::StatusOr<std::string> text = ReadProcFileAt(dir, name);
  if (!text.ok()) return std::nullopt;
  return *text;
}

// A file holding one number ("max" = unlimited is left empty).
std::optional<double> ReadNumber(int dir, const char* name) {
  std::optional<std::string> text = Read(dir, name);
  double v;
  if (!text || !absl::SimpleAtod(absl::StripAsciiWhitespace(*text), &v)) return std::nullopt;
  return v;
}

// "key value" lines (cpu.stat, memory.stat, memory.events, cpuacct.stat, memory.oom_control).
std::map<std::string, double> ReadKeyed(int dir, const char* name) {
  std::map<std::string, double> out;
  std::optional<std::string> text = Read(dir, name);
  if (!text) return out;
  for (absl::string_view line : absl::StrSplit(*text, '\n', absl::SkipEmpty())) {
    std::vector<absl::string_view> f = absl::StrSplit(line, ' ', absl::SkipEmpty());
    double v;
    if (f.size() == 2 && absl::SimpleAtod(f[1], &v)) out[std::string(f[0])] = v;
  }
  return out;
}

std::optional<double> Get(const std::map<std::string, double>& m, const char* key,
                          double scale = 1) {
  auto it = m.find(key);
  if (it == m.end()) return std::nullopt;
  return it->second * scale;
}

std::optional<double> CountLines(int dir, const char* name) {
  std::optional<std::string> text = Read(dir, name);
  if (!text) return std::nullopt;
  double n = 0;
  for (char c : *text) n += c == '\n' ? 1 : 0;
  return n;
}

// Working set as cAdvisor computes it: usage minus inactive file pages, never below zero.
std::optional<double> WorkingSet(std::optional<double> usage, std::optional<double> inactive) {
  if (!usage) return std::nullopt;
  return std::max(0.0, *usage - inactive.value_or(0));
}

// A memory limit the kernel reports as "unlimited" (v1 prints a page-rounded INT64_MAX).
std::optional<double> Limit(std::optional<double> v) {
  if (!v || *v >= 4.6e18) return std::nullopt;
  return v;
}

void ReadV2(const std::string& path, CgroupStats* s) {
  OpenDir opened(path);
  const int dir = opened.fd();
  auto cpu = ReadKeyed(dir, "cpu.stat");
  s->cpu_usage_seconds = Get(cpu, "usage_usec", 1e-6);
  s->cpu_user_seconds = Get(cpu, "user_usec", 1e-6);
  s->cpu_system_seconds = Get(cpu, "system_usec", 1e-6);
  s->cfs_periods = Get(cpu, "nr_periods");
  s->cfs_throttled_periods = Get(cpu, "nr_throttled");
  s->cfs_throttled_seconds = Get(cpu, "throttled_usec", 1e-6);
  s->memory_usage_bytes = ReadNumber(dir, "memory.current");
  auto mem = ReadKeyed(dir, "memory.stat");
  s->memory_working_set_bytes = WorkingSet(s->memory_usage_bytes, Get(mem, "inactive_file"));
  s->memory_rss_bytes = Get(mem, "anon");
  s->memory_cache_bytes = Get(mem, "file");
  s->memory_max_usage_bytes = ReadNumber(dir, "memory.peak");  // Linux 5.19+
  s->memory_limit_bytes = Limit(ReadNumber(dir, "memory.max"));
  s->oom_kills = Get(ReadKeyed(dir, "memory.events"), "oom_kill");
  s->processes = CountLines(dir, "cgroup.procs");
  s->threads = ReadNumber(dir, "pids.current");
  s->threads_max = ReadNumber(dir, "pids.max");
  if (std::optional<std::string> io = Read(dir, "io.stat")) {
    // "8:0 rbytes=1 wbytes=2 rios=3 wios=4 dbytes=0 dios=0"
    for (absl::string_view line : absl::StrSplit(*io, '\n', absl::SkipEmpty())) {
      std::vector<absl::string_view> f = absl::StrSplit(line, ' ', absl::SkipEmpty());
      if (f.empty()) continue;
      CgroupStats::Io& d = s->io[std::string(f[0])];
      for (size_t i = 1; i < f.size(); ++i) {
        std::pair<absl::string_view, absl::string_view> kv = absl::StrSplit(f[i], '=');
        double v;
        if (!absl::SimpleAtod(kv.second, &v)) continue;
        if (kv.first == "rbytes") d.read_bytes = v;
        if (kv.first == "wbytes") d.write_bytes = v;
        if (kv.first == "rios") d.reads = v;
        if (kv.first == "wios") d.writes = v;
      }
    }
  }
}

// v1: each controller has its own tree; `rel` is the same path in each.
void ReadV1(const std::string& root, const std::string& rel, CgroupStats* s) {
  OpenDir cpuacct_dir(root + "/cpuacct" + rel), cpu_dir(root + "/cpu" + rel),
      memory_dir(root + "/memory" + rel), blkio_dir(root + "/blkio" + rel),
      pids_dir(root + "/pids" + rel);
  const int cpuacct = cpuacct_dir.fd(), cpu = cpu_dir.fd(), memory = memory_dir.fd(),
            blkio = blkio_dir.fd(), pids = pids_dir.fd();
  if (std::optional<double> ns = ReadNumber(cpuacct, "cpuacct.usage")) {
    s->cpu_usage_seconds = *ns / 1e9;
  }
  const double hz = static_cast<double>(sysconf(_SC_CLK_TCK));
  auto acct = ReadKeyed(cpuacct, "cpuacct.stat");
  s->cpu_user_seconds = Get(acct, "user", 1 / hz);
  s->cpu_system_seconds = Get(acct, "system", 1 / hz);
  auto cfs = ReadKeyed(cpu, "cpu.stat");
  s->cfs_periods = Get(cfs, "nr_periods");
  s->cfs_throttled_periods = Get(cfs, "nr_throttled");
  s->cfs_throttled_seconds = Get(cfs, "throttled_time", 1e-9);
  s->memory_usage_bytes = ReadNumber(memory, "memory.usage_in_bytes");
  auto mem = ReadKeyed(memory, "memory.stat");
  s->memory_working_set_bytes = WorkingSet(s->memory_usage_bytes, Get(mem, "total_inactive_file"));
  s->memory_rss_bytes = Get(mem, "total_rss");
  s->memory_cache_bytes = Get(mem, "total_cache");
  s->memory_max_usage_bytes = ReadNumber(memory, "memory.max_usage_in_bytes");
  s->memory_failcnt = ReadNumber(memory, "memory.failcnt");
  s->memory_limit_bytes = Limit(ReadNumber(memory, "memory.limit_in_bytes"));
  s->oom_kills = Get(ReadKeyed(memory, "memory.oom_control"), "oom_kill");  // Linux 4.13+
  s->processes = CountLines(memory, "cgroup.procs");
  s->threads = ReadNumber(pids, "pids.current");
  s->threads_max = ReadNumber(pids, "pids.max");
  for (const auto& [file, bytes] : {std::pair{"blkio.throttle.io_service_bytes", true},
                                    std::pair{"blkio.throttle.io_serviced", false}}) {
    std::optional<std::string> text = Read(blkio, file);
    if (!text) continue;
    // "8:0 Read 123" ... "Total 456"
    for (absl::string_view line : absl::StrSplit(*text, '\n', absl::SkipEmpty())) {
      std::vector<absl::string_view> f = absl::StrSplit(line, ' ', absl::SkipEmpty());
      double v;
      if (f.size() != 3 || !absl::SimpleAtod(f[2], &v)) continue;
      CgroupStats::Io& d = s->io[std::string(f[0])];
      if (f[1] == "Read") (bytes ? d.read_bytes : d.reads) = v;
      if (f[1] == "Write") (bytes ? d.write_bytes : d.writes) = v;
    }
  }
}

}  // namespace

CgroupLayout DetectCgroupLayout(const std::string& root) {
  if (Exists(root + "/cgroup.controllers")) return CgroupLayout::kV2;
  if (Exists(root + "/memory") || Exists(root + "/cpuacct")) return CgroupLayout::kV1;
  return CgroupLayout::kNone;
}

absl::StatusOr<std::vector<CgroupStats>> ReadCgroups(const std::string& root, CgroupLayout layout,
                                                     size_t max_cgroups, bool* truncated) {
  if (layout == CgroupLayout::kNone) {
    return absl::UnavailableError(absl::StrCat(root, ": no cgroup hierarchy"));
  }
  // The tree to walk: the unified one, or v1's memory controller (cpuacct if there is none).
  std::string tree = root;
  if (layout == CgroupLayout::kV1) tree += Exists(root + "/memory") ? "/memory" : "/cpuacct";
  std::vector<CgroupStats> out;
  *truncated = false;
  std::deque<std::string> pending = {""};  // breadth-first: parents before children
  while (!pending.empty()) {
    if (out.size() >= max_cgroups) {
      *truncated = true;
      break;
    }
    const std::string rel = pending.front();
    pending.pop_front();
    CgroupStats& s = out.emplace_back();
    s.id = rel.empty() ? "/" : rel;
    if (layout == CgroupLayout::kV2) {
      ReadV2(tree + rel, &s);
    } else {
      ReadV1(root, rel, &s);
    }
    DIR* dir = opendir((tree + rel).c_str());
    if (dir == nullptr) continue;  // removed meanwhile
    std::vector<std::string> children;
    while (dirent* e = readdir(dir)) {
      if (e->d_type == DT_DIR && e->d_name[0] != '.') children.emplace_back(e->d_name);
    }
    closedir(dir);
    std::sort(children.begin(), children.end());
    for (const std::string& c : children) {
      if (out.size() + pending.size() >= max_cgroups) {  // bounded however wide the tree
        *truncated = true;
        break;
      }
      pending.push_back(rel + "/" + c);
    }
  }
  return out;
}

}  // namespace vigie::agent
