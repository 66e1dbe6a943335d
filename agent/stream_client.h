// The agent's side of AgentGateway.Connect: one bidirectional stream at a time (callback API),
// reconnecting with jittered exponential backoff whenever it breaks.
#ifndef VIGIE_AGENT_STREAM_CLIENT_H_
#define VIGIE_AGENT_STREAM_CLIENT_H_

#include <functional>
#include <memory>
#include <string>

#include "absl/base/thread_annotations.h"
#include "agent/outbox.h"
#include "common/backoff.h"
#include "common/grpc_security.h"
#include "common/mutex.h"
#include "common/runnable.h"
#include "grpcpp/grpcpp.h"
#include "vigie/v1/agent.grpc.pb.h"

namespace vigie::agent {

struct StreamClientOptions {
  std::string target;  // host:port of the control plane
  ClientSecurity security;
  std::string token;  // sent on every stream; a secret
  BackoffPolicy backoff;
  // Sent first on every stream; last_sequence is filled in from the outbox.
  v1::Hello hello;
  // Called on stream events, for metrics. May be called from gRPC threads.
  std::function<void(bool connected)> on_connection_change;
  // After the outbox took a Welcome (its limits, heartbeat interval).
  std::function<void(const v1::Welcome&)> on_welcome;
  // After the outbox took a Reject; `held` says whether the message was still buffered.
  std::function<void(const v1::Reject&, bool held)> on_reject;
  // A Command from the control plane (run on the stream's thread: must not block).
  std::function<void(const v1::Command&)> on_command;
  // Heartbeats: sent on the stream every heartbeat_interval() (read again after each one and
  // after a Welcome), built by make_heartbeat(). Their timer is the stream's own, so a slow
  // collection never delays them. Both must be set.
  std::function<absl::Duration()> heartbeat_interval;
  std::function<v1::Heartbeat()> make_heartbeat;
};

class Session;

// Owns the connection loop. Durable messages come from the outbox; Kick() after adding one.
// Thread-safe.
class StreamClient : public Runnable {
 public:
  // `outbox` must outlive this object.
  StreamClient(StreamClientOptions options, Outbox* outbox);
  ~StreamClient() override;

  // Something was added to the outbox: write it if a stream is up.
  void Kick();
  bool connected() const;

 protected:
  void Run() override;

 private:
  friend class Session;
  void SessionDone() ABSL_LOCKS_EXCLUDED(mu_);

  const StreamClientOptions options_;
  Outbox* const outbox_;
  std::shared_ptr<grpc::Channel> channel_;
  std::unique_ptr<v1::AgentGateway::Stub> stub_;

  mutable Mutex mu_;
  Session* session_ ABSL_GUARDED_BY(mu_) = nullptr;
  bool session_done_ ABSL_GUARDED_BY(mu_) = false;
};

}  // namespace vigie::agent

#endif  // VIGIE_AGENT_STREAM_CLIENT_H_
