#include "agent/stream_client.h"

#include "common/grpc_util.h"
#include "common/log.h"
#include "common/mutex.h"

namespace vigie::agent {

// One stream. At most one write in flight: the next write starts from OnWriteDone (or from
// Kick when idle). A hold keeps the reactor alive while other threads may start writes; it is
// dropped, under mu_, once the stream is finished, so no write can start after that.
class Session : public grpc::ClientBidiReactor<v1::AgentMessage, v1::ControlMessage> {
 public:
  Session(StreamClient* client, v1::AgentGateway::Stub* stub) : client_(client) {
    AddBearerToken(&context_, client->options_.token);
    stub->async()->Connect(&context_, this);
  }

  void Begin(const v1::Hello& hello) {
    MutexLock lock(&mu_);
    out_.mutable_hello()->CopyFrom(hello);
    writing_ = true;
    AddHold();
    StartWrite(&out_);
    StartRead(&in_);
    StartCall();
  }

  void Kick() {
    MutexLock lock(&mu_);
    MaybeWriteLocked();
  }

  void QueueHeartbeat(const v1::Heartbeat& hb) {
    MutexLock lock(&mu_);
    heartbeat_ = hb;
    MaybeWriteLocked();
  }

  void Cancel() { context_.TryCancel(); }
  bool welcomed() {
    MutexLock lock(&mu_);
    return welcomed_;
  }
  const grpc::Status& status() const { return status_; }

  void OnWriteDone(bool ok) override {
    MutexLock lock(&mu_);
    writing_ = false;
    if (!ok) {
      FinishLocked();
      return;
    }
    MaybeWriteLocked();
  }

  void OnReadDone(bool ok) override {
    if (!ok) {
      MutexLock lock(&mu_);
      FinishLocked();
      return;
    }
    switch (in_.payload_case()) {
      case v1::ControlMessage::kWelcome: {
        const v1::Welcome& w = in_.welcome();
        client_->outbox_->OnWelcome(w);
        log::Info("stream established",
                  {{"controlplane", client_->options_.target},
                   {"committed_sequence", w.committed_sequence()},
                   {"heartbeat_interval_seconds", w.heartbeat_interval_seconds()}});
        if (client_->options_.on_welcome) client_->options_.on_welcome(w);
        {
          MutexLock lock(&mu_);
          welcomed_ = true;
          MaybeWriteLocked();
        }
        client_->Wake();  // the loop notes the connection and re-reads the heartbeat interval
        break;
      }
      case v1::ControlMessage::kAck:
        client_->outbox_->OnAck(in_.ack().sequence());
        break;
      case v1::ControlMessage::kReject: {
        const bool held = client_->outbox_->OnReject(in_.reject().sequence());
        if (client_->options_.on_reject) client_->options_.on_reject(in_.reject(), held);
        break;
      }
      case v1::ControlMessage::kConfigUpdate:
        log::Info("config update received (not applied in this version)",
                  {{"version", in_.config_update().version()}});
        break;
      case v1::ControlMessage::kCommand:
        if (client_->options_.on_command) client_->options_.on_command(in_.command());
        break;
      default:
        break;
    }
    StartRead(&in_);
  }

  void OnDone(const grpc::Status& status) override {
    status_ = status;
    client_->SessionDone();  // last: the client may delete this session afterwards
  }

 private:
  void MaybeWriteLocked() ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_) {
    if (writing_ || finished_) return;
    if (heartbeat_) {
      out_.Clear();
      *out_.mutable_heartbeat() = *heartbeat_;
      heartbeat_.reset();
    } else if (!welcomed_) {
      return;
    } else if (std::shared_ptr<const v1::AgentMessage> next = client_->outbox_->NextToSend()) {
      // Written from the outbox's own copy: held here until OnWriteDone.
      data_out_ = std::move(next);
      writing_ = true;
      StartWrite(data_out_.get());
      return;
    } else {
      return;
    }
    writing_ = true;
    StartWrite(&out_);
  }

  void FinishLocked() ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_) {
    if (finished_) return;
    finished_ = true;
    context_.TryCancel();  // a failed write means the stream is gone; end the read too
    RemoveHold();
  }

  StreamClient* const client_;
  grpc::ClientContext context_;
  v1::ControlMessage in_;
  grpc::Status status_;

  Mutex mu_;
  v1::AgentMessage out_ ABSL_GUARDED_BY(mu_);  // Hello and heartbeats
  std::shared_ptr<const v1::AgentMessage> data_out_ ABSL_GUARDED_BY(mu_);
  std::optional<v1::Heartbeat> heartbeat_ ABSL_GUARDED_BY(mu_);
  bool writing_ ABSL_GUARDED_BY(mu_) = false;
  bool welcomed_ ABSL_GUARDED_BY(mu_) = false;
  bool finished_ ABSL_GUARDED_BY(mu_) = false;
};

