#include "common/spawn.h"

#include <fcntl.h>
#include <signal.h>
#include <spawn.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cerrno>
#include <thread>

#include "absl/strings/str_cat.h"

namespace vigie {
namespace {

// Reaps killed children that had not died yet when their Child was destroyed: one thread,
// started on first use, waiting on their pidfds. Lives for the whole process.
class Reaper {
 public:
  static Reaper& Get() {
    static Reaper* const reaper = new Reaper;
    return *reaper;
  }

  void Adopt(int pidfd) {
    epoll_event ev{};
    ev.events = EPOLLIN;
    ev.data.fd = pidfd;
    if (epoll_fd_ < 0 || epoll_ctl(epoll_fd_, EPOLL_CTL_ADD, pidfd, &ev) != 0) {
      // Cannot watch it: wait here (it was sent SIGKILL, so it dies promptly).
      siginfo_t info{};
      waitid(static_cast<idtype_t>(P_PIDFD), static_cast<id_t>(pidfd), &info, WEXITED);
      close(pidfd);
    }
  }

 private:
  Reaper() : epoll_fd_(epoll_create1(EPOLL_CLOEXEC)) {
    if (epoll_fd_ >= 0) std::thread([this] { Run(); }).detach();
  }

  void Run() {
    epoll_event events[16];
    for (;;) {
      const int n = epoll_wait(epoll_fd_, events, 16, -1);
      for (int i = 0; i < n; ++i) {
        const int fd = events[i].data.fd;
        siginfo_t info{};
        if (waitid(static_cast<idtype_t>(P_PIDFD), static_cast<id_t>(fd), &info,
                   WEXITED | WNOHANG) == 0 &&
            info.si_pid == 0) {
          continue;  // not yet
        }
        epoll_ctl(epoll_fd_, EPOLL_CTL_DEL, fd, nullptr);
        close(fd);
      }
    }
  }

  const int epoll_fd_;
};

// glibc 2.36's <sys/pidfd.h> lacks extern "C"; the system call is simple enough to make.
int PidfdOpen(pid_t pid) { return static_cast<int>(syscall(SYS_pidfd_open, pid, 0)); }

void CloseFd(int* fd) {
  if (*fd >= 0) close(*fd);
  *fd = -1;
}

}  // namespace

std::string ExitStatus::ToString() const {
  if (signal != 0) return absl::StrCat("killed by signal ", signal, " (", strsignal(signal), ")");
  return absl::StrCat("exit code ", code);
}

absl::StatusOr<std::unique_ptr<Child>> Child::Spawn(const SpawnOptions& options) {
  if (options.argv.empty() || options.argv[0].empty()) {
    return absl::InvalidArgumentError("spawn: no program");
  }
  int out[2] = {-1, -1}, err[2] = {-1, -1};
  if (options.capture_output &&
      (pipe2(out, O_CLOEXEC | O_NONBLOCK) != 0 || pipe2(err, O_CLOEXEC | O_NONBLOCK) != 0)) {
    const int e = errno;
    for (int* fd : {&out[0], &out[1], &err[0], &err[1]}) CloseFd(fd);
    return absl::ResourceExhaustedError(absl::StrCat("spawn: pipe: ", strerror(e)));
  }
  posix_spawn_file_actions_t actions;
  posix_spawn_file_actions_init(&actions);
  posix_spawn_file_actions_addopen(&actions, 0, "/dev/null", O_RDONLY, 0);
  if (options.capture_output) {
    // The child's ends must be blocking: a plugin's write must not fail with EAGAIN.
    posix_spawn_file_actions_adddup2(&actions, out[1], 1);
    posix_spawn_file_actions_adddup2(&actions, err[1], 2);
  } else {
    posix_spawn_file_actions_addopen(&actions, 1, "/dev/null", O_WRONLY, 0);
    posix_spawn_file_actions_addopen(&actions, 2, "/dev/null", O_WRONLY, 0);
  }
  posix_spawn_file_actions_addclosefrom_np(&actions, 3);
  if (!options.working_directory.empty()) {
    posix_spawn_file_actions_addchdir_np(&actions, options.working_directory.c_str());
  }
  posix_spawnattr_t attr;
  posix_spawnattr_init(&attr);
  sigset_t none, all;
  sigemptyset(&none);
  sigfillset(&all);
  posix_spawnattr_setsigmask(&attr, &none);
  posix_spawnattr_setsigdefault(&attr, &all);
  posix_spawnattr_setpgroup(&attr, 0);
  posix_spawnattr_setflags(&attr, POSIX_SPAWN_SETSIGMASK | POSIX_SPAWN_SETSIGDEF |
                                      POSIX_SPAWN_SETPGROUP | POSIX_SPAWN_USEVFORK);
  std::vector<char*> argv, env;
  for (const std::string& a : options.argv) argv.push_back(const_cast<char*>(a.c_str()));
  argv.push_back(nullptr);
  for (const std::string& e : options.env) env.push_back(const_cast<char*>(e.c_str()));
  env.push_back(nullptr);
  pid_t pid = -1;
  const int rc = posix_spawn(&pid, argv[0], &actions, &attr, argv.data(), env.data());
  posix_spawn_file_actions_destroy(&actions);
  posix_spawnattr_destroy(&attr);
  CloseFd(&out[1]);
  CloseFd(&err[1]);
  if (rc != 0) {
    CloseFd(&out[0]);
    CloseFd(&err[0]);
    return absl::FailedPreconditionError(
        absl::StrCat("cannot run ", options.argv[0], ": ", strerror(rc)));
  }
  std::unique_ptr<Child> child(new Child);
  child->pid_ = pid;
  child->stdout_fd_ = out[0];
  child->stderr_fd_ = err[0];
  // Nothing else reaps our children, so the pid stays ours (a zombie at worst) until we do.
  child->pidfd_ = PidfdOpen(pid);
  if (child->pidfd_ < 0) {
    const int e = errno;
    kill(-pid, SIGKILL);
    waitpid(pid, nullptr, 0);
    child->reaped_ = true;
    return absl::InternalError(absl::StrCat("pidfd_open: ", strerror(e)));
  }
  return child;
}

Child::~Child() {
  CloseFd(&stdout_fd_);
  CloseFd(&stderr_fd_);
  if (pidfd_ < 0) return;
  if (!reaped_) {
    kill(-pid_, SIGKILL);
    siginfo_t info{};
    if (waitid(static_cast<idtype_t>(P_PIDFD), static_cast<id_t>(pidfd_), &info,
               WEXITED | WNOHANG) != 0 ||
        info.si_pid == 0) {
      Reaper::Get().Adopt(pidfd_);  // dies in a moment; reaped there
      return;
    }
  }
  close(pidfd_);
}

absl::Status Child::SignalGroup(int signal) {
  if (reaped_) return absl::FailedPreconditionError("the child has been reaped");
  if (kill(-pid_, signal) != 0 && errno != ESRCH) {
    return absl::InternalError(absl::StrCat("kill: ", strerror(errno)));
  }
  return absl::OkStatus();
}

std::optional<ExitStatus> Child::TryReap() {
  if (reaped_) return std::nullopt;
  siginfo_t info{};
  if (waitid(static_cast<idtype_t>(P_PIDFD), static_cast<id_t>(pidfd_), &info, WEXITED | WNOHANG) !=
          0 ||
      info.si_pid == 0) {
    return std::nullopt;
  }
  reaped_ = true;
  ExitStatus s;
  if (info.si_code == CLD_EXITED) {
    s.code = info.si_status;
  } else {
    s.signal = info.si_status;
  }
  return s;
}

}  // namespace vigie
