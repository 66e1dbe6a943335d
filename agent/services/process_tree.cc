#include "agent/services/process_tree.h"

#include <dirent.h>
#include <fcntl.h>
#include <unistd.h>

#include <cctype>

#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_split.h"

namespace vigie::agent::services {
namespace {

// Reads a small /proc file whole (stat lines are well under 1 KiB).
bool ReadSmall(const std::string& path, std::string* out) {
  const int fd = open(path.c_str(), O_RDONLY | O_CLOEXEC);
  if (fd < 0) return false;
  char buf[4096];
  const ssize_t n = read(fd, buf, sizeof(buf));
  close(fd);
  if (n <= 0) return false;
  out->assign(buf, static_cast<size_t>(n));
  return true;
}

uint64_t CountFds(const std::string& dir) {
  DIR* d = opendir(dir.c_str());
  if (d == nullptr) return 0;
  uint64_t n = 0;
  while (dirent* e = readdir(d)) {
    if (e->d_name[0] != '.') ++n;
  }
  closedir(d);
  return n;
}

// Adds process `dir` (/proc/<pid>) with its `st` to `u`.
void Add(const std::string& dir, const ProcStat& st, GroupUsage* u) {
  static const double kTicks = static_cast<double>(sysconf(_SC_CLK_TCK));
  static const uint64_t kPage = static_cast<uint64_t>(sysconf(_SC_PAGESIZE));
  ++u->processes;
  u->threads += st.threads;
  u->rss_bytes += st.rss_pages * kPage;
  u->cpu_seconds += static_cast<double>(st.utime + st.stime + st.cutime + st.cstime) / kTicks;
  u->open_fds += CountFds(dir + "/fd");
}

}  // namespace

GroupUsage UsageOfPids(const std::vector<pid_t>& pids) {
  GroupUsage u;
  std::string line;
  for (pid_t pid : pids) {
    const std::string dir = absl::StrCat("/proc/", pid);
    ProcStat st;
    if (ReadSmall(dir + "/stat", &line) && ParseProcStat(line, &st) && st.state != 'Z') {
      Add(dir, st, &u);
    }
  }
  return u;
}

bool ParseProcStat(absl::string_view line, ProcStat* out) {
  // "pid (comm) state ppid pgrp ...": comm ends at the last ')'.
  const size_t close = line.rfind(')');
  if (close == absl::string_view::npos) return false;
  std::vector<absl::string_view> f = absl::StrSplit(line.substr(close + 1), ' ', absl::SkipEmpty());
  // f[0] is field 3 (state): field N is f[N - 3]. We need up to field 24 (rss).
  if (f.size() < 22) return false;
  int64_t pgrp = 0, rss = 0;
  bool ok = absl::SimpleAtoi(f[2], &pgrp) && absl::SimpleAtoi(f[11], &out->utime) &&
            absl::SimpleAtoi(f[12], &out->stime) && absl::SimpleAtoi(f[13], &out->cutime) &&
            absl::SimpleAtoi(f[14], &out->cstime) && absl::SimpleAtoi(f[17], &out->threads) &&
            absl::SimpleAtoi(f[19], &out->starttime) && absl::SimpleAtoi(f[21], &rss);
  out->state = f[0].empty() ? '?' : f[0][0];
  out->pgrp = static_cast<pid_t>(pgrp);
  out->rss_pages = rss > 0 ? static_cast<uint64_t>(rss) : 0;
  return ok;
}

uint64_t ProcessStartTime(pid_t pid) {
  std::string line;
  ProcStat st;
  if (pid <= 0 || !ReadSmall(absl::StrCat("/proc/", pid, "/stat"), &line) ||
      !ParseProcStat(line, &st) || st.state == 'Z') {
    return 0;
  }
  return st.starttime;
}

absl::flat_hash_map<pid_t, GroupUsage> UsageByProcessGroup(const absl::flat_hash_set<pid_t>& pgids,
                                                           const std::string& proc_root) {
  absl::flat_hash_map<pid_t, GroupUsage> out;
  if (pgids.empty()) return out;
  DIR* d = opendir(proc_root.c_str());
  if (d == nullptr) return out;
  std::string line;
  while (dirent* e = readdir(d)) {
    if (!std::isdigit(static_cast<unsigned char>(e->d_name[0]))) continue;
    const std::string dir = absl::StrCat(proc_root, "/", e->d_name);
    ProcStat st;
    // A process that exits between readdir and read is simply not counted.
    if (!ReadSmall(dir + "/stat", &line) || !ParseProcStat(line, &st)) continue;
    if (!pgids.contains(st.pgrp)) continue;
    Add(dir, st, &out[st.pgrp]);
  }
  closedir(d);
  return out;
}

}  // namespace vigie::agent::services
