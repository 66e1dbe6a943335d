#include "common/runnable.h"

#include <cassert>

#include "common/mutex.h"

namespace vigie {

Runnable::~Runnable() { assert(!thread_.joinable() && "subclass destructor must call Stop()"); }

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
  }
  if (thread_.joinable()) thread_.join();
}

void Runnable::Wake() {
  MutexLock lock(&mu_);
  woken_ = true;
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
