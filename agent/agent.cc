#include "agent/agent.h"

#include <unistd.h>

#include <filesystem>

#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "agent/services/cgroup.h"
#include "common/agent_message.h"
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
  HostPaths& paths = o.collectors.paths;
  if (!c.procfs().empty()) paths.procfs = c.procfs();
  if (!c.sysfs().empty()) paths.sysfs = c.sysfs();
  if (!c.rootfs().empty()) paths.rootfs = c.rootfs();
  o.collectors.textfile_directory = c.textfile_directory();
  auto join_regex = [](const auto& list) {
    std::string r;
    for (const std::string& s : list) absl::StrAppend(&r, r.empty() ? "" : "|", "(", s, ")");
    return r;
  };
  o.collectors.fs_types_exclude = join_regex(c.filesystem_types_exclude());
  o.collectors.mount_points_exclude = join_regex(c.mount_points_exclude());
  for (const auto& [field, re] :
       {std::pair{"filesystem_types_exclude", &o.collectors.fs_types_exclude},
        std::pair{"mount_points_exclude", &o.collectors.mount_points_exclude}}) {
    RE2 compiled(*re, RE2::Quiet);
    if (!re->empty() && !compiled.ok()) {
      return absl::InvalidArgumentError(
          absl::StrCat(field, ": bad regular expression \"", *re, "\": ", compiled.error()));
    }
  }
  for (const auto& [name, on] : c.collectors()) o.collector_switches[name] = on;
  VIGIE_RETURN_IF_ERROR(ValidateCollectorSwitches(o.collector_switches));
  o.collector_timeout = std::min(o.collector_timeout, o.collect_interval);
  VIGIE_ASSIGN_OR_RETURN(
      o.collector_timeout,
      ParseConfigDuration("collector_timeout", c.collector_timeout(), o.collector_timeout));
  if (o.collector_timeout < absl::Milliseconds(10) || o.collector_timeout > o.collect_interval) {
    return absl::InvalidArgumentError(absl::StrCat(
        "collector_timeout: must be between 10ms and collect_interval (",
        absl::FormatDuration(o.collect_interval), "), got \"", c.collector_timeout(), "\""));
  }
  if (c.max_pending_messages() != 0) o.max_pending_messages = c.max_pending_messages();
  if (c.max_samples_per_batch() != 0) o.limits.max_samples_per_batch = c.max_samples_per_batch();
  if (o.limits.max_samples_per_batch > 100000) {
    return absl::InvalidArgumentError(
        absl::StrCat("max_samples_per_batch: at most 100000, got ", c.max_samples_per_batch()));
  }
  if (c.max_message_bytes() != 0) o.limits.max_message_bytes = c.max_message_bytes();
  if (o.limits.max_message_bytes < 1024 || o.limits.max_message_bytes > (64u << 20)) {
    return absl::InvalidArgumentError(absl::StrCat(
        "max_message_bytes: must be between 1024 and 67108864, got ", c.max_message_bytes()));
  }
  o.spool.directory = c.spool().directory();
  if (c.spool().max_bytes() != 0) o.spool.max_bytes = c.spool().max_bytes();
  if (o.spool.max_bytes < 4 * o.limits.max_message_bytes) {
    return absl::InvalidArgumentError(
        absl::StrCat("spool.max_bytes: must be at least 4 x max_message_bytes (",
                     4 * o.limits.max_message_bytes, "), got ", o.spool.max_bytes));
  }
  if (c.spool().fsync().empty() || c.spool().fsync() == "always") {
    o.spool.fsync = true;
  } else if (c.spool().fsync() == "never") {
    o.spool.fsync = false;
  } else {
    return absl::InvalidArgumentError(absl::StrCat(
        "spool.fsync: must be \"always\" or \"never\", got \"", c.spool().fsync(), "\""));
  }
  VIGIE_ASSIGN_OR_RETURN(o.checks, checks::CheckSpecsFromConfig(c.checks()));
  if (c.max_concurrent_checks() != 0) o.max_concurrent_checks = c.max_concurrent_checks();
  VIGIE_ASSIGN_OR_RETURN(o.services, services::ServiceSpecsFromConfig(c.services()));
  if (!c.service_state_directory().empty()) {
    if (c.service_state_directory()[0] != '/') {
      return absl::InvalidArgumentError(absl::StrCat("service_state_directory: \"",
                                                     c.service_state_directory(),
                                                     "\" must be an absolute path"));
    }
    o.service_state_directory = c.service_state_directory();
  }
  o.stop_services_on_exit = c.stop_services_on_exit();
  if (c.service_cgroups() == "off") {
    o.service_cgroups = false;
  } else if (!c.service_cgroups().empty() && c.service_cgroups() != "auto") {
    return absl::InvalidArgumentError(
        absl::StrCat("service_cgroups: must be auto or off, got \"", c.service_cgroups(), "\""));
  }
  {
    std::error_code ec;
    const std::filesystem::path self = std::filesystem::read_symlink("/proc/self/exe", ec);
    o.service_shim_path = (self.parent_path() / "vigie-service-shim").string();
  }
  if (o.max_concurrent_checks > 10000) {
    return absl::InvalidArgumentError(
        absl::StrCat("max_concurrent_checks: at most 10000, got ", c.max_concurrent_checks()));
  }
  VIGIE_ASSIGN_OR_RETURN(
      o.reconnect_backoff,
      BackoffFromConfig("reconnect_backoff", c.reconnect_backoff(), o.reconnect_backoff));
  return o;
}

