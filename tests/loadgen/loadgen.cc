// vigie-loadgen: many simulated agents, each a real gRPC stream (its own TCP connection, TLS
// when --ca_file is given) speaking the v1 contract: Hello, Welcome, batches of node-shaped
// samples numbered from the committed sequence, Acks, heartbeats at the Welcome's interval,
// reconnects with backoff (and on purpose with --reconnect_every). Used by the fleet
// benchmarks (scripts/bench-fleet.sh) and tests. Prints one JSON line of totals at the end.
//
//   vigie-loadgen --target 127.0.0.1:7400 --agents 20 --series 600 --interval 0 --duration 20s
//       --token_file enrol.token [--ca_file ca.pem --server_name vigie.test]
// --interval 0 sends as fast as Acks come back (at most --window batches in flight per agent);
// --interval 1h with --series 0 holds idle streams (heartbeats only).
#include <atomic>
#include <cstdio>
#include <deque>
#include <memory>
#include <string>
#include <thread>
#include <vector>

#include "absl/flags/flag.h"
#include "absl/flags/parse.h"
#include "absl/flags/reflection.h"
#include "absl/strings/ascii.h"
#include "absl/strings/str_cat.h"
#include "absl/time/clock.h"
#include "common/files.h"
#include "common/mutex.h"
#include "common/process.h"
#include "grpcpp/grpcpp.h"
#include "vigie/v1/agent.grpc.pb.h"

ABSL_FLAG(std::string, target, "127.0.0.1:7400", "control plane gRPC address");
ABSL_FLAG(int, agents, 10, "simulated agents (one stream and connection each)");
ABSL_FLAG(int, series, 600, "samples per batch (0: heartbeats only)");
ABSL_FLAG(std::string, interval, "15s", "between batches (0: as fast as acked)");
ABSL_FLAG(int, window, 4, "batches in flight per agent, unacknowledged");
ABSL_FLAG(std::string, duration, "30s", "how long to run");
ABSL_FLAG(std::string, warmup, "3s", "not counted at the start");
ABSL_FLAG(std::string, reconnect_every, "0",
          "each agent ends its stream and reconnects this often (0: never)");
ABSL_FLAG(std::string, token_file, "", "bearer token (an enrolment token: agent_id = hostname)");
ABSL_FLAG(std::string, ca_file, "", "PEM CA: connect with TLS");
ABSL_FLAG(std::string, server_name, "", "TLS name to check (default: the target's host)");
ABSL_FLAG(std::string, id_prefix, "loadgen-", "agent ids are <prefix><n>");
ABSL_FLAG(bool, expect_welcome, true, "wait for Welcome before sending (false: bare servers)");

namespace {

using vigie::Mutex;
using vigie::MutexLock;
namespace v1 = vigie::v1;

struct Totals {
  std::atomic<int64_t> acked_samples{0}, acked_batches{0}, rejects{0}, connects{0}, ends{0},
      connected{0}, welcomed{0};
};
Totals totals;
std::atomic<bool> counting{false};

// The flags, read once in main. (Durations are string flags: absl's Duration flags use a
// fence GCC's TSan refuses.)
struct Settings {
  int series = 0;
  int window = 0;
  absl::Duration interval, reconnect_every;
  bool expect_welcome = true;
};
Settings settings;

class SimAgent;

// One stream. Deletes itself when gRPC is done with it; the agent then reconnects.
class Stream : public grpc::ClientBidiReactor<v1::AgentMessage, v1::ControlMessage> {
 public:
  Stream(SimAgent* agent, v1::AgentGateway::Stub* stub, const std::string& token);
  void Send(v1::AgentMessage m);
  void Finish() { context_.TryCancel(); }

  void OnWriteDone(bool ok) override;
  void OnReadDone(bool ok) override;
  void OnDone(const grpc::Status& s) override;

