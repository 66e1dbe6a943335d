#include "controlplane/maintainer.h"

#include "absl/time/clock.h"
#include "common/log.h"

namespace vigie::controlplane {

Maintainer::Maintainer(MaintainerOptions options, PgStore* store, prometheus::Registry* registry)
    : Runnable("maintainer"),
      options_(options),
      store_(store),
      partitions_dropped_(prometheus::BuildCounter()
                              .Name("vigie_storage_partitions_dropped_total")
                              .Help("Partitions dropped past retention by this replica.")
                              .Register(*registry)
                              .Add({})),
      rollup_buckets_(prometheus::BuildCounter()
                          .Name("vigie_storage_rollup_buckets_total")
                          .Help("5-minute rollup rows written (one per agent and bucket).")
                          .Register(*registry)
                          .Add({})),
      errors_(prometheus::BuildCounter()
                  .Name("vigie_storage_maintenance_errors_total")
                  .Help("Partition or rollup rounds that failed (retried next round), by task.")
                  .Register(*registry)),
      cache_bytes_(prometheus::BuildGauge()
                       .Name("vigie_storage_series_cache_bytes")
                       .Help("Bytes held by the in-memory series cache (bounded by "
                             "series_cache_bytes).")
                       .Register(*registry)
                       .Add({})),
      cache_agents_(prometheus::BuildGauge()
                        .Name("vigie_storage_series_cache_agents")
                        .Help("Agents whose series are in the in-memory cache.")
                        .Register(*registry)
                        .Add({})),
      cache_evictions_(prometheus::BuildCounter()
                           .Name("vigie_storage_series_cache_evictions_total")
                           .Help("Agents' series forgotten to stay within series_cache_bytes.")
                           .Register(*registry)
                           .Add({})),
      stale_agents_(prometheus::BuildCounter()
                        .Name("vigie_controlplane_stale_agents_marked_total")
                        .Help("Agents marked disconnected because the replica holding their "
                              "stream stopped (crashed or restarted).")
                        .Register(*registry)
                        .Add({})) {
  for (const char* task : {"partitions", "rollups", "liveness"}) errors_.Add({{"task", task}});
}

Maintainer::~Maintainer() { Stop(); }

void Maintainer::Run() {
  absl::Time next_partitions = absl::InfinitePast();
  absl::Time next_liveness = absl::InfinitePast();
  absl::Time next_rollup = absl::InfinitePast();
  bool more = false;
  do {
    const absl::Time now = absl::Now();
    if (!options_.instance.empty() && now >= next_liveness) {
      next_liveness = now + options_.liveness_interval;
      absl::StatusOr<int64_t> marked =
          store_->ReplicaHeartbeat(options_.instance, 3 * options_.liveness_interval);
      if (!marked.ok()) {
        errors_.Add({{"task", "liveness"}}).Increment();
        log::Warn("replica heartbeat failed; retrying", {{"error", marked.status()}});
      } else if (*marked > 0) {
        stale_agents_.Increment(static_cast<double>(*marked));
        log::Info("agents of a replica that stopped marked disconnected", {{"agents", *marked}});
      }
    }
    if (!more && now < next_rollup) {
      WaitFor(std::min(next_rollup, next_liveness) - now);
      continue;
    }
    next_rollup = now + options_.rollup_interval;
    if (now >= next_partitions) {
      absl::StatusOr<MaintenanceResult> m = store_->Maintain(now);
      if (m.ok()) {
        partitions_dropped_.Increment(static_cast<double>(m->partitions_dropped));
        next_partitions = now + options_.partition_interval;
      } else {
        errors_.Add({{"task", "partitions"}}).Increment();
        log::Warn("partition maintenance failed; retrying", {{"error", m.status()}});
        next_partitions = now + absl::Seconds(30);
      }
    }
    absl::StatusOr<RollupResult> r = store_->RollUp(now, options_.rollup_agents_per_round);
    more = false;
    if (r.ok()) {
      rollup_buckets_.Increment(static_cast<double>(r->buckets_written));
      more = r->more && r->failed == 0;
      if (r->failed > 0) {
        errors_.Add({{"task", "rollups"}}).Increment(static_cast<double>(r->failed));
        log::Warn("rollups failed for some agents; retrying next round",
                  {{"agents", r->failed}, {"error", r->first_error}});
      }
    } else {
      errors_.Add({{"task", "rollups"}}).Increment();
      log::Warn("rollup round failed; retrying", {{"error", r.status()}});
    }
    const SeriesCache& cache = store_->series_cache();
    cache_bytes_.Set(static_cast<double>(cache.bytes()));
    cache_agents_.Set(static_cast<double>(cache.agents()));
    const auto evictions = static_cast<double>(cache.evictions());
    cache_evictions_.Increment(evictions - evictions_seen_);
    evictions_seen_ = evictions;
    // A backlog (after a restart, or late data) is worked through at once.
  } while (!stopping());
}

}  // namespace vigie::controlplane
