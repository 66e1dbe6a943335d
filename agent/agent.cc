#include "agent/agent.h"

#include <unistd.h>

#include "absl/strings/str_cat.h"
#include "common/log.h"
#include "common/secrets.h"
#include "common/status.h"
#include "common/yaml_config.h"
#include "re2/re2.h"

namespace vigie::agent {
namespace {

std::string Hostname() {
  char buf[256] = {0};
  if (gethostname(buf, sizeof(buf) - 1) != 0) return "localhost";
  return buf;
}

}  // namespace

absl::StatusOr<AgentOptions> AgentOptionsFromConfig(const v1::AgentConfig& c) {
  AgentOptions o;
  o.hostname = Hostname();
  o.agent_id = c.agent_id().empty() ? o.hostname : c.agent_id();
  static const RE2 kId("[A-Za-z0-9._-]{1,128}");
  if (!RE2::FullMatch(o.agent_id, kId)) {
    return absl::InvalidArgumentError(absl::StrCat(
        "agent_id: \"", o.agent_id, "\" must be 1-128 characters of A-Z a-z 0-9 . _ -"));
  }
  static const RE2 kLabel("[a-zA-Z_][a-zA-Z0-9_]*");
  for (const auto& [k, v] : c.labels()) {
    if (!RE2::FullMatch(k, kLabel)) {
      return absl::InvalidArgumentError(
          absl::StrCat("labels: \"", k, "\" is not a valid label name ([a-zA-Z_][a-zA-Z0-9_]*)"));
    }
    o.labels[k] = v;
  }
  if (!c.controlplane().empty()) o.controlplane = c.controlplane();
  if (!IsSet(c.token())) {
    return absl::InvalidArgumentError(
        "token: required, e.g. token: {file: /etc/vigie/agent.token} or {env: VIGIE_TOKEN} "
        "(make one with the Admin API's CreateToken)");
  }
  VIGIE_ASSIGN_OR_RETURN(o.token, ReadSecret("token", c.token()));
  VIGIE_ASSIGN_OR_RETURN(o.security, ClientSecurityFromConfig("tls", "controlplane", o.controlplane,
                                                              c.tls(), c.insecure()));
  VIGIE_ASSIGN_OR_RETURN(o.http_listen,
                         ListenAddress("http_listen", c.http_listen(), o.http_listen));
  VIGIE_ASSIGN_OR_RETURN(o.http_auth, HttpAuthFromConfig("http", o.http_listen, c.http()));
  VIGIE_ASSIGN_OR_RETURN(
      o.collect_interval,
      ParseConfigDuration("collect_interval", c.collect_interval(), o.collect_interval));
  VIGIE_ASSIGN_OR_RETURN(
      o.heartbeat_interval,
      ParseConfigDuration("heartbeat_interval", c.heartbeat_interval(), o.heartbeat_interval));
  if (o.collect_interval < absl::Milliseconds(100)) {
    return absl::InvalidArgumentError(absl::StrCat(
        "collect_interval: must be at least 100ms, got \"", c.collect_interval(), "\""));
  }
  if (o.heartbeat_interval < absl::Milliseconds(100)) {
    return absl::InvalidArgumentError(absl::StrCat(
        "heartbeat_interval: must be at least 100ms, got \"", c.heartbeat_interval(), "\""));
  }
  if (!c.procfs().empty()) o.paths.procfs = c.procfs();
  if (!c.sysfs().empty()) o.paths.sysfs = c.sysfs();
  if (!c.rootfs().empty()) o.paths.rootfs = c.rootfs();
  o.textfile_directory = c.textfile_directory();
  auto join_regex = [](const auto& list) {
    std::string r;
    for (const std::string& s : list) absl::StrAppend(&r, r.empty() ? "" : "|", "(", s, ")");
    return r;
  };
  o.fs_types_exclude = join_regex(c.filesystem_types_exclude());
  o.mount_points_exclude = join_regex(c.mount_points_exclude());
  for (const auto& [field, re] : {std::pair{"filesystem_types_exclude", &o.fs_types_exclude},
                                  std::pair{"mount_points_exclude", &o.mount_points_exclude}}) {
    RE2 compiled(*re, RE2::Quiet);
    if (!re->empty() && !compiled.ok()) {
      return absl::InvalidArgumentError(
          absl::StrCat(field, ": bad regular expression \"", *re, "\": ", compiled.error()));
    }
  }
  if (c.max_pending_messages() != 0) o.max_pending_messages = c.max_pending_messages();
  if (c.max_samples_per_batch() != 0) o.max_samples_per_batch = c.max_samples_per_batch();
  if (o.max_samples_per_batch > 10000) {
    return absl::InvalidArgumentError(
        absl::StrCat("max_samples_per_batch: at most 10000 (the control plane's limit), got ",
                     o.max_samples_per_batch));
  }
  VIGIE_ASSIGN_OR_RETURN(
      o.reconnect_backoff,
      BackoffFromConfig("reconnect_backoff", c.reconnect_backoff(), o.reconnect_backoff));
  return o;
}

Agent::Agent(AgentOptions options, prometheus::Registry* registry, const Clock* clock)
    : Runnable("agent"),
      options_(std::move(options)),
      clock_(clock),
      outbox_(options_.max_pending_messages),
      collect_errors_(prometheus::BuildCounter()
                          .Name("vigie_agent_collect_errors_total")
                          .Help("Collector runs that failed, by collector.")
                          .Register(*registry)),
      collections_(prometheus::BuildCounter()
                       .Name("vigie_agent_collections_total")
                       .Help("Collection rounds run.")
                       .Register(*registry)
                       .Add({})),
      collect_duration_(prometheus::BuildGauge()
                            .Name("vigie_agent_collect_duration_seconds")
                            .Help("Duration of the last collection round.")
                            .Register(*registry)
                            .Add({})),
      pending_(prometheus::BuildGauge()
                   .Name("vigie_agent_pending_messages")
                   .Help("Durable messages buffered, waiting for the control plane's Ack.")
                   .Register(*registry)
                   .Add({})),
      dropped_(prometheus::BuildGauge()
                   .Name("vigie_agent_dropped_messages")
                   .Help("Durable messages dropped since start because max_pending_messages "
                         "was exceeded.")
                   .Register(*registry)
                   .Add({})),
      last_sequence_(prometheus::BuildGauge()
                         .Name("vigie_agent_last_sequence")
                         .Help("Highest sequence number assigned to a durable message.")
                         .Register(*registry)
                         .Add({})),
      acked_sequence_(prometheus::BuildGauge()
                          .Name("vigie_agent_acked_sequence")
                          .Help("Highest sequence the control plane acknowledged as committed.")
                          .Register(*registry)
                          .Add({})),
      connected_(prometheus::BuildGauge()
                     .Name("vigie_agent_connected")
                     .Help("1 while a stream to the control plane is established.")
                     .Register(*registry)
                     .Add({})),
      connects_(prometheus::BuildCounter()
                    .Name("vigie_agent_stream_connects_total")
                    .Help("Streams established with the control plane.")
                    .Register(*registry)
                    .Add({})) {
  collectors_.push_back(NewCpuCollector(options_.paths));
  collectors_.push_back(NewMemoryCollector(options_.paths));
  collectors_.push_back(NewLoadCollector(options_.paths));
  collectors_.push_back(NewFilesystemCollector(options_.paths, options_.fs_types_exclude,
                                               options_.mount_points_exclude));
  if (!options_.textfile_directory.empty()) {
    collectors_.push_back(NewTextfileCollector(options_.textfile_directory, TextfileLimits{}));
  }
  for (const auto& c : collectors_) collect_errors_.Add({{"collector", c->name()}});

  StreamClientOptions so;
  so.target = options_.controlplane;
  so.security = options_.security;
  so.token = options_.token;
  so.backoff = options_.reconnect_backoff;
  so.hello.set_agent_id(options_.agent_id);
  so.hello.set_hostname(options_.hostname);
  so.hello.set_version(VIGIE_VERSION);
  for (const auto& [k, v] : options_.labels) (*so.hello.mutable_labels())[k] = v;
  so.on_connection_change = [this](bool up) {
    connected_.Set(up ? 1 : 0);
    if (up) connects_.Increment();
  };
  client_ = std::make_unique<StreamClient>(std::move(so), &outbox_);
}

Agent::~Agent() { Stop(); }

void Agent::CollectOnce() {
  const absl::Time start = clock_->Now();
  const int64_t now_ms = absl::ToUnixMillis(start);
  auto collection = std::make_shared<Collection>();
  for (const auto& c : collectors_) {
    Collection one;
    if (absl::Status s = c->Collect(now_ms, &one); !s.ok()) {
      collect_errors_.Add({{"collector", c->name()}}).Increment();
      log::Warn("collector failed", {{"collector", c->name()}, {"error", s}});
      continue;
    }
    collection->samples.insert(collection->samples.end(),
                               std::make_move_iterator(one.samples.begin()),
                               std::make_move_iterator(one.samples.end()));
    collection->info.merge(one.info);
  }
  // One round -> one or more batches of at most max_samples_per_batch.
  const auto& samples = collection->samples;
  for (size_t i = 0; i < samples.size(); i += options_.max_samples_per_batch) {
    v1::AgentMessage m;
    v1::MetricBatch* batch = m.mutable_metrics();
    size_t end = std::min(samples.size(), i + options_.max_samples_per_batch);
    batch->mutable_samples()->Reserve(static_cast<int>(end - i));
    for (size_t j = i; j < end; ++j) *batch->add_samples() = samples[j];
    outbox_.Add(std::move(m));
  }
  host_metrics_.Update(std::move(collection));
  collections_.Increment();
  collect_duration_.Set(absl::ToDoubleSeconds(absl::Now() - start));
  client_->Kick();
  UpdateGauges();
}

bool Agent::Drain(absl::Duration timeout) {
  const absl::Time deadline = absl::Now() + timeout;
  client_->Kick();
  while (outbox_.pending() > 0) {
    // Without a stream nothing can be acknowledged: do not hold up the exit.
    if (absl::Now() >= deadline || !client_->connected()) return false;
    absl::SleepFor(absl::Milliseconds(20));
  }
  return true;
}

void Agent::SendHeartbeat() {
  v1::Heartbeat hb;
  hb.set_timestamp_ms(absl::ToUnixMillis(clock_->Now()));
  hb.set_pending_messages(outbox_.pending());
  hb.set_dropped_messages(outbox_.dropped());
  client_->SendHeartbeat(hb);
  UpdateGauges();
}

void Agent::UpdateGauges() {
  pending_.Set(static_cast<double>(outbox_.pending()));
  dropped_.Set(static_cast<double>(outbox_.dropped()));
  last_sequence_.Set(static_cast<double>(outbox_.last_sequence()));
  acked_sequence_.Set(static_cast<double>(outbox_.acked_sequence()));
}

void Agent::Run() {
  // Wall-clock pacing on the real clock: the loop sleeps, so it does not use the injected one.
  absl::Time next_collect = absl::Now();
  absl::Time next_heartbeat = absl::Now() + options_.heartbeat_interval;
  while (!stopping()) {
    absl::Time now = absl::Now();
    if (now >= next_collect) {
      CollectOnce();
      next_collect += options_.collect_interval;
      if (next_collect < now) next_collect = now + options_.collect_interval;  // fell behind
    }
    if (now >= next_heartbeat) {
      SendHeartbeat();
      next_heartbeat = now + options_.heartbeat_interval;
    }
    UpdateGauges();
    if (!WaitFor(std::min(next_collect, next_heartbeat) - absl::Now())) break;
  }
}

}  // namespace vigie::agent
