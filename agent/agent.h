// The agent: collects host metrics on an interval, buffers them in the outbox and streams
// them, with heartbeats, to the control plane.
#ifndef VIGIE_AGENT_AGENT_H_
#define VIGIE_AGENT_AGENT_H_

#include <map>
#include <memory>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "absl/time/time.h"
#include "agent/collectors.h"
#include "agent/host_metrics.h"
#include "agent/outbox.h"
#include "agent/stream_client.h"
#include "common/clock.h"
#include "common/grpc_security.h"
#include "common/http_server.h"
#include "common/runnable.h"
#include "prometheus/counter.h"
#include "prometheus/gauge.h"
#include "prometheus/registry.h"
#include "vigie/v1/config.pb.h"

namespace vigie::agent {

struct AgentOptions {
  std::string agent_id;
  std::string hostname;
  std::map<std::string, std::string> labels;
  std::string controlplane = "127.0.0.1:7400";
  std::string http_listen = "127.0.0.1:9101";
  absl::Duration collect_interval = absl::Seconds(15);
  absl::Duration heartbeat_interval = absl::Seconds(10);
  HostPaths paths;
  std::string textfile_directory;
  std::string fs_types_exclude, mount_points_exclude;  // regexes; empty = node_exporter's
  size_t max_pending_messages = 1000;
  size_t max_samples_per_batch = 5000;
  BackoffPolicy reconnect_backoff;
  // Security: the agent's token (a secret: never logged), TLS to the control plane, and the
  // /metrics listener's credentials.
  std::string token;
  ClientSecurity security;
  HttpAuth http_auth;
};

// Validates `config` and fills in defaults. Errors are InvalidArgument naming the field.
absl::StatusOr<AgentOptions> AgentOptionsFromConfig(const v1::AgentConfig& config);

// Start() begins collecting and streaming; Stop() ends both. Thread-safe.
class Agent : public Runnable {
 public:
  // `registry` receives the agent's own metrics; `clock` stamps samples. Both must outlive it.
  Agent(AgentOptions options, prometheus::Registry* registry, const Clock* clock);
  ~Agent() override;

  // The latest collection, for /metrics.
  const HostMetrics& host_metrics() const { return host_metrics_; }
  const Outbox& outbox() const { return outbox_; }

  // One collection round now (also used by tests): collects, batches, enqueues.
  void CollectOnce();

  void StartStreaming() { client_->Start(); }
  // Waits up to `timeout` for every buffered message to be acknowledged (call after Stop(), so
  // nothing new is added); gives up at once while disconnected. True if the outbox emptied.
  bool Drain(absl::Duration timeout);
  void StopStreaming() { client_->Stop(); }

 protected:
  void Run() override;

 private:
  void SendHeartbeat();
  void UpdateGauges();

  const AgentOptions options_;
  const Clock* const clock_;
  std::vector<std::unique_ptr<Collector>> collectors_;
  Outbox outbox_;
  HostMetrics host_metrics_;
  std::unique_ptr<StreamClient> client_;

  prometheus::Family<prometheus::Counter>& collect_errors_;
  prometheus::Counter& collections_;
  prometheus::Gauge& collect_duration_;
  prometheus::Gauge& pending_;
  prometheus::Gauge& dropped_;
  prometheus::Gauge& last_sequence_;
  prometheus::Gauge& acked_sequence_;
  prometheus::Gauge& connected_;
  prometheus::Counter& connects_;
};

}  // namespace vigie::agent

#endif  // VIGIE_AGENT_AGENT_H_
