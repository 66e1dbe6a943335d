#include "agent/dir_watch.h"

#include <sys/inotify.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>

#include "absl/strings/str_cat.h"

namespace vigie::agent {

DirectoryWatch::~DirectoryWatch() {
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

void DirectoryWatch::Drain(const std::function<void(const std::string&)>& on_change) {
  alignas(inotify_event) char buf[16384];
  while (true) {
    ssize_t n = read(fd_, buf, sizeof(buf));
    if (n <= 0) return;  // EAGAIN: all read
    for (char* at = buf; at < buf + n;) {
      auto* e = reinterpret_cast<inotify_event*>(at);
      on_change(e->len > 0 ? std::string(e->name) : std::string());
      at += sizeof(inotify_event) + e->len;
    }
  }
}

}  // namespace vigie::agent
