#include "agent/collector_runner.h"

#include <deque>
#include <functional>
#include <thread>

#include "absl/strings/str_cat.h"
#include "common/mutex.h"

namespace vigie::agent {

// Shared with the worker threads, which may outlive the runner while a call is stuck.
struct CollectorRunner::State {
  struct Slot {
    std::shared_ptr<Collector> collector;
    bool running = false;  // a call has not returned yet (possibly from an earlier round)
  };
  // One round's results, shared with the calls of that round.
  struct Round {
    std::vector<CollectorResult> results;
    std::vector<bool> done;
    size_t remaining = 0;
    // Set when remaining reaches 0. The round waits on its own mutex, so it is woken once per
    // round, not by every unlock of the runner's.
    Mutex finished_mu;
    bool finished ABSL_GUARDED_BY(finished_mu) = false;
  };
  struct Job {
    size_t index;
    int64_t now_ms;
    std::shared_ptr<Round> round;
  };

  absl::Duration timeout;
  int base_workers;
  int max_workers;
  Mutex mu;
  std::vector<Slot> slots ABSL_GUARDED_BY(mu);
  std::deque<Job> queue ABSL_GUARDED_BY(mu);
  int workers ABSL_GUARDED_BY(mu) = 0;
  int idle ABSL_GUARDED_BY(mu) = 0;
  bool stopping ABSL_GUARDED_BY(mu) = false;

  void StartWorkerLocked(const std::shared_ptr<State>& self) ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu) {
    ++workers;
    std::thread([self] { self->Loop(); }).detach();
  }

  void Loop() {
    MutexLock lock(&mu);
    while (true) {
      ++idle;
      mu.Await([this]() ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu) { return stopping || !queue.empty(); });
      --idle;
      if (stopping) break;
      Job job = std::move(queue.front());
      queue.pop_front();
      std::shared_ptr<Collector> collector = slots[job.index].collector;
      mu.Unlock();
      Collection collection;
      const absl::Time started = absl::Now();
      absl::Status status = collector->Collect(job.now_ms, &collection);
      const absl::Duration took = absl::Now() - started;
      mu.Lock();
      slots[job.index].running = false;
      Round& r = *job.round;
      if (!r.done[job.index]) {  // not abandoned
        r.done[job.index] = true;
        --r.remaining;
        CollectorResult& res = r.results[job.index];
        res.status = status;
        res.duration = took;
        if (status.ok()) res.collection = std::move(collection);
        if (r.remaining == 0) {
          MutexLock done(&r.finished_mu);
          r.finished = true;
        }
      }
      // A replacement worker leaves once the one it stood in for is back.
      if (workers > base_workers && queue.empty()) break;
    }
    --workers;
  }
};

CollectorRunner::CollectorRunner(std::vector<std::unique_ptr<Collector>> collectors,
                                 absl::Duration timeout, int workers, int max_workers)
    : state_(std::make_shared<State>()) {
  state_->timeout = timeout;
  state_->base_workers = workers;
  state_->max_workers = std::max(workers, max_workers);
  MutexLock lock(&state_->mu);
  for (auto& c : collectors) state_->slots.push_back({std::shared_ptr<Collector>(std::move(c))});
  for (int i = 0; i < workers; ++i) state_->StartWorkerLocked(state_);
}

CollectorRunner::~CollectorRunner() {
  {
    MutexLock lock(&state_->mu);
    state_->stopping = true;
  }  // the unlock wakes the workers
  MutexLock lock(&state_->mu);
  // Workers that are not stuck leave at once; give them a moment so tests see no stray threads.
  state_->mu.AwaitWithTimeout(
      [this]() ABSL_EXCLUSIVE_LOCKS_REQUIRED(state_->mu) {
        int running = 0;
        for (const auto& s : state_->slots) running += s.running ? 1 : 0;
        return state_->workers <= running;
      },
      absl::Seconds(1));
}

std::vector<std::string> CollectorRunner::names() const {
  MutexLock lock(&state_->mu);
  std::vector<std::string> out;
  for (const auto& s : state_->slots) out.push_back(s.collector->name());
  return out;
}

std::vector<CollectorResult> CollectorRunner::RunRound(int64_t now_ms, const std::string& only) {
  State& st = *state_;
  auto round = std::make_shared<State::Round>();
  const absl::Time start = absl::Now();
  // Queue the calls, then unlock: the unlock is what wakes the workers.
  st.mu.Lock();
  const size_t n = st.slots.size();
  round->results.resize(n);
  round->done.assign(n, false);
  int stuck = 0;
  for (size_t i = 0; i < n; ++i) {
    round->results[i].collector = st.slots[i].collector->name();
    if (!only.empty() && round->results[i].collector != only) {
      round->done[i] = true;  // not part of this round; removed from the results below
      continue;
    }
    if (st.slots[i].running) {
      ++stuck;
      round->done[i] = true;
      round->results[i].status =
          absl::UnavailableError("still running since an earlier round (abandoned then)");
      continue;
    }
    st.slots[i].running = true;
    ++round->remaining;
    st.queue.push_back({i, now_ms, round});
  }
  // Workers held by calls abandoned in earlier rounds do not count: start replacements, up to
  // the cap. (They leave again once they find nothing to do.)
  while (st.workers - stuck < st.base_workers && st.workers < st.max_workers) {
    st.StartWorkerLocked(state_);
  }
  if (round->remaining == 0) {
    MutexLock done(&round->finished_mu);
    round->finished = true;
  }
  st.mu.Unlock();
  const absl::Time deadline = start + st.timeout;
  // A call that runs long may be stuck and hold a worker others wait for: check now and then,
  // and start a replacement while calls are queued and no worker is idle.
  const absl::Duration check = std::max(st.timeout / 10, absl::Milliseconds(20));
  while (true) {
    bool finished;
    {
      MutexLock done(&round->finished_mu);
      finished = round->finished_mu.AwaitWithDeadline(
          [&]() ABSL_EXCLUSIVE_LOCKS_REQUIRED(round->finished_mu) { return round->finished; },
          std::min(deadline, absl::Now() + check));
    }
    if (finished || absl::Now() >= deadline) break;
    MutexLock lock(&st.mu);
    if (!st.queue.empty() && st.idle == 0 && st.workers < st.max_workers) {
      st.StartWorkerLocked(state_);
    }
  }
  MutexLock lock(&st.mu);
  for (size_t i = 0; i < n; ++i) {
    if (round->done[i]) continue;
    // Abandoned: its late result is discarded. A job still queued is taken back.
    round->done[i] = true;
    round->results[i].status = absl::DeadlineExceededError(
        absl::StrCat("did not finish within ", absl::FormatDuration(st.timeout)));
    round->results[i].duration = st.timeout;
    for (auto it = st.queue.begin(); it != st.queue.end(); ++it) {
      if (it->round == round && it->index == i) {
        st.queue.erase(it);
        st.slots[i].running = false;
        break;
      }
    }
  }
  std::vector<CollectorResult> out;
  for (CollectorResult& r : round->results) {
    if (only.empty() || r.collector == only) out.push_back(std::move(r));
  }
  return out;
}

}  // namespace vigie::agent
