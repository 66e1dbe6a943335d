#include "controlplane/gateway.h"

#include <cmath>
#include <deque>
#include <optional>
#include <random>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "common/agent_message.h"
#include "common/grpc_util.h"
#include "common/log.h"
#include "common/mutex.h"
#include "common/runnable.h"
#include "common/status.h"
#include "google/protobuf/util/json_util.h"
#include "grpcpp/support/proto_buffer_reader.h"
#include "re2/re2.h"
#include "vigie/internal/lenient.pb.h"

namespace vigie::controlplane {
namespace {

const char* KindName(const v1::AgentMessage& m) {
  switch (m.payload_case()) {
    case v1::AgentMessage::kHello:
      return "hello";
    case v1::AgentMessage::kMetrics:
      return "metrics";
    case v1::AgentMessage::kChecks:
      return "checks";
    case v1::AgentMessage::kHeartbeat:
      return "heartbeat";
    case v1::AgentMessage::kServiceEvent:
      return "service_event";
    default:
      return "empty";
  }
}

}  // namespace

namespace {

absl::Status Invalid(const char* why, const char** reason, std::string message) {
  if (reason != nullptr) *reason = why;
  return absl::InvalidArgumentError(std::move(message));
}

// Checks a durable message's sequence number.
absl::Status ValidateSequence(uint64_t sequence, const char* kind, const char** reason) {
  if (sequence == 0)
    return Invalid("protocol", reason, absl::StrCat(kind, ".sequence: must be > 0"));
  if (sequence > kMaxSequence) {
    return Invalid("sequence_range", reason,
                   absl::StrCat(kind, ".sequence: ", sequence, " is above the largest storable, ",
                                kMaxSequence));
  }
  return absl::OkStatus();
}

// A string PostgreSQL must store as text: no NUL, at most `max` bytes.
absl::Status CheckText(const std::string& field, const std::string& value, size_t max,
                       const char** reason) {
  if (value.size() > max) {
    return Invalid("too_large", reason,
                   absl::StrCat(field, ": ", value.size(), " bytes exceed the limit of ", max));
  }
  if (value.find('\0') != std::string::npos) {
    return Invalid(kReasonNulByte, reason, absl::StrCat(field, ": contains a NUL byte"));
  }
  return absl::OkStatus();
}

// The Admin command ids a result or event answers: each is an UPDATE at commit, so as many as
// the agent keeps (64), each an id we gave.
absl::Status CheckCommandIds(const std::string& field,
                             const google::protobuf::RepeatedPtrField<std::string>& ids,
                             const char** reason) {
  if (ids.size() > 64) {
    return Invalid("bad_value", reason, absl::StrCat(field, ": at most 64, got ", ids.size()));
  }
  for (int j = 0; j < ids.size(); ++j) {
    VIGIE_RETURN_IF_ERROR(CheckText(absl::StrCat(field, "[", j, "]"), ids[j], 128, reason));
  }
  return absl::OkStatus();
}

SampleLimits Now(int64_t now_ms) {
  SampleLimits limits;
  limits.now_ms = now_ms;
  return limits;
}

// Names the first string of a lenient metrics batch that is not valid UTF-8.
std::string FindInvalidUtf8(const internal::LenientMetricBatch& b) {
  for (int i = 0; i < b.samples_size(); ++i) {
    const internal::LenientSample& s = b.samples(i);
    const std::string at = absl::StrCat("metrics.samples[", i, "]");
    if (!IsValidUtf8(s.name())) {
      return absl::StrCat(at, ".name: ", QuoteForMessage(s.name()), " is not valid UTF-8");
    }
    for (const internal::LenientLabel& l : s.labels()) {
      if (!IsValidUtf8(l.key())) {
        return absl::StrCat(at, ".labels: name ", QuoteForMessage(l.key()), " is not valid UTF-8");
      }
      if (!IsValidUtf8(l.value())) {
        return absl::StrCat(at, ".labels[\"", l.key(), "\"]: value ", QuoteForMessage(l.value()),
                            " is not valid UTF-8");
      }
    }
  }
  return "metrics: not a valid vigie.v1.MetricBatch";
}

}  // namespace

absl::Status ValidateAgentMessage(const v1::AgentMessage& m, const GatewayOptions& limits,
                                  int64_t now_ms, const char** reason) {
  static const RE2 kAgentId("[A-Za-z0-9._-]{1,128}");
  switch (m.payload_case()) {
    case v1::AgentMessage::kHello:
      if (!RE2::FullMatch(m.hello().agent_id(), kAgentId)) {
        return Invalid("invalid", reason,
                       absl::StrCat("hello.agent_id: ", QuoteForMessage(m.hello().agent_id()),
                                    " must be 1-128 characters of A-Z a-z 0-9 . _ -"));
      }
      return ValidateLabels(m.hello().labels(), limits.max_labels_per_sample, "hello.labels",
                            reason);
    case v1::AgentMessage::kMetrics: {
      const v1::MetricBatch& b = m.metrics();
      VIGIE_RETURN_IF_ERROR(ValidateSequence(b.sequence(), "metrics", reason));
      if (static_cast<size_t>(b.samples_size()) > limits.max_samples_per_batch) {
        return Invalid("too_many_samples", reason,
                       absl::StrCat("metrics.samples: ", b.samples_size(),
                                    " samples exceed the limit of ", limits.max_samples_per_batch));
      }
      SampleLimits sample_limits;
      sample_limits.max_labels = limits.max_labels_per_sample;
      sample_limits.now_ms = now_ms;
      for (int i = 0; i < b.samples_size(); ++i) {
        // The field is named (a string built) only for a sample that fails.
        if (ValidateSample(b.samples(i), sample_limits, "").ok()) continue;
        return ValidateSample(b.samples(i), sample_limits, absl::StrCat("metrics.samples[", i, "]"),
                              reason);
      }
      return absl::OkStatus();
    }
    case v1::AgentMessage::kChecks: {
      VIGIE_RETURN_IF_ERROR(ValidateSequence(m.checks().sequence(), "checks", reason));
      if (static_cast<size_t>(m.checks().results_size()) > limits.max_samples_per_batch) {
        return Invalid("too_many_samples", reason,
                       absl::StrCat("checks.results: ", m.checks().results_size(),
                                    " results exceed the limit of ", limits.max_samples_per_batch));
      }
      for (int i = 0; i < m.checks().results_size(); ++i) {
        const v1::CheckResult& r = m.checks().results(i);
        const std::string at = absl::StrCat("checks.results[", i, "]");
        VIGIE_RETURN_IF_ERROR(CheckText(at + ".name", r.name(), 200, reason));
        VIGIE_RETURN_IF_ERROR(CheckText(at + ".target", r.target(), 2048, reason));
        VIGIE_RETURN_IF_ERROR(CheckText(at + ".message", r.message(), 4096, reason));
        VIGIE_RETURN_IF_ERROR(
            ValidateTimestamp(r.timestamp_ms(), Now(now_ms), at + ".timestamp_ms", reason));
        VIGIE_RETURN_IF_ERROR(
            ValidateLabels(r.labels(), limits.max_labels_per_sample, at + ".labels", reason));
        // Stored as double precision NOT NULL and integer: NaN (JSON null) or a count beyond
        // int32 would fail the whole transaction, again at every resend.
        if (!std::isfinite(r.latency_seconds()) || r.latency_seconds() < 0) {
          return Invalid("bad_value", reason,
                         absl::StrCat(at, ".latency_seconds: must be a finite number >= 0, got ",
                                      r.latency_seconds()));
        }
        VIGIE_RETURN_IF_ERROR(CheckCommandIds(at + ".command_ids", r.command_ids(), reason));
        if (r.consecutive_failures() > static_cast<uint32_t>(INT32_MAX)) {
          return Invalid("bad_value", reason,
                         absl::StrCat(at, ".consecutive_failures: at most 2147483647, got ",
                                      r.consecutive_failures()));
        }
      }
      return absl::OkStatus();
    }
    case v1::AgentMessage::kServiceEvent: {
      const v1::ServiceEvent& e = m.service_event();
      VIGIE_RETURN_IF_ERROR(ValidateSequence(e.sequence(), "service_event", reason));
      VIGIE_RETURN_IF_ERROR(CheckText("service_event.service", e.service(), 200, reason));
      VIGIE_RETURN_IF_ERROR(CheckText("service_event.message", e.message(), 4096, reason));
      VIGIE_RETURN_IF_ERROR(CheckCommandIds("service_event.command_ids", e.command_ids(), reason));
      return ValidateTimestamp(e.timestamp_ms(), Now(now_ms), "service_event.timestamp_ms", reason);
    }
    case v1::AgentMessage::kHeartbeat:
      return absl::OkStatus();
    default:
      return Invalid("protocol", reason, "payload: empty message");
  }
}

DecodedMessage DecodeAgentMessage(const std::function<bool(google::protobuf::Message*)>& parse,
                                  size_t size, const GatewayOptions& limits, int64_t now_ms) {
  DecodedMessage d;
  const bool parsed = size <= limits.max_message_bytes && parse(&d.message);
  if (parsed) {
    d.kind = KindName(d.message);
    d.sequence = DurableSequence(d.message);
    d.status = ValidateAgentMessage(d.message, limits, now_ms, &d.reason);
    return d;
  }
  // Too large, or not vigie.v1: the lenient mirror still tells which message it was.
  internal::LenientAgentMessage lenient;
  if (!parse(&lenient)) {
    d.reason = "unparseable";
    d.status = absl::InvalidArgumentError(
        absl::StrCat("message: ", size, " bytes that are not a vigie.v1.AgentMessage"));
    return d;
  }
  std::string what;
  switch (lenient.payload_case()) {
    case internal::LenientAgentMessage::kMetrics:
      d.kind = "metrics";
      d.sequence = lenient.metrics().sequence();
      what = FindInvalidUtf8(lenient.metrics());
      break;
    case internal::LenientAgentMessage::kChecks:
      d.kind = "checks";
      d.sequence = lenient.checks().sequence();
      what = "checks: a string field is not valid UTF-8";
      break;
    case internal::LenientAgentMessage::kServiceEvent:
      d.kind = "service_event";
      d.sequence = lenient.service_event().sequence();
      what = "service_event: a string field is not valid UTF-8";
      break;
    case internal::LenientAgentMessage::kHello:
      d.kind = "hello";
      what = "hello: a string field is not valid UTF-8";
      break;
    case internal::LenientAgentMessage::kHeartbeat:
      d.kind = "heartbeat";
      what = "heartbeat: not a valid vigie.v1.Heartbeat";
      break;
    default:
      what = "payload: empty or unknown message";
      break;
  }
  if (size > limits.max_message_bytes) {
    d.reason = "too_large";
    d.status = absl::InvalidArgumentError(
        absl::StrCat(d.kind, ": ", size, " bytes exceed the limit of ", limits.max_message_bytes));
  } else {
    d.reason = "invalid_utf8";
    d.status = absl::InvalidArgumentError(what);
  }
  return d;
}

// One agent stream. Lifetime: created by Connect(), deleted in OnDone(). Finish() is called only
// when no task of this stream is queued or running and no write is in flight, so nothing
// touches the reactor after OnDone.
class AgentStream : public grpc::ServerBidiReactor<grpc::ByteBuffer, grpc::ByteBuffer> {
 public:
  AgentStream(Gateway* gw, grpc::CallbackServerContext* context)
      : gw_(gw),
        peer_(context->peer()),
        connection_id_(gw->NewConnectionId()),
        principal_(PrincipalOf(*context)),
        started_(absl::Now()) {
    gw_->streams_.Increment();
    if (!gw_->Admit(this)) {
      // Over max_streams: refused before anything is read; the agent retries with backoff.
      {
        MutexLock lock(&mu_);
        finish_requested_ = finished_ = true;
      }
      Finish(grpc::Status(grpc::StatusCode::RESOURCE_EXHAUSTED,
                          absl::StrCat("control plane at its limit of ", gw_->options_.max_streams,
                                       " agent streams (max_streams); retry later")));
      return;
    }
    StartRead(&in_);
  }

