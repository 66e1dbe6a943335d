// Runs the collectors of one round in parallel on a few worker threads, each with a deadline.
// A collector that does not finish in time (statfs on a dead NFS mount, a read that blocks) is
// abandoned for the round: its result is discarded when it finally returns, it is not started
// again while it still runs, and the other collectors and the heartbeats go on. A stuck call
// keeps its worker; a replacement is started, up to a cap, so the others still have threads.
#ifndef VIGIE_AGENT_COLLECTOR_RUNNER_H_
#define VIGIE_AGENT_COLLECTOR_RUNNER_H_

#include <memory>
#include <string>
#include <vector>

#include "absl/status/status.h"
#include "absl/time/time.h"
#include "agent/collection.h"
#include "agent/collectors/collector.h"

namespace vigie::agent {

struct CollectorResult {
  std::string collector;
  // OK, DeadlineExceeded (abandoned this round), Unavailable("still running") when a previous
  // round's call has not returned, or the collector's own error.
  absl::Status status;
  absl::Duration duration;  // until it finished, or until the deadline
  Collection collection;    // empty unless status is OK
};

class CollectorRunner {
 public:
  // `workers` threads are started at once; at most `max_workers` ever exist (the extra ones
  // replace workers held by abandoned calls).
  CollectorRunner(std::vector<std::unique_ptr<Collector>> collectors, absl::Duration timeout,
                  int workers = 2, int max_workers = 4);
  // Does not wait for calls that are stuck: their threads finish on their own.
  ~CollectorRunner();

  // Runs every collector once (or only the one named `only`), each stamped `now_ms`; returns
  // within about `timeout`, with one result per collector run, in the constructor's order.
  std::vector<CollectorResult> RunRound(int64_t now_ms, const std::string& only = "");

  std::vector<std::string> names() const;

 private:
  struct State;
  std::shared_ptr<State> state_;
};

}  // namespace vigie::agent

#endif  // VIGIE_AGENT_COLLECTOR_RUNNER_H_
