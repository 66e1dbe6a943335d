// Starting and reaping child processes through pidfds. Each child is waited for by its own
// descriptor (waitid(P_PIDFD)), never by waitpid(-1), so the agent's command checks and its
// supervised services never take each other's exit statuses. Every child leads a new process
// group, so a timeout kills what it started too.
#ifndef VIGIE_COMMON_SPAWN_H_
#define VIGIE_COMMON_SPAWN_H_

#include <sys/types.h>

#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "absl/status/statusor.h"

namespace vigie {

struct SpawnOptions {
  // argv[0] is the program's path (PATH is not searched).
  std::vector<std::string> argv;
  // The whole environment, "NAME=value" (nothing of the caller's is passed on).
  std::vector<std::string> env;
  // stdout and stderr into pipes read through stdout_fd()/stderr_fd(); else /dev/null.
  bool capture_output = true;
  // The child's working directory; empty: the caller's.
  std::string working_directory;
  // Run as this user and these groups (the caller must be root); unset: the caller's.
  struct Credentials {
    uid_t uid = 0;
    gid_t gid = 0;
    std::vector<gid_t> groups;  // supplementary
  };
  std::optional<Credentials> credentials;
};

// How a child ended.
struct ExitStatus {
  int code = -1;   // the exit code, or -1 when killed by a signal
  int signal = 0;  // the signal that killed it, or 0
  // "exit code 2", "killed by signal 9 (Killed)".
  std::string ToString() const;
};

class Child {
 public:
  // Starts the child with default signal dispositions and an empty signal mask (the caller's
  // blocked SIGTERM is not inherited), stdin from /dev/null, and no other descriptors.
  static absl::StatusOr<std::unique_ptr<Child>> Spawn(const SpawnOptions& options);

  // A child not yet reaped has its process group killed (SIGKILL); it is reaped here if it
  // is already gone, else by a background reaper as soon as it is.
  ~Child();
  Child(const Child&) = delete;
  Child& operator=(const Child&) = delete;

  pid_t pid() const { return pid_; }
  // Readable once the child has exited (for poll/epoll).
  int pidfd() const { return pidfd_; }
  // Non-blocking read ends of its stdout and stderr; -1 when not captured.
  int stdout_fd() const { return stdout_fd_; }
  int stderr_fd() const { return stderr_fd_; }

  // Lets the child go on without us: closes our descriptors, and neither kills nor reaps it
  // (once this process exits, init does). The object is then spent.
  void Release();

  // Sends `signal` to the child's whole process group (while the child is not reaped).
  absl::Status SignalGroup(int signal);
  // The exit status once the child has exited (it is then reaped), nullopt while it runs.
  std::optional<ExitStatus> TryReap();

 private:
  Child() = default;

  pid_t pid_ = -1;
  int pidfd_ = -1;
  int stdout_fd_ = -1;
  int stderr_fd_ = -1;
  bool reaped_ = false;
};

}  // namespace vigie

#endif  // VIGIE_COMMON_SPAWN_H_
