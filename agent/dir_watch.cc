#include "agent/dir_watch.h"

#include <poll.h>
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
  Stop();
  if (fd_ >= 0) close(fd_);
}

absl::Status DirectoryWatch::Init() {
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
    pollfd p{fd_, POLLIN, 0};
    // A short poll keeps Stop() prompt without a second wake-up channel.
    if (poll(&p, 1, 200) <= 0) continue;
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