  // Every entry point below runs its logic under mu_ and calls Finish() only after releasing
  // it, as the very last thing that touches `this`: once Finish() is called, OnDone() may run
  // (and delete this) on another thread.
  void OnReadDone(bool ok) override {
    grpc::Status status;
    bool finish;
    {
      MutexLock lock(&mu_);
      HandleReadLocked(ok);
      finish = TakeFinishLocked(&status);
    }
    if (finish) Finish(status);
  }

  void OnWriteDone(bool ok) override {
    grpc::Status status;
    bool finish;
    {
      MutexLock lock(&mu_);
      writing_ = false;
      if (ok) {
        WriteNextLocked();
        MaybeResumeReadLocked();
      } else {
        RequestFinishLocked(grpc::Status(grpc::StatusCode::UNAVAILABLE, "write failed"));
      }
      finish = TakeFinishLocked(&status);
    }
    if (finish) Finish(status);
  }

  void OnCancel() override {
    grpc::Status status;
    bool finish;
    {
      MutexLock lock(&mu_);
      cancelled_ = true;
      RequestFinishLocked(grpc::Status::CANCELLED);
      finish = TakeFinishLocked(&status);
    }
    if (finish) Finish(status);
  }

  void OnDone() override {
    gw_->streams_.Decrement();
    gw_->Leave(this);
    size_t never_ran;
    {
      MutexLock lock(&mu_);
      never_ran = queued_bytes_;
    }
    gw_->ReleaseInflight(never_ran);
    if (!agent_id_.empty() && gw_->Unregister(agent_id_, this)) {
      Store* store = gw_->store_;
      std::string id = agent_id_, connection = connection_id_;
      gw_->pool_->Submit([store, id, connection] {
        if (absl::Status s = store->MarkDisconnected(id, connection); !s.ok()) {
          log::Warn("cannot mark agent disconnected", {{"agent", id}, {"error", s}});
        }
      });
      log::Info("agent disconnected", {{"agent", agent_id_}, {"peer", peer_}});
    }
    delete this;
  }

