// AgentGateway: the agents' bidirectional streams (gRPC callback API, one reactor per stream,
// no thread per stream). Database work runs on a worker pool; each stream's messages are
// processed in order, one task at a time, and reading pauses while max_inflight messages wait,
// so HTTP/2 flow control pushes back on a fast agent.
#ifndef VIGIE_CONTROLPLANE_GATEWAY_H_
#define VIGIE_CONTROLPLANE_GATEWAY_H_

#include <atomic>
#include <functional>
#include <map>
#include <memory>
#include <set>
#include <string>

#include "absl/base/thread_annotations.h"
#include "absl/time/time.h"
#include "common/grpc_security.h"
#include "common/mutex.h"
#include "common/worker_pool.h"
#include "controlplane/rule_engine.h"
#include "controlplane/store.h"
#include "controlplane/tokens.h"
#include "prometheus/counter.h"
#include "prometheus/gauge.h"
#include "prometheus/histogram.h"
#include "prometheus/registry.h"
#include "vigie/v1/agent.grpc.pb.h"

namespace vigie::controlplane {

struct GatewayOptions {
  size_t max_inflight_per_stream = 8;
  size_t max_samples_per_batch = 10000;
  size_t max_labels_per_sample = 32;
  // Largest agent message accepted; a durable one above it is refused by sequence. gRPC's own
  // receive limit must be above it (or the stream breaks instead).
  size_t max_message_bytes = 4 << 20;
  // Streams held at once; serialized bytes read but not yet stored, across all streams; how
  // long a stream may take to send Hello.
  size_t max_streams = 20000;
  size_t max_inflight_bytes = 256 << 20;
  absl::Duration hello_timeout = absl::Seconds(10);
  absl::Duration heartbeat_interval = absl::Seconds(10);
  std::string generator_url;
};

class AgentStream;

// Thread-safe. `store`, `rules`, `pool` and `registry` must outlive it; `on_transitions` is
// called (from a worker thread) after a commit that stored alert transitions.
//
// The stream is read as raw bytes (a "raw callback method"): a message that vigie.v1 cannot
// parse, such as one with invalid UTF-8 in a string, is still read through the lenient mirror
// of the contract, so it is refused by its sequence number (Reject) instead of breaking the
// stream and coming back forever.
class Gateway : public v1::AgentGateway::WithRawCallbackMethod_Connect<v1::AgentGateway::Service> {
 public:
  // `tokens` decides which agent a stream may speak for (AuthorizeHello); refusals are counted
  // in `failures`. Both must outlive it.
  Gateway(GatewayOptions options, Store* store, RuleEngine* rules, WorkerPool* pool,
          std::function<void()> on_transitions, prometheus::Registry* registry,
          const TokenRegistry* tokens, AuthFailures* failures);

  grpc::ServerBidiReactor<grpc::ByteBuffer, grpc::ByteBuffer>* Connect(
      grpc::CallbackServerContext* context) override;

  ~Gateway() override;

  // Agents with a stream on this replica.
  size_t connected_agents() const;
  // This process's identity: the prefix of every connection id it hands out (agents.
  // connection_id), random per process.
  const std::string& instance() const { return instance_; }
  // Serialized bytes read from agents and not yet stored, across all streams.
  size_t inflight_bytes() const { return inflight_bytes_.load(); }
  // Ends (UNAUTHENTICATED) every stream that authenticated with token `token_id`.
  void DisconnectToken(const std::string& token_id);
  // Agents whose current stream is on this replica.
  std::vector<std::string> HeldAgents() const;
  bool Holds(const std::string& agent_id) const;
  // Queues `command` on the agent's stream; false if this replica does not hold it or its
  // stream has too many commands queued.
  bool SendCommand(const std::string& agent_id, const v1::Command& command);

