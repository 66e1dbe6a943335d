// Watches a directory with inotify, so the textfile collector can send a new value at once
// instead of at the next interval. No thread of its own: the agent's loop waits on fd().
#ifndef VIGIE_AGENT_DIR_WATCH_H_
#define VIGIE_AGENT_DIR_WATCH_H_

#include <functional>
#include <string>

#include "absl/status/status.h"

namespace vigie::agent {

class DirectoryWatch {
 public:
  explicit DirectoryWatch(std::string directory) : directory_(std::move(directory)) {}
  ~DirectoryWatch();
  DirectoryWatch(const DirectoryWatch&) = delete;
  DirectoryWatch& operator=(const DirectoryWatch&) = delete;

  // Sets up the watch. Fails if inotify is unavailable or the directory cannot be watched
  // (the collector still reads it every interval).
  absl::Status Init();
  // Readable when something changed.
  int fd() const { return fd_; }
  // Reads the pending events and calls `on_change` with each file name (empty when the kernel's
  // queue overflowed: anything may have changed). Never blocks.
  void Drain(const std::function<void(const std::string&)>& on_change);

 private:
  const std::string directory_;
  int fd_ = -1;
};

}  // namespace vigie::agent

#endif  // VIGIE_AGENT_DIR_WATCH_H_