namespace {

OutboxOptions MakeOutboxOptions(const AgentOptions& o, Spool* spool) {
  OutboxOptions out;
  out.max_pending = o.max_pending_messages;
  out.max_pending_bytes = o.spool.max_bytes;
  out.limits = o.limits;
  out.spool = spool;
  return out;
}

}  // namespace

Agent::Agent(AgentOptions options, prometheus::Registry* registry, const Clock* clock,
             std::unique_ptr<Spool> spool, Spool::Recovered recovered)
    : Runnable("agent"),
      options_(std::move(options)),
      clock_(clock),
      spool_(std::move(spool)),
      outbox_(MakeOutboxOptions(options_, spool_.get())),
      // One worker runs a round in a few milliseconds; replacements appear only for stuck calls.
      runner_(NewCollectors(options_.collectors, options_.collector_switches),
              options_.collector_timeout, /*workers=*/1),
      heartbeat_ms_(absl::ToInt64Milliseconds(options_.heartbeat_interval)),
      collect_errors_(prometheus::BuildCounter()
                          .Name("vigie_agent_collect_errors_total")
                          .Help("Collector runs that failed or were abandoned at their deadline, "
                                "by collector.")
                          .Register(*registry)),
      samples_dropped_(prometheus::BuildCounter()
                           .Name("vigie_agent_samples_dropped_total")
                           .Help("Samples dropped at collection because the control plane "
                                 "would refuse them, by collector and reason.")
                           .Register(*registry)),
      rejected_(prometheus::BuildCounter()
                    .Name("vigie_agent_messages_rejected_total")
                    .Help("Durable messages the control plane refused (Reject) and the agent "
                          "dropped.")
                    .Register(*registry)
                    .Add({})),
      pending_bytes_(prometheus::BuildGauge()
                         .Name("vigie_agent_pending_bytes")
                         .Help("Serialized bytes of the durable messages waiting for an Ack.")
                         .Register(*registry)
                         .Add({})),
      spool_bytes_(prometheus::BuildGauge()
                       .Name("vigie_agent_spool_bytes")
                       .Help("Bytes in the on-disk spool (0 without a spool).")
                       .Register(*registry)
                       .Add({})),
      spool_errors_(prometheus::BuildGauge()
                        .Name("vigie_agent_spool_write_errors")
                        .Help("Spool writes that failed since start (the messages were kept in "
                              "memory).")
                        .Register(*registry)
                        .Add({})),
      spool_corrupt_(prometheus::BuildGauge()
                         .Name("vigie_agent_spool_corrupt_records")
                         .Help("Damaged spool regions (torn or flipped records, bad headers) "
                               "skipped when the agent started.")
                         .Register(*registry)
                         .Add({})),
      samples_(prometheus::BuildCounter()
                   .Name("vigie_agent_samples_total")
                   .Help("Samples collected and queued for the control plane.")
                   .Register(*registry)
                   .Add({})),
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
  spool_corrupt_.Set(static_cast<double>(recovered.corrupt));  // known at start, fixed
  outbox_.Restore(std::move(recovered));
  if (!options_.collectors.textfile_directory.empty()) {
    textfile_watch_ = std::make_unique<DirectoryWatch>(options_.collectors.textfile_directory);
    if (absl::Status s = textfile_watch_->Init(); !s.ok()) {
      log::Warn("textfiles are read every interval only", {{"error", s}});
      textfile_watch_.reset();
    }
  }
  for (const std::string& c : runner_.names()) collect_errors_.Add({{"collector", c}});

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
  so.on_welcome = [this](const v1::Welcome& w) { OnWelcome(w); };
  so.on_reject = [this](const v1::Reject& r, bool held) { OnReject(r, held); };
  so.on_command = [this](const v1::Command& c) { OnCommand(c); };
  so.heartbeat_interval = [this] { return heartbeat_interval(); };
  so.make_heartbeat = [this] { return MakeHeartbeat(); };
  client_ = std::make_unique<StreamClient>(std::move(so), &outbox_);

  if (!options_.checks.empty()) {
    checks::CheckLoopOptions co;
    co.checks = options_.checks;
    co.max_concurrent = options_.max_concurrent_checks;
    co.hostname = options_.hostname;
    co.on_results = [this](std::vector<v1::CheckResult> r) { OnCheckResults(std::move(r)); };
    checks_ = std::make_unique<checks::CheckLoop>(std::move(co), registry);
    if (absl::Status s = checks_->Init(); !s.ok()) {
      log::Error("service checks cannot run", {{"error", s}});
      checks_.reset();
    }
  }
  {  // always: a SIGHUP may add services, and leftovers of removed ones are stopped
    services::SupervisorOptions so;
    so.services = options_.services;
    so.state_directory = options_.service_state_directory;
    so.stop_on_exit = options_.stop_services_on_exit;
    so.shim_path = options_.service_shim_path;
    if (options_.service_cgroups) {  // also for services a SIGHUP adds later
      absl::StatusOr<std::string> root = services::PrepareCgroupRoot();
      if (root.ok()) {
        so.cgroup_root = *root;
      } else {
        log::Info("services run without control groups (process groups only)",
                  {{"why", root.status()}});
      }
    }
    so.on_event = [this](v1::ServiceEvent e) { OnServiceEvent(std::move(e)); };
    supervisor_ = std::make_unique<services::Supervisor>(std::move(so));
    if (absl::Status s = supervisor_->Init(); !s.ok()) {
      log::Error("supervised services cannot run", {{"error", s}});
      supervisor_.reset();
    }
  }
}