  // True once the stream is ending. Called by the gateway under its lock (gateway lock, then
  // stream lock: the one order used).
  bool Finishing() {
    MutexLock lock(&mu_);
    return finish_requested_;
  }

  // Called by the gateway, under its lock, when a newer stream of the same agent registers.
  // Safe against a concurrent OnDone(): that waits for the gateway lock in Unregister().
  // False when too many commands wait to be written already.
  bool QueueCommand(const v1::Command& command) {
    MutexLock lock(&mu_);
    if (commands_.size() >= 1000 || finish_requested_) return false;
    commands_.push_back(command);
    WriteNextLocked();
    return true;
  }

  void Supersede() {
    End(grpc::Status(grpc::StatusCode::ABORTED,
                     "superseded by a newer stream of the same agent_id"));
  }

  // Ends the stream with `status` (queued work finishes first). Same locking as Supersede().
  void End(const grpc::Status& end) {
    grpc::Status status;
    bool finish;
    {
      MutexLock lock(&mu_);
      RequestFinishLocked(end);
      finish = TakeFinishLocked(&status);
    }
    if (finish) Finish(status);
  }

  // The token this stream authenticated with ("" if none). Immutable.
  const std::string& token_id() const {
    static const std::string kNone;
    return principal_ ? principal_->token_id : kNone;
  }

 private:
  void HandleReadLocked(bool ok) ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_) {
    if (!ok) {
      // The agent closed its side or the stream broke: finish once queued work is done.
      RequestFinishLocked(grpc::Status::OK);
      return;
    }
    if (finish_requested_) return;  // ending: ignore the message, read no more
    const size_t size = in_.Length();
    DecodedMessage d = DecodeAgentMessage(
        [this](google::protobuf::Message* m) {
          grpc::ProtoBufferReader reader(&in_);
          return m->ParseFromZeroCopyStream(&reader);
        },
        in_.Length(), gw_->options_, absl::ToUnixMillis(absl::Now()));
    in_.Clear();
    gw_->messages_.Add({{"kind", d.kind}}).Increment();
    if (!d.status.ok()) {
      if (hello_seen_ && d.sequence > last_sequence_seen_) {
        // Refuse exactly this message; the stream and everything behind it go on. (A sequence
        // beyond the storable range does not move the floor: the agent's next ones are judged
        // as if it had not been sent.)
        if (d.sequence <= kMaxSequence) last_sequence_seen_ = d.sequence;
        RefuseLocked(d);
        ContinueReadingLocked();
      } else {
        EndWithErrorLocked(d.reason, d.status);
      }
      return;
    }
    v1::AgentMessage& m = d.message;
    if (!hello_seen_) {
      if (!m.has_hello()) {
        EndWithErrorLocked("protocol",
                           absl::InvalidArgumentError("payload: the first message must be hello"));
        return;
      }
      std::string reason;
      if (absl::Status s = gw_->tokens_->AuthorizeHello(principal_, m.hello(), &reason); !s.ok()) {
        gw_->failures_->Count(reason, "/vigie.v1.AgentGateway/Connect", s.message());
        RequestFinishLocked(ToGrpcStatus(s));
        return;
      }
      hello_seen_ = true;
      agent_id_ = m.hello().agent_id();
      queue_.push_back(std::move(m));
    } else if (m.has_hello()) {
      EndWithErrorLocked("protocol", absl::InvalidArgumentError("hello: sent twice on one stream"));
      return;
    } else if (m.has_heartbeat()) {
      if (!touch_queued_) {
        touch_queued_ = true;
        queue_.push_back(std::move(m));
      }
    } else {
      const uint64_t seq = DurableSequence(m);
      if (seq <= last_sequence_seen_) {
        EndWithErrorLocked("protocol", absl::InvalidArgumentError(absl::StrCat(
                                           d.kind, ".sequence: ", seq,
                                           " is not above the previous ", last_sequence_seen_)));
        return;
      }
      last_sequence_seen_ = seq;
      queue_.push_back(std::move(m));
    }
    queued_bytes_ += size;
    gw_->AddInflight(size);
    ScheduleLocked();
    ContinueReadingLocked();
  }

