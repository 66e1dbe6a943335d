// A single-threaded readiness loop (epoll) the check probes share: sockets of libcurl, c-ares,
// and anything else a probe waits on. Everything but Wake() is for the loop's own thread.
#ifndef VIGIE_AGENT_CHECKS_EVENT_LOOP_H_
#define VIGIE_AGENT_CHECKS_EVENT_LOOP_H_

#include <functional>
#include <memory>

#include "absl/container/flat_hash_map.h"
#include "absl/status/status.h"
#include "absl/time/time.h"

namespace vigie::agent::checks {

class EventLoop {
 public:
  using Callback = std::function<void(bool readable, bool writable)>;

  EventLoop() = default;
  ~EventLoop();
  EventLoop(const EventLoop&) = delete;
  EventLoop& operator=(const EventLoop&) = delete;

  absl::Status Init();
  // Calls `cb` when `fd` is readable (if `read`) or writable (if `write`); replaces an earlier
  // watch of the same fd. Unwatch before closing the fd.
  void Watch(int fd, bool read, bool write, Callback cb);
  void Unwatch(int fd);
  // Waits until a watched fd is ready, Wake() is called, or `until`; then runs the callbacks.
  void Poll(absl::Time until);
  // Ends a Poll early. Thread-safe.
  void Wake();
  size_t watched() const { return callbacks_.size(); }
  // Readable when a watched fd is ready: a caller may wait on it, then Poll(Now()).
  int fd() const { return epoll_fd_; }

 private:
  int epoll_fd_ = -1;
  int wake_fd_ = -1;
  absl::flat_hash_map<int, std::shared_ptr<Callback>> callbacks_;
};

}  // namespace vigie::agent::checks

#endif  // VIGIE_AGENT_CHECKS_EVENT_LOOP_H_
