// Watches a directory with inotify and calls back when a file in it is written, moved in or
// removed, so the textfile collector can send a new value at once instead of at the next
// interval.
#ifndef VIGIE_AGENT_DIR_WATCH_H_
#define VIGIE_AGENT_DIR_WATCH_H_

#include <functional>
#include <string>

#include "absl/status/status.h"
#include "common/runnable.h"

namespace vigie::agent {

class DirectoryWatch : public Runnable {
 public:
  // `on_change` gets the file name; it runs on the watch's thread and must be quick.
  DirectoryWatch(std::string directory, std::function<void(const std::string&)> on_change);
  ~DirectoryWatch() override;

  // Sets up the watch; call before Start(). Fails if inotify is unavailable or the directory
  // cannot be watched (the collector still reads it every interval).
  absl::Status Init();
  // Stops the thread (it sleeps in poll(2) on the watch and an eventfd, without timeouts).
  void Shutdown();

 protected:
  void Run() override;

 private:
  const std::string directory_;
  const std::function<void(const std::string&)> on_change_;
  int fd_ = -1;
  int wake_fd_ = -1;
};

}  // namespace vigie::agent

#endif  // VIGIE_AGENT_DIR_WATCH_H_