  // Reads the next message unless too much is waiting (queued work or refusals not yet
  // written); then reading pauses until MaybeResumeReadLocked sees room.
  void ContinueReadingLocked() ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_) {
    if (HasRoomLocked()) {
      StartRead(&in_);
    } else {
      PauseLocked();
    }
  }
  void MaybeResumeReadLocked() ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_) {
    if (read_paused_ && !finish_requested_) {
      if (HasRoomLocked()) {
        read_paused_ = false;
        StartRead(&in_);
      } else {
        PauseLocked();
      }
    }
  }
  void PauseLocked() ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_) {
    read_paused_ = true;
    // Out of the global budget (rather than this stream's own room): wait to be resumed.
    if (!gw_->BudgetLeft()) gw_->WaitForBudget(this);
  }

 public:
  // The global budget has room again (called by the gateway, under its lock).
  void ResumeFromBudget() {
    MutexLock lock(&mu_);
    MaybeResumeReadLocked();
  }
  // Ends the stream if it has not sent Hello by `deadline` (called under the gateway's lock).
  void EndIfNoHelloBy(absl::Time started_before) {
    grpc::Status status;
    bool finish;
    {
      MutexLock lock(&mu_);
      if (hello_seen_ || finish_requested_ || started_ >= started_before) return;
      gw_->hello_timeouts_.Increment();
      RequestFinishLocked(grpc::Status(
          grpc::StatusCode::DEADLINE_EXCEEDED,
          absl::StrCat("no hello within ", absl::FormatDuration(gw_->options_.hello_timeout))));
      finish = TakeFinishLocked(&status);
    }
    if (finish) Finish(status);
  }

 private:
  bool HasRoomLocked() const ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_) {
    const size_t max = gw_->options_.max_inflight_per_stream;
    return queue_.size() < max && rejects_.size() < max && gw_->BudgetLeft();
  }

  // Answers a refused durable message with Reject{sequence, reason}.
  void RefuseLocked(const DecodedMessage& d) ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_) {
    gw_->refused_.Add({{"reason", d.reason}}).Increment();
    log::Warn("agent message refused", {{"agent", agent_id_},
                                        {"kind", d.kind},
                                        {"sequence", d.sequence},
                                        {"error", d.status.message()}});
    v1::Reject& r = rejects_.emplace_back();
    r.set_sequence(d.sequence);
    r.set_reason(std::string(d.status.message()));
    WriteNextLocked();
  }

  // Ends the stream: the message broke the protocol (or could not be refused by number).
  void EndWithErrorLocked(const char* reason, const absl::Status& s)
      ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_) {
    gw_->rejected_.Add({{"reason", reason}}).Increment();
    log::Warn("agent stream ended by a bad message",
              {{"agent", agent_id_}, {"peer", peer_}, {"error", s.message()}});
    RequestFinishLocked(ToGrpcStatus(s));
  }

  void ScheduleLocked() ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_) {
    if (running_ || queue_.empty() || finish_requested_) return;
    running_ = true;
    if (!gw_->pool_->Submit([this] { Drain(); })) {  // shutting down
      running_ = false;
      RequestFinishLocked(grpc::Status(grpc::StatusCode::UNAVAILABLE, "control plane stopping"));
    }
  }

  // Runs on a worker thread: processes everything queued so far, in order. The stream cannot
  // finish while running_ is set, so `this` stays valid until the final block.
  void Drain() {
    std::deque<v1::AgentMessage> work;
    size_t work_bytes;
    {
      MutexLock lock(&mu_);
      work.swap(queue_);
      work_bytes = queued_bytes_;
      queued_bytes_ = 0;
      touch_queued_ = false;
      MaybeResumeReadLocked();
    }
    absl::Status result = Process(work);
    work.clear();
    gw_->ReleaseInflight(work_bytes);  // may resume streams waiting for the budget
    grpc::Status status;
    bool finish;
    {
      MutexLock lock(&mu_);
      running_ = false;
      if (!result.ok()) {
        RequestFinishLocked(ToGrpcStatus(result));
      } else {
        ScheduleLocked();
      }
      finish = TakeFinishLocked(&status);
    }
    if (finish) Finish(status);
  }

  absl::Status Process(std::deque<v1::AgentMessage>& work) {
    std::vector<v1::AgentMessage> durable;
    bool touch = false;
    for (v1::AgentMessage& m : work) {
      if (m.has_hello()) {
        absl::StatusOr<uint64_t> committed = gw_->store_->RegisterAgent(m.hello(), connection_id_);
        if (!committed.ok()) {
          log::Warn("cannot register agent", {{"agent", agent_id_}, {"error", committed.status()}});
          return absl::UnavailableError("storage unavailable; retry");
        }
        committed_ = *committed;
        gw_->Register(agent_id_, this);
        log::Info("agent connected", {{"agent", agent_id_},
                                      {"peer", peer_},
                                      {"version", m.hello().version()},
                                      {"committed_sequence", committed_}});
        MutexLock lock(&mu_);
        v1::Welcome* w = welcome_.emplace().mutable_welcome();
        w->set_agent_id(agent_id_);
        w->set_committed_sequence(committed_);
        w->set_heartbeat_interval_seconds(
            static_cast<uint32_t>(absl::ToInt64Seconds(gw_->options_.heartbeat_interval)));
        w->set_max_samples_per_batch(static_cast<uint32_t>(gw_->options_.max_samples_per_batch));
        w->set_max_message_bytes(static_cast<uint32_t>(gw_->options_.max_message_bytes));
        w->set_max_labels_per_sample(static_cast<uint32_t>(gw_->options_.max_labels_per_sample));
        WriteNextLocked();
      } else if (m.has_heartbeat()) {
        touch = true;
      } else if (DurableSequence(m) <= committed_) {
        // A resend of something already stored: acknowledge without writing it again.
        gw_->duplicates_.Increment();
        QueueAck(committed_);
      } else {
        durable.push_back(std::move(m));
      }
    }
    if (!durable.empty()) {
      absl::Status st = Commit(durable);
      if (absl::IsInvalidArgument(st) && durable.size() > 1) {
        // The database refused the group (a value no check here foresaw): find the message
        // and refuse just that one, so the others are stored and the stream goes on.
        for (v1::AgentMessage& m : durable) {
          std::vector<v1::AgentMessage> one;
          one.push_back(std::move(m));
          VIGIE_RETURN_IF_ERROR(CommitOrRefuse(one));
        }
      } else if (absl::IsInvalidArgument(st)) {
        VIGIE_RETURN_IF_ERROR(CommitOrRefuse(durable, st));
      } else if (!st.ok()) {
        return st;
      }
    } else if (touch) {
      if (absl::Status s = gw_->store_->TouchAgent(agent_id_); !s.ok()) {
        return absl::UnavailableError("storage unavailable; retry");
      }
    }
    return absl::OkStatus();
  }

  // Results and events that answer Admin RunCheck and RestartService calls: stored for the
  // replica where the call waits.
  void CompleteCommands(const std::vector<v1::AgentMessage>& durable) {
    std::vector<Store::CommandAnswer> answers;
    auto answer = [&answers](Store::CommandKind kind, const std::string& name,
                             const google::protobuf::RepeatedPtrField<std::string>& ids,
                             google::protobuf::Message* copy) {
      std::string json;
      if (!google::protobuf::util::MessageToJsonString(*copy, &json).ok()) return;
      for (const std::string& id : ids) answers.push_back({id, kind, name, json});
    };
    for (const v1::AgentMessage& m : durable) {
      for (const v1::CheckResult& r : m.checks().results()) {
        if (r.command_ids().empty()) continue;
        v1::CheckResult copy = r;
        copy.clear_command_ids();
        answer(Store::CommandKind::kRunCheck, r.name(), r.command_ids(), &copy);
      }
      if (m.has_service_event() && !m.service_event().command_ids().empty()) {
        v1::ServiceEvent copy = m.service_event();
        copy.clear_command_ids();
        answer(Store::CommandKind::kRestartService, copy.service(), m.service_event().command_ids(),
               &copy);
      }
    }
    if (answers.empty()) return;
    if (absl::Status s = gw_->store_->CompleteCommands(agent_id_, answers); !s.ok()) {
      log::Warn("cannot store a command's answer", {{"agent", agent_id_}, {"error", s}});
    }
  }

  // Stores `durable` in one transaction with its rule transitions and queues the Ack.
  // InvalidArgument: the database refused the content (nothing stored); Unavailable: retry.
  absl::Status Commit(const std::vector<v1::AgentMessage>& durable) {
    // Rules see the batches' samples in order; state changes only after the commit.
    v1::MetricBatch all;
    std::map<std::string, std::string> check_messages;  // by check: the latest, for alerts
    for (const v1::AgentMessage& m : durable) {
      if (m.has_metrics()) all.mutable_samples()->MergeFrom(m.metrics().samples());
      // A check's state is also the series vigie_check_status{check, target, ...}, which the
      // agent exports each collect interval; fed to the rules here, as each result arrives,
      // a rule on it fires within milliseconds of the failing run.
      // A supervised service's events are series too (made here only, from events, so a rule
      // on them fires within milliseconds of the event; service rules use them):
      //   vigie_service_stable 0 at an exit, 1 at a stable run after a start;
      //   vigie_service_restarts_in_a_row: the count at each restart, 0 at a stable run;
      //   vigie_service_health_failures_in_a_row: the count at each failed health command,
      //   0 when it succeeds again or a new process starts.
      if (m.has_service_event()) {
        const v1::ServiceEvent& e = m.service_event();
        auto add = [&all, &e](const char* name, double value) {
          v1::Sample* s = all.add_samples();
          s->set_name(name);
          (*s->mutable_labels())["service"] = e.service();
          s->set_value(value);
          s->set_timestamp_ms(e.timestamp_ms());
        };
        switch (e.kind()) {
          case v1::ServiceEvent::KIND_EXITED:
            add(kServiceStableMetric, 0);
            break;
          case v1::ServiceEvent::KIND_STABLE:
            add(kServiceStableMetric, 1);
            add(kServiceRestartsInARowMetric, 0);
            break;
          case v1::ServiceEvent::KIND_STARTED:  // a new process: its health count starts over
            add(kServiceHealthFailuresMetric, 0);
            break;
          // count 0: an agent older than the field, which says nothing of the count.
          case v1::ServiceEvent::KIND_RESTARTING:
            if (e.count() > 0) add(kServiceRestartsInARowMetric, e.count());
            break;
          case v1::ServiceEvent::KIND_HEALTH_FAILED:
            if (e.count() > 0) add(kServiceHealthFailuresMetric, e.count());
            break;
          case v1::ServiceEvent::KIND_HEALTH_OK:
            add(kServiceHealthFailuresMetric, 0);
            break;
          default:
            break;
        }
      }
      for (const v1::CheckResult& r : m.checks().results()) {
        v1::Sample* s = all.add_samples();
        s->set_name(kCheckStatusMetric);
        check_messages[r.name()] = r.message();
        *s->mutable_labels() = r.labels();
        (*s->mutable_labels())["check"] = r.name();
        (*s->mutable_labels())["target"] = r.target();
        s->set_value(CheckStatusValue(r.status()));
        s->set_timestamp_ms(r.timestamp_ms());
      }
    }
    const absl::Time eval_start = absl::Now();
    RuleEngine::Evaluation ev = gw_->rules_->Evaluate(agent_id_, all);
    AttachCheckMessages(gw_->rules_->rules(), check_messages, &ev.transitions);
    // A check alert fired by a later metrics batch (a rule with `for`) takes the check's
    // stored message.
    std::vector<std::string> lacking = ChecksLackingMessages(gw_->rules_->rules(), ev.transitions);
    if (!lacking.empty()) {
      absl::StatusOr<std::map<std::string, std::string>> stored =
          gw_->store_->CheckMessages(agent_id_, lacking);
      if (stored.ok()) AttachCheckMessages(gw_->rules_->rules(), *stored, &ev.transitions);
    }
    gw_->evaluation_seconds_.Observe(absl::ToDoubleSeconds(absl::Now() - eval_start));
    gw_->samples_evaluated_.Increment(static_cast<double>(all.samples_size()));
    const absl::Time start = absl::Now();
    absl::StatusOr<IngestResult> r = gw_->store_->Ingest(agent_id_, durable, ev.transitions,
                                                         ev.pending, gw_->options_.generator_url);
    gw_->commit_seconds_.Observe(absl::ToDoubleSeconds(absl::Now() - start));
    if (!r.ok()) {
      gw_->ingest_errors_.Increment();
      log::Warn("ingest failed", {{"agent", agent_id_}, {"error", r.status()}});
      if (absl::IsInvalidArgument(r.status())) return r.status();
      return absl::UnavailableError("storage unavailable; resend after reconnect");
    }
    gw_->rules_->Apply(ev);
    CompleteCommands(durable);
    gw_->alerts_refused_.Set(static_cast<double>(gw_->rules_->refused()));
    gw_->rule_state_.Set(static_cast<double>(gw_->rules_->active()));
    committed_ = r->committed_sequence;
    gw_->samples_committed_.Increment(static_cast<double>(r->samples_written));
    gw_->samples_expired_.Increment(static_cast<double>(r->samples_expired));
    if (r->samples_over_series_limit > 0) {
      gw_->samples_over_limit_.Increment(static_cast<double>(r->samples_over_series_limit));
      if (!warned_series_limit_) {  // once per stream; the counter has the rest
        warned_series_limit_ = true;
        log::Warn("agent is over max_series_per_agent; samples of its new series are not stored",
                  {{"agent", agent_id_}, {"samples", r->samples_over_series_limit}});
      }
    }
    gw_->series_resolution_.Add({{"result", "hit"}}).Increment(static_cast<double>(r->layout_hits));
    gw_->series_resolution_.Add({{"result", "changed"}})
        .Increment(static_cast<double>(r->layouts_changed));
    gw_->duplicates_.Increment(static_cast<double>(r->duplicates));
    if (!ev.transitions.empty()) {
      gw_->transitions_.Increment(static_cast<double>(ev.transitions.size()));
      for (const Transition& t : ev.transitions) {
        log::Info("alert transition",
                  {{"rule", t.rule},
                   {"fingerprint", t.fingerprint},
                   {"status", t.kind == Transition::kFiring ? "firing" : "resolved"},
                   {"value", t.value}});
      }
      gw_->on_transitions_();
    }
    QueueAck(committed_);
    return absl::OkStatus();
  }

  // Commits one message; if the database refuses it, refuses it by sequence (Reject).
  absl::Status CommitOrRefuse(const std::vector<v1::AgentMessage>& one,
                              absl::Status st = absl::OkStatus()) {
    if (st.ok()) st = Commit(one);
    if (!absl::IsInvalidArgument(st)) return st;
    DecodedMessage d;
    d.kind = KindName(one[0]);
    d.sequence = DurableSequence(one[0]);
    d.reason = "storage_refused";
    d.status = absl::InvalidArgumentError(
        absl::StrCat(d.kind, ": the database refused it: ", st.message()));
    MutexLock lock(&mu_);
    RefuseLocked(d);
    return absl::OkStatus();
  }

  void QueueAck(uint64_t seq) {
    MutexLock lock(&mu_);
    ack_ = seq;  // acks are cumulative: only the latest matters
    WriteNextLocked();
  }

  // Writes the next control message: Welcome first, and nothing before it; then the latest
  // Ack and the refusals in order.
  void WriteNextLocked() ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_) {
    if (writing_ || finished_ || cancelled_) return;
    v1::ControlMessage msg;
    if (welcome_) {
      msg = std::move(*welcome_);
      welcome_.reset();
      welcome_sent_ = true;
    } else if (!welcome_sent_) {
      return;
    } else if (!rejects_.empty()) {
      // Refusals first: an Ack past a refused sequence would otherwise reach the agent first.
      *msg.mutable_reject() = std::move(rejects_.front());
      rejects_.pop_front();
    } else if (ack_) {
      msg.mutable_ack()->set_sequence(*ack_);
      ack_.reset();
    } else if (!commands_.empty()) {
      *msg.mutable_command() = std::move(commands_.front());
      commands_.pop_front();
    } else {
      return;
    }
    bool own_buffer;
    out_.Clear();  // the previous write is done (writing_ was false)
    grpc::Status s =
        grpc::SerializationTraits<v1::ControlMessage>::Serialize(msg, &out_, &own_buffer);
    if (!s.ok()) {
      RequestFinishLocked(s);
      return;
    }
    writing_ = true;
    StartWrite(&out_);
  }

  void RequestFinishLocked(grpc::Status status) ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_) {
    if (!finish_requested_) {
      finish_requested_ = true;
      finish_status_ = std::move(status);
    }
  }

  // True (once) when the stream should be finished now with *status: finish was requested, no
  // task is queued or running, and no write is in flight. A healthy stream first flushes its
  // last Ack. The caller calls Finish() after releasing mu_.
  bool TakeFinishLocked(grpc::Status* status) ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_) {
    if (!finish_requested_ || finished_ || running_ || writing_) return false;
    if (!cancelled_ && (welcome_ || ack_ || !rejects_.empty())) {
      WriteNextLocked();
      if (writing_) return false;
    }
    finished_ = true;
    *status = finish_status_;
    return true;
  }

  Gateway* const gw_;
  const std::string peer_;
  const std::string connection_id_;
  const std::optional<Principal> principal_;  // from the token the stream presented
  const absl::Time started_;
  grpc::ByteBuffer in_;  // only touched by the one outstanding read and its reaction

  Mutex mu_;
  std::string agent_id_;              // set once, by the first reaction, before any task runs
  uint64_t committed_ = 0;            // touched only by Drain(), which never runs twice at once
  bool warned_series_limit_ = false;  // likewise
  std::deque<v1::AgentMessage> queue_ ABSL_GUARDED_BY(mu_);
  // Serialized bytes of queue_, counted in the gateway's global budget until processed.
  size_t queued_bytes_ ABSL_GUARDED_BY(mu_) = 0;
  bool hello_seen_ ABSL_GUARDED_BY(mu_) = false;
  bool touch_queued_ ABSL_GUARDED_BY(mu_) = false;
  uint64_t last_sequence_seen_ ABSL_GUARDED_BY(mu_) = 0;
  bool running_ ABSL_GUARDED_BY(mu_) = false;
  bool read_paused_ ABSL_GUARDED_BY(mu_) = false;
  grpc::ByteBuffer out_ ABSL_GUARDED_BY(mu_);
  std::optional<v1::ControlMessage> welcome_ ABSL_GUARDED_BY(mu_);
  bool welcome_sent_ ABSL_GUARDED_BY(mu_) = false;
  std::optional<uint64_t> ack_ ABSL_GUARDED_BY(mu_);
  std::deque<v1::Reject> rejects_ ABSL_GUARDED_BY(mu_);    // bounded by max_inflight_per_stream
  std::deque<v1::Command> commands_ ABSL_GUARDED_BY(mu_);  // Admin RunCheck, in order
  bool writing_ ABSL_GUARDED_BY(mu_) = false;
  bool cancelled_ ABSL_GUARDED_BY(mu_) = false;
  bool finish_requested_ ABSL_GUARDED_BY(mu_) = false;
  bool finished_ ABSL_GUARDED_BY(mu_) = false;
  grpc::Status finish_status_ ABSL_GUARDED_BY(mu_);
};

