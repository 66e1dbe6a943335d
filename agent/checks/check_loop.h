// Runs the agent's checks: each on its interval, all on one thread (an epoll loop driving
// libcurl, c-ares and sockets), at most max_concurrent at once, each within its timeout, so a
// hanging target delays no other check. Every finished run becomes a CheckResult at once.
#ifndef VIGIE_AGENT_CHECKS_CHECK_LOOP_H_
#define VIGIE_AGENT_CHECKS_CHECK_LOOP_H_

#include <atomic>
#include <deque>
#include <functional>
#include <memory>
#include <string>
#include <vector>

#include "absl/status/status.h"
#include "absl/time/time.h"
#include "agent/checks/check.h"
#include "agent/checks/curl_multi.h"
#include "agent/checks/event_loop.h"
#include "agent/collection.h"
#include "common/mutex.h"
#include "common/runnable.h"
#include "prometheus/counter.h"
#include "prometheus/gauge.h"
#include "prometheus/registry.h"

namespace vigie::agent::checks {

struct CheckLoopOptions {
  std::vector<CheckSpec> checks;
  size_t max_concurrent = 100;
  std::string hostname;  // for SMTP's EHLO
  // Receives the results of the runs finished in one pass of the loop (usually one), on the
  // loop's thread; must not block for long.
  std::function<void(std::vector<v1::CheckResult>)> on_results;
};

// Start()/Stop() run the loop's thread. Thread-safe.
class CheckLoop : public Runnable {
 public:
  CheckLoop(CheckLoopOptions options, prometheus::Registry* registry);
  ~CheckLoop() override;

  absl::Status Init();
  // Runs the named check as soon as a slot is free, or after the run in progress; that run's
  // result carries `command_id` (when not empty) in its command_ids. NotFound for an unknown
  // name.
  absl::Status RunNow(const std::string& name, const std::string& command_id = "");
  // The latest result of every check that has run, as samples stamped `now_ms`:
  // probe_success, probe_duration_seconds, vigie_check_status (0 OK, 1 WARNING, 2 CRITICAL,
  // 3 UNKNOWN) and the protocol's own (probe_http_status_code, ...), labelled check, target
  // and the check's labels.
  void AppendMetrics(int64_t now_ms, Collection* out) const;
  size_t size() const { return checks_.size(); }
  // Passes of the loop so far: it wakes for sockets, timers and due checks only, never spins.
  uint64_t passes() const { return passes_.load(std::memory_order_relaxed); }

 protected:
  void Run() override;

 private:
  struct Latest {
    bool valid = false;
    v1::CheckStatus state = v1::CHECK_STATUS_UNKNOWN;
    bool success = false;
    double duration_seconds = 0;
    Outcome outcome;
  };
  struct Check {
    CheckSpec spec;
    absl::Time next_due;
    bool queued = false;                   // waiting for a slot
    bool run_now = false;                  // asked by RunNow
    std::vector<std::string> asked_by;     // command ids for the next run (at most 64)
    std::vector<std::string> running_for;  // command ids this run answers
    std::unique_ptr<Probe> probe;          // while running
    absl::Time started, deadline;
    bool finished = false;  // the probe called done; destroyed after the pass
    Outcome outcome;
    int consecutive_failures = 0;
    v1::CheckStatus state = v1::CHECK_STATUS_OK;
  };

  void StartDue(absl::Time now);
  void StartRun(size_t i);
  void FinishRun(size_t i, Outcome outcome, std::vector<v1::CheckResult>* results);
  absl::Time NextWake() const;

  CheckLoopOptions options_;
  EventLoop loop_;
  std::unique_ptr<CurlMulti> curl_;
  ProbeEnv env_;
  std::vector<Check> checks_;   // fixed after construction; the loop thread's
  std::deque<size_t> waiting_;  // due, waiting for a slot, in due order
  size_t running_ = 0;
  std::atomic<uint64_t> passes_{0};

  mutable Mutex mu_;
  std::vector<Latest> latest_ ABSL_GUARDED_BY(mu_);
  // RunNow: the check and the command id asking.
  std::vector<std::pair<size_t, std::string>> requested_ ABSL_GUARDED_BY(mu_);

  prometheus::Family<prometheus::Counter>& runs_;
  prometheus::Gauge& running_gauge_;
  prometheus::Gauge& waiting_gauge_;
  prometheus::Counter& skipped_;
};

}  // namespace vigie::agent::checks

#endif  // VIGIE_AGENT_CHECKS_CHECK_LOOP_H_
