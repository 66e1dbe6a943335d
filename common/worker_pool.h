// A fixed set of threads running submitted tasks in FIFO order: where blocking work (database
// calls) goes, so gRPC reactions never block.
#ifndef VIGIE_COMMON_WORKER_POOL_H_
#define VIGIE_COMMON_WORKER_POOL_H_

#include <deque>
#include <functional>
#include <string>
#include <thread>
#include <vector>

#include "absl/base/thread_annotations.h"
#include "common/mutex.h"

namespace vigie {

// Thread-safe. Stop() runs every task already queued, then joins.
class WorkerPool {
 public:
  WorkerPool(std::string name, int threads, size_t max_queue);
  ~WorkerPool();

  // Queues `task` unless `max_queue` tasks are waiting (returns false) or the pool is stopped.
  bool TrySubmit(std::function<void()> task);
  // Queues `task` regardless of max_queue. For callers whose own design bounds how many tasks
  // they can have queued (e.g. one per stream). Returns false once stopped.
  bool Submit(std::function<void()> task);

  void Stop();
  size_t queued() const;

 private:
  void Loop();

  const std::string name_;
  const size_t max_queue_;
  std::vector<std::thread> threads_;
  mutable Mutex mu_;
  std::deque<std::function<void()>> queue_ ABSL_GUARDED_BY(mu_);
  bool stopping_ ABSL_GUARDED_BY(mu_) = false;
};

}  // namespace vigie

#endif  // VIGIE_COMMON_WORKER_POOL_H_