// Once a second: ends streams that never said Hello, and resumes streams paused for the budget
// that a release raced past.
class Gateway::Sweeper : public Runnable {
 public:
  explicit Sweeper(Gateway* gw) : Runnable("hello-sweeper"), gw_(gw) {}
  ~Sweeper() override { Stop(); }

 protected:
  void Run() override {
    while (WaitFor(absl::Seconds(1))) {
      gw_->EndSilentStreams();
      if (gw_->BudgetLeft()) gw_->ResumeWaiting();
    }
  }

 private:
  Gateway* const gw_;
};

Gateway::Gateway(GatewayOptions options, Store* store, RuleEngine* rules, WorkerPool* pool,
                 std::function<void()> on_transitions, prometheus::Registry* registry,
                 const TokenRegistry* tokens, AuthFailures* failures)
    : options_(std::move(options)),
      store_(store),

      rules_(rules),
      pool_(pool),
      on_transitions_(std::move(on_transitions)),
      tokens_(tokens),
      failures_(failures),
      streams_(prometheus::BuildGauge()
                   .Name("vigie_controlplane_agent_streams")
                   .Help("Open agent streams.")
                   .Register(*registry)
                   .Add({})),
      messages_(prometheus::BuildCounter()
                    .Name("vigie_controlplane_agent_messages_total")
                    .Help("Messages received from agents, by kind.")
                    .Register(*registry)),
      samples_committed_(prometheus::BuildCounter()
                             .Name("vigie_controlplane_samples_committed_total")
                             .Help("Samples written to PostgreSQL.")
                             .Register(*registry)
                             .Add({})),
      samples_expired_(prometheus::BuildCounter()
                           .Name("vigie_controlplane_samples_expired_total")
                           .Help("Samples older than retention.raw, acknowledged but not stored.")
                           .Register(*registry)
                           .Add({})),
      samples_over_limit_(prometheus::BuildCounter()
                              .Name("vigie_controlplane_samples_over_series_limit_total")
                              .Help("Samples of new series beyond max_series_per_agent, "
                                    "acknowledged but not stored.")
                              .Register(*registry)
                              .Add({})),
      series_resolution_(prometheus::BuildCounter()
                             .Name("vigie_controlplane_batch_layouts_total")
                             .Help("Stored metric batches by how their series were resolved: "
                                   "hit (same series in the same order as the agent's last "
                                   "batch, from memory) or changed.")
                             .Register(*registry)),
      duplicates_(prometheus::BuildCounter()
                      .Name("vigie_controlplane_duplicate_messages_total")
                      .Help("Resent durable messages acknowledged without being written again.")
                      .Register(*registry)
                      .Add({})),
      ingest_errors_(prometheus::BuildCounter()
                         .Name("vigie_controlplane_ingest_errors_total")
                         .Help("Ingest transactions that failed (the agent resends).")
                         .Register(*registry)
                         .Add({})),
      rejected_(prometheus::BuildCounter()
                    .Name("vigie_controlplane_agent_streams_rejected_total")
                    .Help("Streams ended because of a message that broke the protocol, by "
                          "reason.")
                    .Register(*registry)),
      refused_(prometheus::BuildCounter()
                   .Name("vigie_controlplane_agent_messages_refused_total")
                   .Help("Durable agent messages refused by sequence (Reject) and never stored, "
                         "by reason; the stream goes on.")
                   .Register(*registry)),
      transitions_(prometheus::BuildCounter()
                       .Name("vigie_controlplane_alert_transitions_total")
                       .Help("Alert transitions (firing, resolved) stored.")
                       .Register(*registry)
                       .Add({})),
      commit_seconds_(
          prometheus::BuildHistogram()
              .Name("vigie_controlplane_ingest_commit_seconds")
              .Help("Duration of ingest transactions.")
              .Register(*registry)
              .Add({}, prometheus::Histogram::BucketBoundaries{0.001, 0.0025, 0.005, 0.01, 0.025,
                                                               0.05, 0.1, 0.25, 0.5, 1, 2.5})),
      evaluation_seconds_(
          prometheus::BuildHistogram()
              .Name("vigie_controlplane_rule_evaluation_seconds")
              .Help("Time to evaluate the rules against one commit's samples (before storing).")
              .Register(*registry)
              .Add({}, prometheus::Histogram::BucketBoundaries{0.00001, 0.0001, 0.00025, 0.0005,
                                                               0.001, 0.0025, 0.005, 0.01, 0.05})),
      samples_evaluated_(prometheus::BuildCounter()
                             .Name("vigie_controlplane_samples_evaluated_total")
                             .Help("Samples evaluated against the threshold rules.")
                             .Register(*registry)
                             .Add({})),
      rule_state_(prometheus::BuildGauge()
                      .Name("vigie_controlplane_rule_state_alerts")
                      .Help("Alerts pending or firing in this replica's rule engine (its state's "
                            "size; bounded by the engine's max_active).")
                      .Register(*registry)
                      .Add({})),
      alerts_refused_(prometheus::BuildGauge()
                          .Name("vigie_controlplane_alerts_refused")
                          .Help("Alerts not started because the rule engine's bound on active "
                                "alerts was reached.")
                          .Register(*registry)
                          .Add({})),
      inflight_gauge_(prometheus::BuildGauge()
                          .Name("vigie_controlplane_inflight_bytes")
                          .Help("Serialized bytes read from agents and not yet stored, across "
                                "all streams (bounded by max_inflight_bytes).")
                          .Register(*registry)
                          .Add({})),
      budget_pauses_(prometheus::BuildCounter()
                         .Name("vigie_controlplane_budget_pauses_total")
                         .Help("Times a stream stopped reading because max_inflight_bytes was "
                               "spent (flow control holds its agent back).")
                         .Register(*registry)
                         .Add({})),
      streams_refused_(prometheus::BuildCounter()
                           .Name("vigie_controlplane_streams_refused_total")
                           .Help("Streams refused at connect because max_streams were open.")
                           .Register(*registry)
                           .Add({})),
      hello_timeouts_(prometheus::BuildCounter()
                          .Name("vigie_controlplane_hello_timeouts_total")
                          .Help("Streams ended because no Hello came within hello_timeout.")
                          .Register(*registry)
                          .Add({})) {
  instance_ = absl::StrFormat("%08x%08x", std::random_device{}(), std::random_device{}());
  for (const char* k : {"hello", "metrics", "checks", "heartbeat", "service_event", "empty"}) {
    messages_.Add({{"kind", k}});
  }
  for (const char* r : {"invalid", "protocol", "unparseable"}) rejected_.Add({{"reason", r}});
  for (const char* r : SampleRejectReasons()) refused_.Add({{"reason", r}});
  sweeper_ = std::make_unique<Sweeper>(this);
  sweeper_->Start();
  for (const char* r :
       {"too_large", "sequence_range", "too_many_samples", "storage_refused", "bad_value"}) {
    refused_.Add({{"reason", r}});
  }
}