 private:
  SimAgent* const agent_;
  grpc::ClientContext context_;
  v1::ControlMessage in_;
  Mutex mu_;
  std::deque<v1::AgentMessage> out_ ABSL_GUARDED_BY(mu_);
  bool writing_ ABSL_GUARDED_BY(mu_) = false;
  bool done_writing_ ABSL_GUARDED_BY(mu_) = false;
  v1::AgentMessage current_;
};

class SimAgent {
 public:
  SimAgent(std::string id, std::shared_ptr<grpc::Channel> channel, std::string token)
      : id_(std::move(id)), stub_(v1::AgentGateway::NewStub(channel)), token_(std::move(token)) {}

  // Called by the driver thread.
  void Tick(absl::Time now) {
    MutexLock lock(&mu_);
    if (stream_ == nullptr) {
      if (now < reconnect_at_) return;
      stream_ = new Stream(this, stub_.get(), token_);
      connected_at_ = now;
      welcomed_ = !settings.expect_welcome;
      totals.connects++;
      v1::AgentMessage hello;
      hello.mutable_hello()->set_agent_id(id_);
      hello.mutable_hello()->set_hostname(id_);
      hello.mutable_hello()->set_version("loadgen");
      hello.mutable_hello()->set_last_sequence(next_seq_ - 1);
      stream_->Send(std::move(hello));
      stream_->StartCall();
      return;
    }
    if (!welcomed_) return;
    const absl::Duration reconnect = settings.reconnect_every;
    if (reconnect > absl::ZeroDuration() && now - connected_at_ >= reconnect) {
      stream_->Finish();
      return;
    }
    if (heartbeat_ > absl::ZeroDuration() && now - last_heartbeat_ >= heartbeat_) {
      v1::AgentMessage hb;
      hb.mutable_heartbeat()->set_timestamp_ms(absl::ToUnixMillis(now));
      stream_->Send(std::move(hb));
      last_heartbeat_ = now;
    }
    const int series = settings.series;
    const absl::Duration interval = settings.interval;
    while (series > 0 && next_seq_ - 1 - acked_ < static_cast<uint64_t>(settings.window) &&
           now - last_batch_ >= interval) {
      stream_->Send(Batch(next_seq_++, series, now));
      last_batch_ = now;
      if (interval > absl::ZeroDuration()) break;
    }
  }

  void OnControl(const v1::ControlMessage& m) {
    MutexLock lock(&mu_);
    if (m.has_welcome()) {
      // Resend nothing: numbering goes on from what is committed (a simulator keeps no data).
      next_seq_ = std::max(next_seq_, m.welcome().committed_sequence() + 1);
      acked_ = next_seq_ - 1;
      heartbeat_ = absl::Seconds(m.welcome().heartbeat_interval_seconds());
      welcomed_ = true;
      totals.welcomed++;
    } else if (m.has_ack()) {
      const uint64_t seq = m.ack().sequence();
      if (seq > acked_) {
        if (counting) {
          totals.acked_batches += static_cast<int64_t>(seq - acked_);
          totals.acked_samples += static_cast<int64_t>(seq - acked_) * settings.series;
        }
        acked_ = seq;
      }
    } else if (m.has_reject()) {
      totals.rejects++;
    }
  }

  void OnStreamDone() {
    MutexLock lock(&mu_);
    stream_ = nullptr;
    // Unacknowledged batches are not resent: number past them (the control plane skips
    // nothing; a gap in sequences is allowed).
    acked_ = next_seq_ - 1;
    reconnect_at_ = absl::Now() + absl::Milliseconds(500 + rand() % 1000);
  }

 private:
  v1::AgentMessage Batch(uint64_t seq, int series, absl::Time now) {
    v1::AgentMessage m;
    v1::MetricBatch* b = m.mutable_metrics();
    b->set_sequence(seq);
    const int64_t ts = absl::ToUnixMillis(now);
    for (int i = 0; i < series; ++i) {
      v1::Sample* s = b->add_samples();
      s->set_name(i % 3 == 0 ? "node_cpu_seconds_total"
                             : (i % 3 == 1 ? "node_network_receive_bytes_total"
                                           : "node_filesystem_avail_bytes"));
      (*s->mutable_labels())["cpu"] = absl::StrCat(i / 8);
      (*s->mutable_labels())["mode"] = absl::StrCat("m", i % 8);
      s->set_value(static_cast<double>(seq * (i + 1)) * 0.25);
      s->set_timestamp_ms(ts);
    }
    return m;
  }

