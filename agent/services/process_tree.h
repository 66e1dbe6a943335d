// What a service's processes use, read from /proc: every process whose process group is the
// service's (the group its leader was started in), so a worker it forked counts, a daemon that
// left the group with setsid() does not.
#ifndef VIGIE_AGENT_SERVICES_PROCESS_TREE_H_
#define VIGIE_AGENT_SERVICES_PROCESS_TREE_H_

#include <sys/types.h>

#include <cstdint>
#include <string>
#include <vector>

#include "absl/container/flat_hash_map.h"
#include "absl/container/flat_hash_set.h"
#include "absl/strings/string_view.h"

namespace vigie::agent::services {

struct GroupUsage {
  int processes = 0;
  uint64_t threads = 0;
  uint64_t rss_bytes = 0;
  // User and system CPU of the live processes, plus what they reaped of their children.
  double cpu_seconds = 0;
  uint64_t open_fds = 0;
};

// The fields of /proc/<pid>/stat the supervisor needs (clock ticks and pages as read).
struct ProcStat {
  char state = '?';  // R, S, D, Z (exited, not yet reaped), ...
  pid_t pgrp = 0;
  uint64_t utime = 0, stime = 0, cutime = 0, cstime = 0;
  uint64_t threads = 0;
  uint64_t rss_pages = 0;
  uint64_t starttime = 0;  // clock ticks after boot: with the pid, a process's identity
};

// Parses one /proc/<pid>/stat line; the command name may hold spaces and parentheses.
bool ParseProcStat(absl::string_view line, ProcStat* out);

// The start time of process `pid` (ProcStat::starttime), or 0 when there is none or it has
// exited (a zombie is no process to adopt).
uint64_t ProcessStartTime(pid_t pid);

// The usage of processes `pids` (those that exist).
GroupUsage UsageOfPids(const std::vector<pid_t>& pids);

// One pass over `proc_root`: the usage of each group of `pgids` that has a process.
absl::flat_hash_map<pid_t, GroupUsage> UsageByProcessGroup(const absl::flat_hash_set<pid_t>& pgids,
                                                           const std::string& proc_root = "/proc");

}  // namespace vigie::agent::services

#endif  // VIGIE_AGENT_SERVICES_PROCESS_TREE_H_