Gateway::~Gateway() {
  if (sweeper_) sweeper_->Stop();
}

bool Gateway::Admit(AgentStream* stream) {
  MutexLock lock(&mu_);
  live_.insert(stream);
  if (live_.size() <= options_.max_streams) return true;
  streams_refused_.Increment();
  return false;
}

void Gateway::Leave(AgentStream* stream) {
  {
    MutexLock lock(&waiting_mu_);
    waiting_.erase(stream);
  }
  MutexLock lock(&mu_);
  live_.erase(stream);
}

void Gateway::AddInflight(size_t bytes) {
  inflight_gauge_.Set(static_cast<double>(inflight_bytes_.fetch_add(bytes) + bytes));
}

void Gateway::ReleaseInflight(size_t bytes) {
  if (bytes == 0) return;
  const size_t now = inflight_bytes_.fetch_sub(bytes) - bytes;
  inflight_gauge_.Set(static_cast<double>(now));
  if (now < options_.max_inflight_bytes) ResumeWaiting();
}

void Gateway::WaitForBudget(AgentStream* stream) {
  bool added;
  {
    MutexLock lock(&waiting_mu_);
    added = waiting_.insert(stream).second;
  }
  if (added) budget_pauses_.Increment();
  // Released between the check and the insert? The sweeper looks again within a second.
}

