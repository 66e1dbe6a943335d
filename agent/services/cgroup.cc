#include "agent/services/cgroup.h"

#include <fcntl.h>
#include <signal.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>
#include <fstream>

#include "absl/strings/str_cat.h"

namespace vigie::agent::services {
namespace {

bool Exists(const std::string& path) { return access(path.c_str(), F_OK) == 0; }

absl::Status MakeDir(const std::string& dir) {
  if (mkdir(dir.c_str(), 0755) != 0 && errno != EEXIST) {
    return absl::FailedPreconditionError(absl::StrCat("cannot make ", dir, ": ", strerror(errno)));
  }
  return absl::OkStatus();
}

}  // namespace

absl::StatusOr<std::string> PrepareCgroupRoot(const std::string& mount) {
  std::string root;
  if (Exists(mount + "/cgroup.controllers")) {
    root = mount + "/vigie.services";  // v2: the unified hierarchy
  } else if (Exists(mount + "/pids/cgroup.procs")) {
    root = mount + "/pids/vigie";  // v1: the pids hierarchy
  } else {
    return absl::FailedPreconditionError(
        absl::StrCat("no cgroup v2 or v1 pids hierarchy under ", mount));
  }
  if (absl::Status s = MakeDir(root); !s.ok()) return s;
  if (access((root + "/cgroup.procs").c_str(), W_OK) != 0) {
    return absl::FailedPreconditionError(
        absl::StrCat("cannot write ", root, "/cgroup.procs: ", strerror(errno)));
  }
  return root;
}

absl::Status MakeCgroup(const std::string& dir) { return MakeDir(dir); }

std::vector<pid_t> CgroupPids(const std::string& dir) {
  std::vector<pid_t> out;
  std::ifstream in(dir + "/cgroup.procs");
  pid_t pid = 0;
  while (in >> pid && out.size() < 100000) out.push_back(pid);
  return out;
}

absl::Status JoinCgroup(const std::string& dir) {
  const std::string procs = dir + "/cgroup.procs";
  const int fd = open(procs.c_str(), O_WRONLY | O_CLOEXEC);
  if (fd < 0) {
    return absl::FailedPreconditionError(
        absl::StrCat("cannot open ", procs, ": ", strerror(errno)));
  }
  const std::string pid = std::to_string(getpid());
  const bool ok = write(fd, pid.data(), pid.size()) == static_cast<ssize_t>(pid.size());
  const int e = errno;
  close(fd);
  if (!ok) {
    return absl::FailedPreconditionError(absl::StrCat("cannot join ", dir, ": ", strerror(e)));
  }
  return absl::OkStatus();
}

int SignalCgroup(const std::string& dir, int signal, pid_t except) {
  int n = 0;
  for (pid_t pid : CgroupPids(dir)) {
    if (pid != except && pid > 0 && kill(pid, signal) == 0) ++n;
  }
  return n;
}

}  // namespace vigie::agent::services
