// vigie-service-shim: the parent of one supervised service, so the service outlives the agent.
// The agent starts it (in the shim's own process group) with the service's environment; the
// shim starts the service in a new process group, writes "pid <pid> <starttime>" (or "error
// <message>") on its stdout for the agent, then writes the service's output to its rotated
// log file. When the service exits, the shim kills what is left in the service's group, writes
// "<exit code> <signal>" to --exit_file (atomically) and exits. An agent that restarts finds
// the shim by its pid and start time and waits on it again; the output was never interrupted.
#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <unistd.h>

#include <cerrno>
#include <cstdio>
#include <cstring>
#include <string>
#include <vector>

#include "absl/flags/flag.h"
#include "absl/flags/parse.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_split.h"
#include "agent/services/cgroup.h"
#include "agent/services/process_tree.h"
#include "agent/services/rotating_log.h"
#include "common/spawn.h"

ABSL_FLAG(std::string, log, "", "The service's log file.");
ABSL_FLAG(uint64_t, max_bytes, 10 << 20, "Rotate the log before it passes this size.");
ABSL_FLAG(int, keep, 3, "Rotated log files kept.");
ABSL_FLAG(std::string, exit_file, "", "Where the service's exit status is written.");
ABSL_FLAG(std::string, cwd, "/", "The service's working directory.");
ABSL_FLAG(int64_t, uid, -1, "Run the service as this uid (with --gid, --groups).");
ABSL_FLAG(int64_t, gid, -1, "The service's group.");
ABSL_FLAG(std::string, groups, "", "The service's supplementary groups, comma-separated.");
ABSL_FLAG(std::string, cgroup, "", "Join this control group before starting the service.");

extern char** environ;

namespace {

using vigie::agent::services::RotatingLog;

void Say(const std::string& line) {
  const std::string l = line + "\n";
  if (write(STDOUT_FILENO, l.data(), l.size()) < 0) {
    // The agent is gone: nobody to tell.
  }
}

int Fail(const std::string& message) {
  Say(absl::StrCat("error ", message));
  return 1;
}

// Copies what is readable on `fd` into the log; false at end of file.
bool Drain(int fd, RotatingLog* log) {
  char buf[16384];
  for (int reads = 0; reads < 64; ++reads) {
    const ssize_t n = read(fd, buf, sizeof(buf));
    if (n > 0) {
      log->Write(buf, static_cast<size_t>(n));
      continue;
    }
    return !(n == 0 || (n < 0 && errno != EAGAIN && errno != EINTR));
  }
  return true;
}

}  // namespace

int main(int argc, char** argv) {
  std::vector<char*> rest = absl::ParseCommandLine(argc, argv);
  // Its own process group never gets the service's stop signal; a hangup or interrupt from a
  // terminal the agent ran in must not end it either. Writes to a gone agent are not fatal.
  for (int sig : {SIGHUP, SIGINT, SIGTERM, SIGQUIT, SIGUSR1, SIGUSR2, SIGPIPE}) {
    signal(sig, SIG_IGN);
  }
  if (rest.size() < 2 || absl::GetFlag(FLAGS_log).empty() ||
      absl::GetFlag(FLAGS_exit_file).empty()) {
    return Fail("usage: vigie-service-shim --log=FILE --exit_file=FILE [...] -- PROGRAM [ARGS]");
  }
  RotatingLog log(absl::GetFlag(FLAGS_log), absl::GetFlag(FLAGS_max_bytes),
                  absl::GetFlag(FLAGS_keep));
  if (absl::Status s = log.Open(); !s.ok()) return Fail(std::string(s.message()));

  vigie::SpawnOptions o;
  for (size_t i = 1; i < rest.size(); ++i) o.argv.push_back(rest[i]);
  for (char** e = environ; *e != nullptr; ++e) o.env.push_back(*e);
  o.working_directory = absl::GetFlag(FLAGS_cwd);
  if (absl::GetFlag(FLAGS_uid) >= 0) {
    vigie::SpawnOptions::Credentials c;
    c.uid = static_cast<uid_t>(absl::GetFlag(FLAGS_uid));
    c.gid = static_cast<gid_t>(absl::GetFlag(FLAGS_gid));
    for (absl::string_view g :
         absl::StrSplit(absl::GetFlag(FLAGS_groups), ',', absl::SkipEmpty())) {
      uint32_t n = 0;
      if (!absl::SimpleAtoi(g, &n)) return Fail(absl::StrCat("--groups: bad group \"", g, "\""));
      c.groups.push_back(n);
    }
    o.credentials = c;
  }
  const std::string cgroup = absl::GetFlag(FLAGS_cgroup);
  if (!cgroup.empty()) {
    // Every process the service starts is then in it; without it, process groups only.
    if (absl::Status s = vigie::agent::services::JoinCgroup(cgroup); !s.ok()) {
      const std::string note = absl::StrCat("vigie-service-shim: ", s.message(), "\n");
      log.Write(note.data(), note.size());
    }
  }
  absl::StatusOr<std::unique_ptr<vigie::Child>> child = vigie::Child::Spawn(o);
  if (!child.ok()) return Fail(std::string(child.status().message()));
  vigie::Child& c = **child;
  Say(absl::StrCat("pid ", c.pid(), " ", vigie::agent::services::ProcessStartTime(c.pid())));
  // Nothing more for the agent: stdout and stderr to /dev/null, so a gone agent costs nothing.
  const int null = open("/dev/null", O_RDWR | O_CLOEXEC);
  dup2(null, STDOUT_FILENO);
  dup2(null, STDERR_FILENO);

  bool out_open = true, err_open = true;
  for (;;) {
    pollfd p[3] = {{c.pidfd(), POLLIN, 0},
                   {out_open ? c.stdout_fd() : -1, POLLIN, 0},
                   {err_open ? c.stderr_fd() : -1, POLLIN, 0}};
    if (poll(p, 3, -1) < 0) {
      if (errno != EINTR) usleep(100000);  // ENOMEM: wait, never give the service up
      continue;
    }
    if (p[1].revents != 0) out_open = Drain(c.stdout_fd(), &log);
    if (p[2].revents != 0) err_open = Drain(c.stderr_fd(), &log);
    if (p[0].revents != 0) break;
  }
  // What the service left in its group goes with it (its pid still names the group until it
  // is reaped), then what is left in the pipes.
  c.SignalGroup(SIGKILL).IgnoreError();
  // And what left the group but not the cgroup (a daemon that called setsid).
  for (int i = 0; i < 100 && !cgroup.empty(); ++i) {
    if (vigie::agent::services::SignalCgroup(cgroup, SIGKILL, getpid()) == 0) break;
    usleep(10000);
  }
  Drain(c.stdout_fd(), &log);
  Drain(c.stderr_fd(), &log);
  std::optional<vigie::ExitStatus> status = c.TryReap();
  const std::string exit_file = absl::GetFlag(FLAGS_exit_file);
  const std::string tmp = exit_file + ".tmp";
  const std::string line =
      status ? absl::StrCat(status->code, " ", status->signal, "\n") : std::string("-1 9\n");
  const int fd = open(tmp.c_str(), O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);
  if (fd >= 0) {
    const bool written = write(fd, line.data(), line.size()) == static_cast<ssize_t>(line.size());
    close(fd);
    if (written) rename(tmp.c_str(), exit_file.c_str());
  }
  return 0;
}
