// The agent: collects host metrics on an interval, buffers them in the outbox and streams
// them, with heartbeats, to the control plane.
#ifndef VIGIE_AGENT_AGENT_H_
#define VIGIE_AGENT_AGENT_H_

#include <atomic>
#include <map>
#include <memory>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "absl/time/time.h"
#include "agent/batching.h"
#include "agent/checks/check.h"
#include "agent/checks/check_loop.h"
#include "agent/collector_runner.h"
#include "agent/collectors/collector.h"
#include "agent/dir_watch.h"
#include "agent/host_metrics.h"
#include "agent/outbox.h"
#include "agent/services/supervisor.h"
#include "agent/spool.h"
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
  CollectorConfig collectors;
  std::map<std::string, bool> collector_switches;  // by name; see KnownCollectors()
  absl::Duration collector_timeout = absl::Seconds(5);
  size_t max_pending_messages = 1000;
  SendLimits limits;   // the agent's own; Welcome may tighten them
  SpoolOptions spool;  // directory empty = no spool
  BackoffPolicy reconnect_backoff;
  // Security: the agent's token (a secret: never logged), TLS to the control plane, and the
  // /metrics listener's credentials.
  std::string token;
  ClientSecurity security;
  HttpAuth http_auth;
  // Service checks, validated.
  std::vector<checks::CheckSpec> checks;
  size_t max_concurrent_checks = 100;
  // Supervised services, validated, and how they are kept (SupervisorOptions).
  std::vector<services::ServiceSpec> services;
  std::string service_state_directory = "/var/lib/vigie/services";
  bool stop_services_on_exit = false;
  bool service_cgroups = true;    // "auto"
  std::string service_shim_path;  // default: vigie-service-shim beside this program
};

// Validates `config` and fills in defaults. Errors are InvalidArgument naming the field.
absl::StatusOr<AgentOptions> AgentOptionsFromConfig(const v1::AgentConfig& config);

// Start() begins collecting; Stop() ends it. StartStreaming()/StopStreaming() run the stream
// and its heartbeats. Thread-safe.
class Agent : public Runnable {
 public:
  // `registry` receives the agent's own metrics; `clock` stamps samples. Both must outlive it.
  // `spool` (may be null) holds what `recovered` was read from; the agent resends it.
  Agent(AgentOptions options, prometheus::Registry* registry, const Clock* clock,
        std::unique_ptr<Spool> spool = nullptr, Spool::Recovered recovered = {});
  ~Agent() override;

  // The latest collection, for /metrics.
  const HostMetrics& host_metrics() const { return host_metrics_; }
  const Outbox& outbox() const { return outbox_; }

  // One collection round now (also used by tests): collects, batches, enqueues. With `only`,
  // just that collector runs (a textfile changed) and /metrics keeps the last full round.
  void CollectOnce(const std::string& only = "");

  // SIGHUP: applies a new set of supervised services (Supervisor::Reload).
  absl::Status ReloadServices(std::vector<services::ServiceSpec> services);

  void StartStreaming() { client_->Start(); }
  // The heartbeat interval in force (the control plane's, once welcomed).
  absl::Duration heartbeat_interval() const;
  // Waits up to `timeout` for every buffered message to be acknowledged (call after Stop(), so
  // nothing new is added); gives up at once while disconnected. True if the outbox emptied.
  bool Drain(absl::Duration timeout);
  void StopStreaming() { client_->Stop(); }

 protected:
  void Run() override;

 private:
  v1::Heartbeat MakeHeartbeat();
  void UpdateGauges();
  void OnWelcome(const v1::Welcome& welcome);
  void OnReject(const v1::Reject& reject, bool held);
  void OnCommand(const v1::Command& command);
  // Hands results from the check loop's thread to this one (which may wait on the spool's
  // fsync; the check loop must not), and queues them as CheckResults messages within the
  // stream's limits.
  void OnCheckResults(std::vector<v1::CheckResult> results);
  void SendCheckResults();
  // Events from the supervisor's thread, queued here and sent (durable) by this thread.
  void OnServiceEvent(v1::ServiceEvent event);
  // Logs `message` for `key` unless the same was logged for it last time (so a bad file is
  // logged once, not once per round); `message` empty = the key is healthy again.
  void LogOnce(const std::string& key, const std::string& message);

  const AgentOptions options_;
  const Clock* const clock_;
  std::unique_ptr<Spool> spool_;
  Outbox outbox_;
  CollectorRunner runner_;
  HostMetrics host_metrics_;
  std::unique_ptr<StreamClient> client_;
  std::unique_ptr<checks::CheckLoop> checks_;         // null without checks
  std::unique_ptr<services::Supervisor> supervisor_;  // null if it could not start
  Mutex results_mu_;
  std::vector<v1::CheckResult> results_ ABSL_GUARDED_BY(results_mu_);  // bounded: kMaxResults
  std::vector<v1::ServiceEvent> events_ ABSL_GUARDED_BY(results_mu_);  // bounded: kMaxResults
  std::unique_ptr<DirectoryWatch> textfile_watch_;                     // the loop's own; no thread
  std::atomic<int64_t> heartbeat_ms_;
  Mutex log_mu_;
  std::map<std::string, std::string> logged_ ABSL_GUARDED_BY(log_mu_);
  size_t last_round_samples_ = 0;  // only touched by CollectOnce (one caller at a time)

  prometheus::Family<prometheus::Counter>& collect_errors_;
  prometheus::Family<prometheus::Counter>& samples_dropped_;
  prometheus::Counter& rejected_;
  prometheus::Gauge& pending_bytes_;
  prometheus::Gauge& spool_bytes_;
  prometheus::Gauge& spool_errors_;
  prometheus::Gauge& spool_corrupt_;
  prometheus::Counter& samples_;
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
