#include "common/spawn.h"

#include <fcntl.h>
#include <grp.h>
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

// posix_spawn cannot change the user: with credentials, fork and exec by hand, doing in the
// child what posix_spawn's attributes do. Returns 0 and the pid, or the errno of the step that
// failed in the child (reported through a close-on-exec pipe, as posix_spawn does).
int ForkExec(const SpawnOptions& o, char* const* argv, char* const* envp, int out_w, int err_w,
             pid_t* pid) {
  const SpawnOptions::Credentials& c = *o.credentials;
  int report[2];
  if (pipe2(report, O_CLOEXEC) != 0) return errno;
  const pid_t p = fork();
  if (p < 0) {
    const int e = errno;
    close(report[0]);
    close(report[1]);
    return e;
  }
  if (p == 0) {
    // The child of a threaded process: async-signal-safe calls only, no allocation.
    auto fail = [&report](int e) {
      while (write(report[1], &e, sizeof(e)) < 0 && errno == EINTR) {
      }
      _exit(127);
    };
    setpgid(0, 0);
    struct sigaction dfl {};
    dfl.sa_handler = SIG_DFL;
    for (int sig = 1; sig < NSIG; ++sig) sigaction(sig, &dfl, nullptr);  // KILL, STOP: EINVAL
    sigset_t none;
    sigemptyset(&none);
    sigprocmask(SIG_SETMASK, &none, nullptr);
    const int null = open("/dev/null", O_RDWR);
    if (null < 0) fail(errno);
    dup2(null, 0);
    dup2(out_w >= 0 ? out_w : null, 1);
    dup2(err_w >= 0 ? err_w : null, 2);
    if (report[1] > 3) close_range(3, static_cast<unsigned>(report[1]) - 1, 0);
    close_range(static_cast<unsigned>(report[1]) + 1, ~0U, 0);
    if (!o.working_directory.empty() && chdir(o.working_directory.c_str()) != 0) fail(errno);
    if (setgroups(c.groups.size(), c.groups.data()) != 0 || setgid(c.gid) != 0 ||
        setuid(c.uid) != 0) {
      fail(errno);
    }
    execve(argv[0], argv, envp);
    fail(errno);
  }
  close(report[1]);
  int e = 0;
  ssize_t n;
  while ((n = read(report[0], &e, sizeof(e))) < 0 && errno == EINTR) {
  }
  close(report[0]);
  if (n == static_cast<ssize_t>(sizeof(e))) {
    waitpid(p, nullptr, 0);
    return e;
  }
  *pid = p;
  return 0;
}

// posix_spawn with the attributes the header promises.
int PosixSpawn(const SpawnOptions& options, char* const* argv, char* const* envp, int out_w,
               int err_w, pid_t* pid) {
  posix_spawn_file_actions_t actions;
  posix_spawn_file_actions_init(&actions);
  posix_spawn_file_actions_addopen(&actions, 0, "/dev/null", O_RDONLY, 0);
  if (out_w >= 0) {
    posix_spawn_file_actions_adddup2(&actions, out_w, 1);
    posix_spawn_file_actions_adddup2(&actions, err_w, 2);
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
  const int rc = posix_spawn(pid, argv[0], &actions, &attr, argv, envp);
  posix_spawn_file_actions_destroy(&actions);
  posix_spawnattr_destroy(&attr);
  return rc;
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
  // Only our read ends are non-blocking: O_NONBLOCK belongs to the open file, so a pipe made
  // with it would give the child a stdout whose writes fail with EAGAIN when it is full.
  if (options.capture_output &&
      (pipe2(out, O_CLOEXEC) != 0 || pipe2(err, O_CLOEXEC) != 0 ||
       fcntl(out[0], F_SETFL, O_NONBLOCK) != 0 || fcntl(err[0], F_SETFL, O_NONBLOCK) != 0)) {
    const int e = errno;
    for (int* fd : {&out[0], &out[1], &err[0], &err[1]}) CloseFd(fd);
    return absl::ResourceExhaustedError(absl::StrCat("spawn: pipe: ", strerror(e)));
  }
  std::vector<char*> argv, env;
  for (const std::string& a : options.argv) argv.push_back(const_cast<char*>(a.c_str()));
  argv.push_back(nullptr);
  for (const std::string& e : options.env) env.push_back(const_cast<char*>(e.c_str()));
  env.push_back(nullptr);
  pid_t pid = -1;
  const int rc = options.credentials
                     ? ForkExec(options, argv.data(), env.data(), out[1], err[1], &pid)
                     : PosixSpawn(options, argv.data(), env.data(), out[1], err[1], &pid);
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

void Child::Release() {
  CloseFd(&stdout_fd_);
  CloseFd(&stderr_fd_);
  CloseFd(&pidfd_);
  reaped_ = true;
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