void Gateway::ResumeWaiting() {
  std::set<AgentStream*> resume;
  {
    MutexLock lock(&waiting_mu_);
    if (waiting_.empty()) return;
    resume.swap(waiting_);
  }
  // Under mu_ a stream cannot finish OnDone (it leaves live_ there first).
  MutexLock lock(&mu_);
  for (AgentStream* s : resume) {
    if (live_.count(s) != 0) s->ResumeFromBudget();
  }
}

void Gateway::EndSilentStreams() {
  const absl::Time started_before = absl::Now() - options_.hello_timeout;
  MutexLock lock(&mu_);
  for (AgentStream* s : live_) s->EndIfNoHelloBy(started_before);
}

grpc::ServerBidiReactor<grpc::ByteBuffer, grpc::ByteBuffer>* Gateway::Connect(
    grpc::CallbackServerContext* context) {
  return new AgentStream(this, context);
}

size_t Gateway::connected_agents() const {
  MutexLock lock(&mu_);
  return by_agent_.size();
}

void Gateway::Register(const std::string& agent_id, AgentStream* stream) {
  MutexLock lock(&mu_);
  if (stream->Finishing()) return;  // an ending stream must not displace a newer one
  AgentStream*& current = by_agent_[agent_id];
  if (current != nullptr && current != stream) current->Supersede();
  current = stream;
}

