// The shape of every background loop: an object with Start()/Stop() and an interruptible wait.
#ifndef VIGIE_COMMON_RUNNABLE_H_
#define VIGIE_COMMON_RUNNABLE_H_

#include <string>
#include <thread>

#include "absl/base/thread_annotations.h"
#include "absl/time/time.h"
#include "common/mutex.h"

namespace vigie {

// Subclasses implement Run(), which loops until stop is requested, using WaitFor() to pause.
// Start() and Stop() are called from one owning thread; Stop() is idempotent and joins.
// A subclass's destructor must call Stop() (the thread may still use the subclass).
class Runnable {
 public:
  explicit Runnable(std::string name) : name_(std::move(name)) {}
  virtual ~Runnable();
  Runnable(const Runnable&) = delete;
  Runnable& operator=(const Runnable&) = delete;

  void Start();
  // Requests stop, wakes WaitFor(), and joins the thread.
  void Stop();
  // Wakes a pending WaitFor() early without stopping (e.g. new work arrived).
  void Wake();

  const std::string& name() const { return name_; }

 protected:
  virtual void Run() = 0;
  // Waits up to `d`. Returns false if stop was requested (at once if already requested).
  bool WaitFor(absl::Duration d);
  // Like WaitFor, but also returns (true) as soon as `fd` is readable, so a loop can watch a
  // file descriptor (inotify, say) without a thread of its own. *readable says whether it was.
  bool WaitForFd(absl::Duration d, int fd, bool* readable);
  bool stopping() const;

 private:
  const std::string name_;
  std::thread thread_;
  mutable Mutex mu_;
  bool stop_ ABSL_GUARDED_BY(mu_) = false;
  bool woken_ ABSL_GUARDED_BY(mu_) = false;
  // An eventfd Stop() and Wake() signal while the loop sleeps in WaitForFd (made on first use).
  int wake_fd_ ABSL_GUARDED_BY(mu_) = -1;
};

}  // namespace vigie

#endif  // VIGIE_COMMON_RUNNABLE_H_