  const std::string id_;
  std::unique_ptr<v1::AgentGateway::Stub> stub_;
  const std::string token_;
  Mutex mu_;
  Stream* stream_ ABSL_GUARDED_BY(mu_) = nullptr;
  bool welcomed_ ABSL_GUARDED_BY(mu_) = false;
  uint64_t next_seq_ ABSL_GUARDED_BY(mu_) = 1;
  uint64_t acked_ ABSL_GUARDED_BY(mu_) = 0;
  absl::Duration heartbeat_ ABSL_GUARDED_BY(mu_) = absl::ZeroDuration();
  absl::Time last_heartbeat_ ABSL_GUARDED_BY(mu_) = absl::InfinitePast();
  absl::Time last_batch_ ABSL_GUARDED_BY(mu_) = absl::InfinitePast();
  absl::Time connected_at_ ABSL_GUARDED_BY(mu_) = absl::InfinitePast();
  absl::Time reconnect_at_ ABSL_GUARDED_BY(mu_) = absl::InfinitePast();
};

Stream::Stream(SimAgent* agent, v1::AgentGateway::Stub* stub, const std::string& token)
    : agent_(agent) {
  if (!token.empty()) context_.AddMetadata("authorization", "Bearer " + token);
  stub->async()->Connect(&context_, this);
  StartRead(&in_);
  AddHold();  // released when writing is over (OnDone needs every operation finished)
}

void Stream::Send(v1::AgentMessage m) {
  MutexLock lock(&mu_);
  if (done_writing_) return;
  out_.push_back(std::move(m));
  if (!writing_) {
    writing_ = true;
    current_ = std::move(out_.front());
    out_.pop_front();
    StartWrite(&current_);
  }
}

void Stream::OnWriteDone(bool ok) {
  MutexLock lock(&mu_);
  if (!ok) {
    done_writing_ = true;
    writing_ = false;
    out_.clear();
    RemoveHold();
    return;
  }
  if (out_.empty()) {
    writing_ = false;
    return;
  }
  current_ = std::move(out_.front());
  out_.pop_front();
  StartWrite(&current_);
}

void Stream::OnReadDone(bool ok) {
  if (!ok) {
    MutexLock lock(&mu_);
    if (!done_writing_ && !writing_) {
      done_writing_ = true;
      RemoveHold();
    } else if (!done_writing_) {
      // The pending write will fail or finish; cancel so it does.
      context_.TryCancel();
    }
    return;
  }
  if (in_.has_welcome()) totals.connected++;
  agent_->OnControl(in_);
  StartRead(&in_);
}

void Stream::OnDone(const grpc::Status& s) {
  totals.ends++;
  if (!s.ok() && s.error_code() != grpc::StatusCode::CANCELLED && totals.ends < 20) {
    std::fprintf(stderr, "stream ended: %d %s\n", s.error_code(), s.error_message().c_str());
  }
  agent_->OnStreamDone();
  delete this;
}

}  // namespace