Agent::~Agent() {
  Stop();
  if (checks_) checks_->Stop();
  if (supervisor_) supervisor_->Stop();
}

absl::Status Agent::ReloadServices(std::vector<services::ServiceSpec> services) {
  if (!supervisor_) {
    return absl::FailedPreconditionError(
        "supervised services cannot run (see the error at start-up); restart the agent");
  }
  supervisor_->Reload(std::move(services));
  return absl::OkStatus();
}

void Agent::OnServiceEvent(v1::ServiceEvent event) {
  {
    MutexLock lock(&results_mu_);
    if (events_.size() >= 10000) {
      samples_dropped_.Add({{"collector", "services"}, {"reason", "events_backlog"}}).Increment();
      return;
    }
    events_.push_back(std::move(event));
  }
  Wake();
}

void Agent::OnCheckResults(std::vector<v1::CheckResult> results) {
  // Bounded while this thread is slow (a stalled disk): beyond it, results wait for their
  // check's next run, counted.
  constexpr size_t kMaxResults = 10000;
  {
    MutexLock lock(&results_mu_);
    for (v1::CheckResult& r : results) {
      if (results_.size() >= kMaxResults) {
        samples_dropped_.Add({{"collector", "checks"}, {"reason", "results_backlog"}}).Increment();
        continue;
      }
      results_.push_back(std::move(r));
    }
  }
  Wake();
}