void Gateway::DisconnectToken(const std::string& token_id) {
  MutexLock lock(&mu_);
  for (auto& [agent, stream] : by_agent_) {
    if (stream->token_id() == token_id) {
      log::Info("ending stream: its token was revoked", {{"agent", agent}, {"token", token_id}});
      stream->End(grpc::Status(grpc::StatusCode::UNAUTHENTICATED,
                               absl::StrCat("token ", token_id, " was revoked")));
    }
  }
}

std::string Gateway::NewConnectionId() {
  return absl::StrCat(instance_, "-", next_connection_.fetch_add(1));
}

std::vector<std::string> Gateway::HeldAgents() const {
  MutexLock lock(&mu_);
  std::vector<std::string> out;
  out.reserve(by_agent_.size());
  for (const auto& [agent, stream] : by_agent_) out.push_back(agent);
  return out;
}

bool Gateway::Holds(const std::string& agent_id) const {
  MutexLock lock(&mu_);
  return by_agent_.count(agent_id) > 0;
}

bool Gateway::SendCommand(const std::string& agent_id, const v1::Command& command) {
  MutexLock lock(&mu_);
  auto it = by_agent_.find(agent_id);
  return it != by_agent_.end() && it->second->QueueCommand(command);
}

bool Gateway::Unregister(const std::string& agent_id, AgentStream* stream) {
  MutexLock lock(&mu_);
  auto it = by_agent_.find(agent_id);
  if (it == by_agent_.end() || it->second != stream) return false;
  by_agent_.erase(it);
  return true;
}

}  // namespace vigie::controlplane
