// vigie::Mutex: a mutex with absl::Mutex's shape (annotated for clang's -Wthread-safety, with
// Await on a predicate), built on std::mutex and std::condition_variable; and vigie::CondVar
// for hot paths where waking every waiter at every unlock would cost too much.
//
// Why not absl::Mutex: Debian's libabsl is not built with ThreadSanitizer annotations, so TSan
// cannot see absl::Mutex's happens-before edges and reports every guarded access as a race.
// std::mutex goes through pthread, which TSan intercepts, so the TSan build stays meaningful.
#ifndef VIGIE_COMMON_MUTEX_H_
#define VIGIE_COMMON_MUTEX_H_

#include <condition_variable>
#include <mutex>

#include "absl/base/thread_annotations.h"
#include "absl/time/clock.h"
#include "absl/time/time.h"

namespace vigie {

// Not recursive. Thread-safe.
class ABSL_LOCKABLE Mutex {
 public:
  Mutex() = default;
  Mutex(const Mutex&) = delete;
  Mutex& operator=(const Mutex&) = delete;

  void Lock() ABSL_EXCLUSIVE_LOCK_FUNCTION() { mu_.lock(); }
  // Wakes every Await*(): a waiter re-checks its predicate after any unlock. The notify comes
  // before the unlock, so the unlock is the last touch: an object whose owner may delete it as
  // soon as it sees the change (a finished reactor, say) is not used after that. Without
  // waiters there is nothing to wake (and no system call).
  void Unlock() ABSL_UNLOCK_FUNCTION() {
    if (waiters_ > 0) cv_.notify_all();
    mu_.unlock();
  }

  // Blocks until `cond()` is true. `cond` runs with the mutex held. REQUIRES: held.
  template <typename Cond>
  void Await(Cond cond) ABSL_EXCLUSIVE_LOCKS_REQUIRED(this) {
    std::unique_lock<std::mutex> lock(mu_, std::adopt_lock);
    ++waiters_;
    cv_.wait(lock, cond);
    --waiters_;
    lock.release();
  }
  // Like Await, giving up at `deadline`; returns cond()'s final value. REQUIRES: held.
  template <typename Cond>
  bool AwaitWithDeadline(Cond cond, absl::Time deadline) ABSL_EXCLUSIVE_LOCKS_REQUIRED(this) {
    if (deadline == absl::InfiniteFuture()) {
      Await(cond);
      return true;
    }
    std::unique_lock<std::mutex> lock(mu_, std::adopt_lock);
    ++waiters_;
    const bool result = cv_.wait_until(lock, absl::ToChronoTime(deadline), cond);
    --waiters_;
    lock.release();
    return result;
  }
  template <typename Cond>
  bool AwaitWithTimeout(Cond cond, absl::Duration timeout) ABSL_EXCLUSIVE_LOCKS_REQUIRED(this) {
    return AwaitWithDeadline(cond, absl::Now() + timeout);
  }

 private:
  friend class CondVar;
  std::mutex mu_;
  std::condition_variable cv_;
  int waiters_ = 0;  // threads in Await*(); guarded by mu_
};

// A condition variable for a Mutex: Signal() wakes one waiter, not every one. Use it where many
// threads wait for work (a worker pool) and each unit of work needs one of them.
class CondVar {
 public:
  // Waits for a Signal (or a spurious wake-up) until `deadline`; false on timeout.
  // REQUIRES: `mu` held (released while waiting, held again on return).
  bool WaitWithDeadline(Mutex* mu, absl::Time deadline) ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu) {
    std::unique_lock<std::mutex> lock(mu->mu_, std::adopt_lock);
    bool signalled = true;
    if (deadline == absl::InfiniteFuture()) {
      cv_.wait(lock);
    } else {
      signalled = cv_.wait_until(lock, absl::ToChronoTime(deadline)) == std::cv_status::no_timeout;
    }
    lock.release();
    return signalled;
  }
  void Wait(Mutex* mu) ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu) {
    WaitWithDeadline(mu, absl::InfiniteFuture());
  }
  void Signal() { cv_.notify_one(); }
  void SignalAll() { cv_.notify_all(); }

 private:
  std::condition_variable cv_;
};

// Holds a Mutex for its scope.
class ABSL_SCOPED_LOCKABLE MutexLock {
 public:
  explicit MutexLock(Mutex* mu) ABSL_EXCLUSIVE_LOCK_FUNCTION(mu) : mu_(mu) { mu_->Lock(); }
  ~MutexLock() ABSL_UNLOCK_FUNCTION() { mu_->Unlock(); }
  MutexLock(const MutexLock&) = delete;
  MutexLock& operator=(const MutexLock&) = delete;

 private:
  Mutex* const mu_;
};

}  // namespace vigie

#endif  // VIGIE_COMMON_MUTEX_H_
