#include "common/runnable.h"

#include <poll.h>
#include <sys/eventfd.h>
#include <unistd.h>

#include <algorithm>
#include <cassert>
#include <cstdint>

#include "common/mutex.h"

namespace vigie {

Runnable::~Runnable() {
  assert(!thread_.joinable() && "subclass destructor must call Stop()");
  if (wake_fd_ >= 0) close(wake_fd_);
}

namespace {

void Signal(int fd) {
  if (fd < 0) return;
  const uint64_t one = 1;
  (void)!write(fd, &one, sizeof(one));
}

}  // namespace

void Runnable::Start() {
  {
    MutexLock lock(&mu_);
    stop_ = false;
  }
  thread_ = std::thread([this] { Run(); });
}

void Runnable::Stop() {
  {
    MutexLock lock(&mu_);
    stop_ = true;
    Signal(wake_fd_);
  }
  if (thread_.joinable()) thread_.join();
}

void Runnable::Wake() {
  MutexLock lock(&mu_);
  woken_ = true;
  Signal(wake_fd_);
}

bool Runnable::WaitForFd(absl::Duration d, int fd, bool* readable) {
  *readable = false;
  int wake_fd;
  {
    MutexLock lock(&mu_);
    if (wake_fd_ < 0) wake_fd_ = eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC);
    if (stop_) return false;
    if (woken_) {
      woken_ = false;
      return true;
    }
    wake_fd = wake_fd_;
  }
  if (wake_fd < 0) return WaitFor(std::min(d, absl::Seconds(1)));  // no eventfd: poll the fd later
  pollfd p[2] = {{fd, POLLIN, 0}, {wake_fd, POLLIN, 0}};
  const int64_t ms = d <= absl::ZeroDuration()   ? 0
                     : d >= absl::Hours(24 * 24) ? INT32_MAX
                                                 : absl::ToInt64Milliseconds(d) + 1;
  if (poll(p, 2, static_cast<int>(ms)) > 0) {
    *readable = (p[0].revents & POLLIN) != 0;
    if (p[1].revents != 0) {
      uint64_t n;
      (void)!read(wake_fd, &n, sizeof(n));
    }
  }
  MutexLock lock(&mu_);
  woken_ = false;
  return !stop_;
}

bool Runnable::WaitFor(absl::Duration d) {
  MutexLock lock(&mu_);
  auto ready = [this]() ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_) { return stop_ || woken_; };
  mu_.AwaitWithTimeout(ready, d);
  woken_ = false;
  return !stop_;
}

bool Runnable::stopping() const {
  MutexLock lock(&mu_);
  return stop_;
}

}  // namespace vigie