void Agent::SendCheckResults() {
  std::vector<v1::CheckResult> results;
  std::vector<v1::ServiceEvent> events;
  {
    MutexLock lock(&results_mu_);
    results.swap(results_);
    events.swap(events_);
  }
  for (v1::ServiceEvent& e : events) {
    v1::AgentMessage m;
    *m.mutable_service_event() = std::move(e);
    outbox_.Add(std::move(m));
  }
  if (!events.empty() && results.empty()) {
    client_->Kick();
    UpdateGauges();
  }
  if (results.empty()) return;
  const SendLimits limits = outbox_.limits();
  v1::AgentMessage m;
  size_t bytes = 0;
  auto flush = [&] {
    if (m.checks().results_size() == 0) return;
    outbox_.Add(std::move(m));
    m = v1::AgentMessage();
    bytes = 0;
  };
  for (v1::CheckResult& r : results) {
    const size_t size = r.ByteSizeLong() + 8;  // with its tag and length
    if (static_cast<size_t>(m.checks().results_size()) >= limits.max_samples_per_batch ||
        bytes + size + 16 > limits.max_message_bytes) {
      flush();
    }
    bytes += size;
    *m.mutable_checks()->add_results() = std::move(r);
  }
  flush();
  client_->Kick();
  UpdateGauges();
}

void Agent::OnCommand(const v1::Command& c) {
  if (c.has_run_check()) {
    absl::Status s = checks_ ? checks_->RunNow(c.run_check().name(), c.id())
                             : absl::NotFoundError("this agent has no checks");
    log::Info("run check now", {{"id", c.id()}, {"check", c.run_check().name()}, {"result", s}});
    if (!s.ok()) {
      // Answered at once, so the caller is not left waiting for its timeout.
      v1::CheckResult r;
      r.set_name(c.run_check().name());
      r.set_status(v1::CHECK_STATUS_UNKNOWN);
      r.set_observed(v1::CHECK_STATUS_UNKNOWN);
      r.set_message(SafeText(absl::StrCat("not run: ", s.message()), 1024));
      r.set_timestamp_ms(absl::ToUnixMillis(absl::Now()));
      r.add_command_ids(c.id());
      OnCheckResults({std::move(r)});
    }
    return;
  }
  if (c.has_restart_service()) {
    // Answered by the STARTED event of the restart. A service this agent does not have gets no
    // answer (the control plane asks only for services the agent reported).
    absl::Status s = supervisor_ ? supervisor_->Restart(c.restart_service().name(), c.id())
                                 : absl::NotFoundError("this agent supervises no services");
    log::Info("restart service",
              {{"id", c.id()}, {"service", c.restart_service().name()}, {"result", s}});
    return;
  }
  log::Info("command received (not supported in this version)", {{"id", c.id()}});
}