int main(int argc, char** argv) {
  absl::ParseCommandLine(argc, argv);
  settings.series = absl::GetFlag(FLAGS_series);
  settings.window = absl::GetFlag(FLAGS_window);
  settings.expect_welcome = absl::GetFlag(FLAGS_expect_welcome);
  absl::Duration warmup, duration;
  for (auto [flag, out] :
       {std::make_pair(&FLAGS_interval, &settings.interval),
        std::make_pair(&FLAGS_reconnect_every, &settings.reconnect_every),
        std::make_pair(&FLAGS_warmup, &warmup), std::make_pair(&FLAGS_duration, &duration)}) {
    if (!absl::ParseDuration(absl::GetFlag(*flag), out)) {
      std::fprintf(stderr, "--%s: \"%s\" is not a duration\n",
                   std::string(absl::GetFlagReflectionHandle(*flag).Name()).c_str(),
                   absl::GetFlag(*flag).c_str());
      return 2;
    }
  }
  // One socket per agent: use every descriptor the hard limit allows.
  vigie::RaiseOpenFileLimit();
  std::string token;
  if (!absl::GetFlag(FLAGS_token_file).empty()) {
    auto t = vigie::ReadRegularFile(absl::GetFlag(FLAGS_token_file), 4096);
    if (!t.ok()) {
      std::fprintf(stderr, "%s\n", std::string(t.status().message()).c_str());
      return 2;
    }
    token = std::string(absl::StripAsciiWhitespace(*t));
  }
  std::shared_ptr<grpc::ChannelCredentials> creds = grpc::InsecureChannelCredentials();
  if (!absl::GetFlag(FLAGS_ca_file).empty()) {
    auto ca = vigie::ReadRegularFile(absl::GetFlag(FLAGS_ca_file), 1 << 20);
    if (!ca.ok()) {
      std::fprintf(stderr, "%s\n", std::string(ca.status().message()).c_str());
      return 2;
    }
    grpc::SslCredentialsOptions o;
    o.pem_root_certs = *ca;
    creds = grpc::SslCredentials(o);
  }
  const int n = absl::GetFlag(FLAGS_agents);
  std::vector<std::unique_ptr<SimAgent>> agents;
  for (int i = 0; i < n; ++i) {
    grpc::ChannelArguments args;
    args.SetInt(GRPC_ARG_USE_LOCAL_SUBCHANNEL_POOL, 1);  // a connection of its own
    args.SetInt("vigie.loadgen.agent", i);               // never share a channel
    args.SetMaxReceiveMessageSize(64 << 20);
    if (!absl::GetFlag(FLAGS_server_name).empty()) {
      args.SetSslTargetNameOverride(absl::GetFlag(FLAGS_server_name));
    }
    agents.push_back(std::make_unique<SimAgent>(
        absl::StrCat(absl::GetFlag(FLAGS_id_prefix), i),
        grpc::CreateCustomChannel(absl::GetFlag(FLAGS_target), creds, args), token));
  }
  const absl::Time start = absl::Now();
  const absl::Time count_from = start + warmup;
  const absl::Time end = count_from + duration;
  absl::Time next_report = start + absl::Seconds(5);
  // Connect gradually (at most 500 new streams per tick), as a fleet starting would.
  int started = 0;
  while (absl::Now() < end) {
    const absl::Time now = absl::Now();
    if (!counting && now >= count_from) counting = true;
    started = std::min(n, started + 500);
    for (int i = 0; i < started; ++i) agents[i]->Tick(now);
    if (now >= next_report) {
      std::fprintf(stderr, "loadgen: %lld welcomed, %lld samples acked\n",
                   static_cast<long long>(totals.welcomed.load()),
                   static_cast<long long>(totals.acked_samples.load()));
      next_report = now + absl::Seconds(5);
    }
    absl::SleepFor(absl::Milliseconds(settings.interval == absl::ZeroDuration() ? 1 : 20));
  }
  const double seconds = absl::ToDoubleSeconds(duration);
  std::printf(
      "{\"agents\": %d, \"welcomed\": %lld, \"connects\": %lld, \"stream_ends\": %lld, "
      "\"acked_batches\": %lld, \"acked_samples\": %lld, \"samples_per_second\": %.0f, "
      "\"rejects\": %lld}\n",
      n, static_cast<long long>(totals.welcomed.load()),
      static_cast<long long>(totals.connects.load()), static_cast<long long>(totals.ends.load()),
      static_cast<long long>(totals.acked_batches.load()),
      static_cast<long long>(totals.acked_samples.load()),
      static_cast<double>(totals.acked_samples.load()) / seconds,
      static_cast<long long>(totals.rejects.load()));
  std::fflush(stdout);
  // Streams are torn down with the process: a simulator needs no graceful end.
  std::_Exit(0);
}
