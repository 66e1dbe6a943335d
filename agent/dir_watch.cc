#include "agent/dir_watch.h"

#include <poll.h>
#include <sys/eventfd.h>
#include <sys/inotify.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>

#include "absl/strings/str_cat.h"

namespace vigie::agent {

DirectoryWatch::DirectoryWatch(std::string directory,
                               std::function<void(const std::string&)> on_change)
    : Runnable("dir-watch"), directory_(std::move(directory)), on_change_(std::move(on_change)) {}

DirectoryWatch::~DirectoryWatch() {
  Shutdown();
  if (fd_ >= 0) close(fd_);
  if (wake_fd_ >= 0) close(wake_fd_);
}

void DirectoryWatch::Shutdown() {
  if (wake_fd_ >= 0) {
    const uint64_t one = 1;
    (void)!write(wake_fd_, &one, sizeof(one));
  }
  Stop();
}

absl::Status DirectoryWatch::Init() {
  wake_fd_ = eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC);
  if (wake_fd_ < 0) return absl::UnavailableError(absl::StrCat("eventfd: ", strerror(errno)));
  fd_ = inotify_init1(IN_NONBLOCK | IN_CLOEXEC);
  if (fd_ < 0) return absl::UnavailableError(absl::StrCat("inotify: ", strerror(errno)));
  if (inotify_add_watch(fd_, directory_.c_str(),
                        IN_CLOSE_WRITE | IN_MOVED_TO | IN_MOVED_FROM | IN_DELETE | IN_CREATE) < 0) {
    return absl::UnavailableError(
        absl::StrCat("inotify watch on ", directory_, ": ", strerror(errno)));
  }
  return absl::OkStatus();
}

void DirectoryWatch::Run() {
  alignas(inotify_event) char buf[16384];
  while (!stopping()) {
    pollfd p[2] = {{fd_, POLLIN, 0}, {wake_fd_, POLLIN, 0}};
    if (poll(p, 2, -1) <= 0) continue;
    if (p[1].revents != 0) break;  // Shutdown()
    while (true) {
      ssize_t n = read(fd_, buf, sizeof(buf));
      if (n <= 0) break;
      for (char* at = buf; at < buf + n;) {
        auto* e = reinterpret_cast<inotify_event*>(at);
        // IN_Q_OVERFLOW has no name: report it as a change of everything.
        on_change_(e->len > 0 ? std::string(e->name) : std::string());
        at += sizeof(inotify_event) + e->len;
      }
    }
  }
}

}  // namespace vigie::agent