void Agent::CollectOnce(const std::string& only) {
  const absl::Time start = absl::Now();
  const int64_t now_ms = absl::ToUnixMillis(clock_->Now());
  std::vector<CollectorResult> results = runner_.RunRound(now_ms, only);
  const SendLimits limits = outbox_.limits();
  SampleLimits sample_limits;
  sample_limits.max_labels = limits.max_labels_per_sample;
  sample_limits.now_ms = now_ms;

  std::vector<v1::Sample> samples;
  samples.reserve(last_round_samples_ + 64);  // no regrowth (and moves) in a steady state
  auto snapshot = std::make_shared<HostSnapshot>();
  Collection scrape;  // node_scrape_collector_* for this round
  for (CollectorResult& r : results) {
    const bool ok = r.status.ok();
    scrape.Add("node_scrape_collector_success", {{"collector", r.collector}}, ok ? 1 : 0, now_ms,
               MetricType::kGauge, "node_exporter: Whether a collector succeeded.");
    scrape.Add("node_scrape_collector_duration_seconds", {{"collector", r.collector}},
               absl::ToDoubleSeconds(r.duration), now_ms, MetricType::kGauge,
               "node_exporter: Duration of a collector scrape.");
    if (!ok) {
      collect_errors_.Add({{"collector", r.collector}}).Increment();
      LogOnce(r.collector, std::string(r.status.message()));
      continue;
    }
    LogOnce(r.collector, "");
    // The control plane's own rules, applied here so a bad sample never reaches the stream.
    for (v1::Sample& s : r.collection.samples) {
      const char* reason = "";
      if (absl::Status v = ValidateSample(s, sample_limits, "sample", &reason); !v.ok()) {
        samples_dropped_.Add({{"collector", r.collector}, {"reason", reason}}).Increment();
        LogOnce(absl::StrCat(r.collector, "/", reason),
                absl::StrCat(v.message(),
                             " (sample dropped; further ones are only counted in "
                             "vigie_agent_samples_dropped_total)"));
        continue;
      }
      samples.push_back(std::move(s));
    }
    snapshot->info.merge(r.collection.info);
  }
  if (checks_ && only.empty()) {
    // The checks' latest results, as metrics (probe_success, ...), go in the same batches.
    Collection probes;
    checks_->AppendMetrics(now_ms, &probes);
    for (v1::Sample& s : probes.samples) {
      if (!ValidateSample(s, sample_limits, "sample").ok()) {
        samples_dropped_.Add({{"collector", "checks"}, {"reason", "invalid"}}).Increment();
        continue;
      }
      samples.push_back(std::move(s));
    }
    snapshot->info.merge(probes.info);
  }
  if (supervisor_ && only.empty()) {
    Collection services;
    supervisor_->AppendMetrics(now_ms, &services);
    for (v1::Sample& s : services.samples) {
      if (!ValidateSample(s, sample_limits, "sample").ok()) {
        samples_dropped_.Add({{"collector", "services"}, {"reason", "invalid"}}).Increment();
        continue;
      }
      samples.push_back(std::move(s));
    }
    snapshot->info.merge(services.info);
  }
  for (v1::Sample& s : scrape.samples) samples.push_back(std::move(s));
  snapshot->info.merge(scrape.info);
  if (only.empty()) last_round_samples_ = samples.size();
  DropCounts drops;
  std::vector<size_t> sizes;
  std::vector<v1::AgentMessage> batches = BuildBatches(std::move(samples), limits, &drops, &sizes);
  for (const auto& [reason, n] : drops) {
    samples_dropped_.Add({{"collector", "batching"}, {"reason", reason}})
        .Increment(static_cast<double>(n));
  }
  for (size_t i = 0; i < batches.size(); ++i) {
    samples_.Increment(batches[i].metrics().samples_size());
    snapshot->batches.push_back(outbox_.Add(std::move(batches[i]), sizes[i]));
  }
  if (only.empty()) {
    host_metrics_.Update(std::move(snapshot));
    collections_.Increment();
    collect_duration_.Set(absl::ToDoubleSeconds(absl::Now() - start));
  }
  client_->Kick();
  UpdateGauges();
}

