#include "agent/checks/event_loop.h"

#include <sys/epoll.h>
#include <sys/eventfd.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>

#include "absl/strings/str_cat.h"

namespace vigie::agent::checks {

EventLoop::~EventLoop() {
  if (epoll_fd_ >= 0) close(epoll_fd_);
  if (wake_fd_ >= 0) close(wake_fd_);
}

absl::Status EventLoop::Init() {
  epoll_fd_ = epoll_create1(EPOLL_CLOEXEC);
  wake_fd_ = eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK);
  if (epoll_fd_ < 0 || wake_fd_ < 0) {
    return absl::InternalError(absl::StrCat("check loop: epoll/eventfd: ", strerror(errno)));
  }
  epoll_event ev{};
  ev.events = EPOLLIN;
  ev.data.fd = wake_fd_;
  if (epoll_ctl(epoll_fd_, EPOLL_CTL_ADD, wake_fd_, &ev) != 0) {
    return absl::InternalError(absl::StrCat("check loop: epoll_ctl: ", strerror(errno)));
  }
  return absl::OkStatus();
}

void EventLoop::Watch(int fd, bool read, bool write, Callback cb) {
  epoll_event ev{};
  ev.events = (read ? EPOLLIN : 0u) | (write ? EPOLLOUT : 0u);
  ev.data.fd = fd;
  const bool known = callbacks_.contains(fd);
  callbacks_[fd] = std::make_shared<Callback>(std::move(cb));
  if (epoll_ctl(epoll_fd_, known ? EPOLL_CTL_MOD : EPOLL_CTL_ADD, fd, &ev) != 0) {
    // A number closed behind our back (libpq replaces its socket) and reused: the kernel
    // dropped it (ENOENT), or still has it registered through a duplicate (EEXIST).
    epoll_ctl(epoll_fd_, errno == ENOENT ? EPOLL_CTL_ADD : EPOLL_CTL_MOD, fd, &ev);
  }
}

void EventLoop::Unwatch(int fd) {
  if (callbacks_.erase(fd) > 0) epoll_ctl(epoll_fd_, EPOLL_CTL_DEL, fd, nullptr);
}

void EventLoop::Poll(absl::Time until) {
  const absl::Duration left = until - absl::Now();
  int timeout_ms = 0;
  if (left > absl::ZeroDuration()) {
    // Rounded up, so a wait never ends just before its deadline and spins.
    timeout_ms = static_cast<int>(
        std::min<int64_t>(absl::ToInt64Milliseconds(left + absl::Microseconds(999)), 60000));
  }
  epoll_event events[64];
  const int n = epoll_wait(epoll_fd_, events, 64, timeout_ms);
  for (int i = 0; i < n; ++i) {
    const int fd = events[i].data.fd;
    if (fd == wake_fd_) {
      uint64_t v;
      while (read(wake_fd_, &v, sizeof(v)) > 0) {
      }
      continue;
    }
    auto it = callbacks_.find(fd);
    if (it == callbacks_.end()) continue;       // unwatched by an earlier callback
    std::shared_ptr<Callback> cb = it->second;  // the callback may unwatch itself
    const uint32_t e = events[i].events;
    // Errors and hang-ups wake both directions: the owner's next read or write sees them.
    const bool err = (e & (EPOLLERR | EPOLLHUP)) != 0;
    (*cb)((e & EPOLLIN) != 0 || err, (e & EPOLLOUT) != 0 || err);
  }
}

void EventLoop::Wake() {
  const uint64_t one = 1;
  [[maybe_unused]] ssize_t r = write(wake_fd_, &one, sizeof(one));
}

}  // namespace vigie::agent::checks