 private:
  friend class AgentStream;
  // Makes `stream` the agent's current stream; an older one is ended with ABORTED.
  void Register(const std::string& agent_id, AgentStream* stream);
  // Returns true if `stream` was the agent's current stream.
  bool Unregister(const std::string& agent_id, AgentStream* stream);
  // Unique per stream, across restarts and replicas.
  std::string NewConnectionId();
  // Every stream registers at start (false: over max_streams, the stream refuses itself) and
  // leaves in OnDone.
  bool Admit(AgentStream* stream);
  void Leave(AgentStream* stream);
  // The global budget: a stream that finds it spent pauses and waits to be resumed.
  void AddInflight(size_t bytes);
  void ReleaseInflight(size_t bytes);
  bool BudgetLeft() const { return inflight_bytes_.load() < options_.max_inflight_bytes; }
  void WaitForBudget(AgentStream* stream);
  void ResumeWaiting();
  // Ends streams that have not sent Hello within hello_timeout (run every second).
  void EndSilentStreams();
  class Sweeper;

  const GatewayOptions options_;
  Store* const store_;
  RuleEngine* const rules_;
  WorkerPool* const pool_;
  const std::function<void()> on_transitions_;
  const TokenRegistry* const tokens_;
  AuthFailures* const failures_;

  prometheus::Gauge& streams_;
  prometheus::Family<prometheus::Counter>& messages_;
  prometheus::Counter& samples_committed_;
  prometheus::Counter& samples_expired_;
  prometheus::Counter& samples_over_limit_;
  prometheus::Family<prometheus::Counter>& series_resolution_;
  prometheus::Counter& duplicates_;
  prometheus::Counter& ingest_errors_;
  prometheus::Family<prometheus::Counter>& rejected_;
  prometheus::Family<prometheus::Counter>& refused_;
  prometheus::Counter& transitions_;
  prometheus::Histogram& commit_seconds_;
  prometheus::Histogram& evaluation_seconds_;
  prometheus::Counter& samples_evaluated_;
  prometheus::Gauge& rule_state_;
  prometheus::Gauge& alerts_refused_;

  prometheus::Gauge& inflight_gauge_;
  prometheus::Counter& budget_pauses_;
  prometheus::Counter& streams_refused_;
  prometheus::Counter& hello_timeouts_;

  std::string instance_;  // random, per process; set by the constructor, then read-only
  std::atomic<uint64_t> next_connection_{1};
  std::atomic<size_t> inflight_bytes_{0};

  // Lock order: mu_, then a stream's lock. waiting_mu_ is a leaf (taken under a stream's lock).
  mutable Mutex mu_;
  std::map<std::string, AgentStream*> by_agent_ ABSL_GUARDED_BY(mu_);
  std::set<AgentStream*> live_ ABSL_GUARDED_BY(mu_);
  Mutex waiting_mu_;
  std::set<AgentStream*> waiting_ ABSL_GUARDED_BY(waiting_mu_);
  std::unique_ptr<Sweeper> sweeper_;
};

// Validates one agent message against the limits; the error names the field and the value,
// and `reason` (if given) receives a short label for the refusal counter. Timestamps are
// checked against `now_ms` (0 = only the years 2000-9999).
absl::Status ValidateAgentMessage(const v1::AgentMessage& m, const GatewayOptions& limits,
                                  int64_t now_ms = 0, const char** reason = nullptr);

// One agent message as read off the wire.
struct DecodedMessage {
  v1::AgentMessage message;  // meaningful only when status is OK
  // OK, or InvalidArgument naming the field and value.
  absl::Status status;
  const char* reason = "";  // why it was refused, for vigie_controlplane_agent_messages_refused
  const char* kind = "empty";
  // The durable sequence, known even for a message vigie.v1 cannot parse; 0 if the message is
  // not durable or not even the lenient mirror could read it.
  uint64_t sequence = 0;
};

// Decodes and validates one message of `size` bytes. `parse` fills the message it is given
// from the raw bytes and returns false on failure; it is called once for vigie.v1 and, if that
// fails, once more for the lenient mirror.
DecodedMessage DecodeAgentMessage(const std::function<bool(google::protobuf::Message*)>& parse,
                                  size_t size, const GatewayOptions& limits, int64_t now_ms);

}  // namespace vigie::controlplane

#endif  // VIGIE_CONTROLPLANE_GATEWAY_H_