StreamClient::StreamClient(StreamClientOptions options, Outbox* outbox)
    : Runnable("stream-client"), options_(std::move(options)), outbox_(outbox) {
  grpc::ChannelArguments args;
  // Reconnects are paced by our own backoff; keep gRPC's short so it does not add to it.
  args.SetInt(GRPC_ARG_INITIAL_RECONNECT_BACKOFF_MS, 200);
  args.SetInt(GRPC_ARG_MAX_RECONNECT_BACKOFF_MS, 2000);
  args.SetInt(GRPC_ARG_KEEPALIVE_TIME_MS, 30000);
  args.SetInt(GRPC_ARG_KEEPALIVE_TIMEOUT_MS, 10000);
  // The stream is never retried by gRPC (the outbox resends after a reconnect), so the retry
  // filter's buffering of every sent message is pure cost.
  args.SetInt(GRPC_ARG_ENABLE_RETRIES, 0);
  channel_ = MakeChannel(options_.target, options_.security, args);
  stub_ = v1::AgentGateway::NewStub(channel_);
}

StreamClient::~StreamClient() { Stop(); }

void StreamClient::Kick() {
  MutexLock lock(&mu_);
  if (session_ != nullptr) session_->Kick();
}

bool StreamClient::connected() const {
  MutexLock lock(&mu_);
  return session_ != nullptr && !session_done_ && session_->welcomed();
}

void StreamClient::SessionDone() {
  // The flag and the wake-up together, under mu_, so Run() cannot take the wake-up, miss the
  // flag and sleep until its next heartbeat. Nothing touches `this` after the unlock: Run() may
  // then finish and this object go away.
  MutexLock lock(&mu_);
  session_done_ = true;
  Wake();
}

void StreamClient::Run() {
  Backoff backoff(options_.backoff);
  while (!stopping()) {
    auto session = std::make_unique<Session>(this, stub_.get());
    v1::Hello hello = options_.hello;
    hello.set_last_sequence(outbox_->last_sequence());
    {
      MutexLock lock(&mu_);
      session_done_ = false;
    }
    session->Begin(hello);  // Hello is the first write; only then may other threads write
    {
      MutexLock lock(&mu_);
      session_ = session.get();
    }
    bool was_connected = false;
    auto done = [this]() ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_) { return session_done_; };
    absl::Time next_heartbeat = absl::Now() + options_.heartbeat_interval();
    // Sleeps until the session ends, a Welcome arrives or a heartbeat is due: no polling.
    while (true) {
      {
        MutexLock lock(&mu_);
        if (session_done_) break;
      }
      if (!was_connected && session->welcomed()) {
        was_connected = true;
        backoff.Reset();
        next_heartbeat = std::min(next_heartbeat, absl::Now() + options_.heartbeat_interval());
        if (options_.on_connection_change) options_.on_connection_change(true);
      }
      if (absl::Now() >= next_heartbeat) {
        if (was_connected) session->QueueHeartbeat(options_.make_heartbeat());
        next_heartbeat = absl::Now() + options_.heartbeat_interval();
      }
      if (!WaitFor(next_heartbeat - absl::Now())) {
        session->Cancel();
        MutexLock lock(&mu_);
        mu_.Await(done);
        break;
      }
    }
    {
      MutexLock lock(&mu_);
      session_ = nullptr;
    }
    const grpc::Status status = session->status();
    session.reset();
    if (was_connected && options_.on_connection_change) options_.on_connection_change(false);
    if (stopping()) break;
    if (status.error_code() == grpc::StatusCode::INVALID_ARGUMENT && was_connected &&
        outbox_->DropOldest()) {
      // A control plane older than Reject ends the stream instead: resending a message it
      // refuses would stall everything behind it.
      log::Error("control plane refused a message as invalid; dropped it",
                 {{"error", status.error_message()}});
    }
    absl::Duration delay = backoff.Next();
    log::Warn("stream ended; reconnecting", {{"controlplane", options_.target},
                                             {"code", static_cast<int>(status.error_code())},
                                             {"error", status.error_message()},
                                             {"retry_in", absl::FormatDuration(delay)}});
    WaitFor(delay);
  }
}

}  // namespace vigie::agent
