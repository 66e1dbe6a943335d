// Storage upkeep in the background: partitions made ahead of time and dropped past retention
// (every `partition_interval`), and 5-minute rollups of complete buckets (every
// `rollup_interval`, sooner while a backlog remains). Every replica runs one; the database
// decides who does what (advisory and row locks).
#ifndef VIGIE_CONTROLPLANE_MAINTAINER_H_
#define VIGIE_CONTROLPLANE_MAINTAINER_H_

#include "common/runnable.h"
#include "controlplane/pg_store.h"
#include "prometheus/counter.h"
#include "prometheus/gauge.h"
#include "prometheus/registry.h"

namespace vigie::controlplane {

struct MaintainerOptions {
  absl::Duration partition_interval = absl::Minutes(10);
  absl::Duration rollup_interval = absl::Seconds(30);
  int rollup_agents_per_round = 200;
  // This replica (Gateway::instance()); empty: no liveness record. Recorded every
  // liveness_interval; agents of a replica silent for 3 intervals are marked disconnected.
  std::string instance;
  absl::Duration liveness_interval = absl::Seconds(10);
};

class Maintainer : public Runnable {
 public:
  Maintainer(MaintainerOptions options, PgStore* store, prometheus::Registry* registry);
  ~Maintainer() override;

 protected:
  void Run() override;

 private:
  const MaintainerOptions options_;
  PgStore* const store_;
  prometheus::Counter& partitions_dropped_;
  prometheus::Counter& rollup_buckets_;
  prometheus::Family<prometheus::Counter>& errors_;
  prometheus::Gauge& cache_bytes_;
  prometheus::Gauge& cache_agents_;
  prometheus::Counter& cache_evictions_;
  prometheus::Counter& stale_agents_;
  double evictions_seen_ = 0;
};

}  // namespace vigie::controlplane

#endif  // VIGIE_CONTROLPLANE_MAINTAINER_H_
