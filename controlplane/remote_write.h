// Prometheus remote write 1.0 out of the control plane: every stored sample, forwarded after
// its batch committed, to a receiver such as Prometheus (--web.enable-remote-write-receiver),
// VictoriaMetrics, Mimir or Thanos Receive.
//
// PostgreSQL is the queue: a cursor per target and agent (remote_write_progress) moves only
// after the receiver accepted every batch up to it, in the transaction that read them. So a
// restart or a receiver outage resumes where it stopped, with no gap, as long as the data is
// still within retention.raw; samples of a batch may be sent twice (after a failure part-way),
// which receivers accept. Memory is one chunk per target (max_samples_per_send per shard).
// Each chunk's series are split over `shards` parallel requests by series id, so one series'
// samples always travel in order on one connection.
#ifndef VIGIE_CONTROLPLANE_REMOTE_WRITE_H_
#define VIGIE_CONTROLPLANE_REMOTE_WRITE_H_

#include <string>
#include <vector>

#include "absl/container/flat_hash_map.h"
#include "common/backoff.h"
#include "common/runnable.h"
#include "controlplane/pg_store.h"
#include "prometheus/counter.h"
#include "prometheus/gauge.h"
#include "prometheus/histogram.h"
#include "prometheus/registry.h"
#include "prometheus/remote_write.pb.h"

namespace vigie::controlplane {

struct RemoteWriteOptions {
  std::string name;  // the cursor's target name and the metrics' remote_name label
  std::string url;
  std::string bearer_token;  // secret
  std::string basic_auth_username;
  std::string basic_auth_password;  // secret
  std::string ca_file;
  absl::Duration timeout = absl::Seconds(30);
  int shards = 2;
  size_t max_samples_per_send = 2000;
  BackoffPolicy backoff;
  absl::Duration poll_interval = absl::Seconds(1);
  int agents_per_round = 100;
};

// Builds the WriteRequest bodies for one chunk: one per shard (empty ones left empty). Labels
// are __name__, the series' labels, and instance=<agent_id> and job="vigie" unless the series
// has its own; sorted by name.
std::vector<prometheus::WriteRequest> BuildWriteRequests(
    const ForwardChunk& chunk, int shards,
    const absl::flat_hash_map<int64_t, std::map<std::string, std::string>>& labels);

class RemoteWriter : public Runnable {
 public:
  RemoteWriter(RemoteWriteOptions options, PgStore* store, prometheus::Registry* registry);
  ~RemoteWriter() override;

 protected:
  void Run() override;

 private:
  // Sends a chunk; Unavailable when it should be retried.
  absl::Status Send(const ForwardChunk& chunk);
  // One POST; the HTTP status (0 when no response) and an error text.
  int Post(int shard, const std::string& body, std::string* error);

  const RemoteWriteOptions options_;
  PgStore* const store_;
  Backoff backoff_;
  bool failing_ = false;     // since the last failed request; only the Run() thread uses it
  std::vector<void*> curl_;  // a CURL handle per shard, reused (keep-alive)
  absl::flat_hash_map<int64_t, std::map<std::string, std::string>> labels_;  // bounded
  prometheus::Counter& samples_;
  prometheus::Counter& failed_;
  prometheus::Counter& retried_;
  prometheus::Counter& bytes_;
  prometheus::Counter& requests_failed_;
  prometheus::Histogram& duration_;
  prometheus::Gauge& highest_sent_;
  prometheus::Gauge& pending_;
  prometheus::Gauge& shards_;
};

}  // namespace vigie::controlplane

#endif  // VIGIE_CONTROLPLANE_REMOTE_WRITE_H_