void Agent::LogOnce(const std::string& key, const std::string& message) {
  {
    MutexLock lock(&log_mu_);
    auto it = logged_.find(key);
    if (message.empty()) {
      if (it != logged_.end()) logged_.erase(it);
      return;
    }
    if (it != logged_.end() && it->second == message) return;
    if (logged_.size() >= 1024) logged_.clear();  // bounded; at worst a line is logged again
    logged_[key] = message;
  }
  log::Warn("collection problem", {{"source", key}, {"error", message}});
}

void Agent::OnWelcome(const v1::Welcome& w) {
  if (w.heartbeat_interval_seconds() > 0) {
    heartbeat_ms_ = int64_t{w.heartbeat_interval_seconds()} * 1000;
  }
  const SendLimits l = outbox_.limits();
  if (!(l == options_.limits)) {
    log::Info("control plane limits are below the agent's; batches are built within them",
              {{"max_samples_per_batch", l.max_samples_per_batch},
               {"max_message_bytes", l.max_message_bytes},
               {"max_labels_per_sample", l.max_labels_per_sample}});
  }
}

void Agent::OnReject(const v1::Reject& r, bool held) {
  if (held) rejected_.Increment();
  log::Warn("control plane refused a message; dropped it",
            {{"sequence", r.sequence()}, {"reason", r.reason()}});
}

absl::Duration Agent::heartbeat_interval() const {
  return absl::Milliseconds(heartbeat_ms_.load());
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

v1::Heartbeat Agent::MakeHeartbeat() {
  v1::Heartbeat hb;
  hb.set_timestamp_ms(absl::ToUnixMillis(clock_->Now()));
  hb.set_pending_messages(outbox_.pending());
  hb.set_dropped_messages(outbox_.dropped());
  UpdateGauges();
  return hb;
}

void Agent::UpdateGauges() {
  pending_.Set(static_cast<double>(outbox_.pending()));
  pending_bytes_.Set(static_cast<double>(outbox_.pending_bytes()));
  spool_bytes_.Set(static_cast<double>(outbox_.spool_bytes()));
  spool_errors_.Set(static_cast<double>(outbox_.spool_errors()));
  dropped_.Set(static_cast<double>(outbox_.dropped()));
  last_sequence_.Set(static_cast<double>(outbox_.last_sequence()));
  acked_sequence_.Set(static_cast<double>(outbox_.acked_sequence()));
}

void Agent::Run() {
  if (checks_) checks_->Start();
  if (supervisor_) supervisor_->Start();
  // Wall-clock pacing on the real clock: the loop sleeps, so it does not use the injected one.
  absl::Time next_collect = absl::Now();
  bool textfile_changed = false;
  while (!stopping()) {
    SendCheckResults();
    absl::Time now = absl::Now();
    if (now >= next_collect) {
      textfile_changed = false;  // a full round reads the textfiles too
      CollectOnce();
      next_collect += options_.collect_interval;
      if (next_collect < now) next_collect = now + options_.collect_interval;  // fell behind
    } else if (textfile_changed) {
      // A writer usually renames a finished file into place; let a burst of changes settle.
      if (!WaitFor(absl::Milliseconds(100))) break;
      if (textfile_watch_) textfile_watch_->Drain([](const std::string&) {});
      textfile_changed = false;
      CollectOnce("textfile");
    }
    UpdateGauges();
    if (!textfile_watch_) {
      if (!WaitFor(next_collect - absl::Now())) break;
      continue;
    }
    bool readable = false;
    if (!WaitForFd(next_collect - absl::Now(), textfile_watch_->fd(), &readable)) break;
    if (readable) {
      textfile_watch_->Drain([&](const std::string& file) {
        if (file.empty() || absl::EndsWith(file, ".prom")) textfile_changed = true;
      });
    }
  }
  if (checks_) checks_->Stop();
  // Leaves the services to the next agent, or (stop_services_on_exit) stops them: their last
  // events go too.
  if (supervisor_) supervisor_->Stop();
  SendCheckResults();  // the last ones, before Drain()
}

}  // namespace vigie::agent
