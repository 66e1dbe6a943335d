#include "agent/checks/check_loop.h"

#include <algorithm>
#include <functional>

#include "absl/strings/str_cat.h"
#include "common/agent_message.h"
#include "common/log.h"

namespace vigie::agent::checks {
namespace {

// A run that outlives its timeout by this much is abandoned by the loop; the protocols' own
// timeouts (curl's, c-ares's) normally end it first, with a more precise message.
constexpr absl::Duration kGrace = absl::Milliseconds(250);

bool Failed(v1::CheckStatus s) {
  return s == v1::CHECK_STATUS_CRITICAL || s == v1::CHECK_STATUS_UNKNOWN ||
         s == v1::CHECK_STATUS_UNSPECIFIED;
}

}  // namespace

CheckLoop::CheckLoop(CheckLoopOptions options, prometheus::Registry* registry)
    : Runnable("checks"),
      options_(std::move(options)),
      latest_(options_.checks.size()),
      runs_(prometheus::BuildCounter()
                .Name("vigie_agent_check_runs_total")
                .Help("Check runs finished, by their own outcome (ok, warning, critical, "
                      "unknown).")
                .Register(*registry)),
      running_gauge_(prometheus::BuildGauge()
                         .Name("vigie_agent_checks_running")
                         .Help("Check runs in progress.")
                         .Register(*registry)
                         .Add({})),
      waiting_gauge_(prometheus::BuildGauge()
                         .Name("vigie_agent_checks_waiting")
                         .Help("Checks due but waiting for a free slot (max_concurrent_checks).")
                         .Register(*registry)
                         .Add({})),
      skipped_(prometheus::BuildCounter()
                   .Name("vigie_agent_check_runs_skipped_total")
                   .Help("Scheduled runs skipped because the previous run of the same check was "
                         "still running or waiting for a slot.")
                   .Register(*registry)
                   .Add({})) {
  for (const char* r : {"ok", "warning", "critical", "unknown"}) runs_.Add({{"result", r}});
  const absl::Time now = absl::Now();
  for (CheckSpec& spec : options_.checks) {
    Check& c = checks_.emplace_back();
    c.spec = std::move(spec);
    // Spread first runs (stable per name, like Prometheus's scrape offsets) over at most 5s,
    // so a thousand checks do not all start together and a new agent reports soon.
    const int64_t spread_ms =
        absl::ToInt64Milliseconds(std::min(c.spec.interval, absl::Seconds(5)));
    c.next_due = now + absl::Milliseconds(static_cast<int64_t>(
                           std::hash<std::string>()(c.spec.name) % static_cast<size_t>(spread_ms)));
  }
  options_.checks.clear();
}

CheckLoop::~CheckLoop() {
  Stop();
  for (Check& c : checks_) c.probe.reset();  // before the CurlMulti and the loop they use
  curl_.reset();
}

absl::Status CheckLoop::Init() {
  if (absl::Status s = loop_.Init(); !s.ok()) return s;
  curl_ = std::make_unique<CurlMulti>(&loop_);
  env_.loop = &loop_;
  env_.curl = curl_.get();
  env_.hostname = options_.hostname;
  return absl::OkStatus();
}

absl::Status CheckLoop::RunNow(const std::string& name, const std::string& command_id) {
  for (size_t i = 0; i < checks_.size(); ++i) {
    if (checks_[i].spec.name != name) continue;
    {
      MutexLock lock(&mu_);
      if (requested_.size() >= 10000) {
        return absl::ResourceExhaustedError("too many check runs requested at once");
      }
      requested_.emplace_back(i, command_id);
    }
    Wake();
    return absl::OkStatus();
  }
  return absl::NotFoundError(absl::StrCat("no check named \"", name, "\""));
}

void CheckLoop::StartDue(absl::Time now) {
  {
    MutexLock lock(&mu_);
    for (auto& [i, id] : requested_) {
      Check& c = checks_[i];
      c.run_now = true;
      if (!id.empty() && c.asked_by.size() < 64) c.asked_by.push_back(std::move(id));
    }
    requested_.clear();
  }
  for (size_t i = 0; i < checks_.size(); ++i) {
    Check& c = checks_[i];
    const bool scheduled = now >= c.next_due;
    if (!scheduled && !c.run_now) continue;
    if (scheduled) {
      // Keep the check's phase: the next run is the next multiple of the interval.
      while (c.next_due <= now) c.next_due += c.spec.interval;
    }
    const bool asked = c.run_now;
    c.run_now = false;
    if (c.probe != nullptr || c.queued) {
      if (!asked) skipped_.Increment();
      // Asked during a run: run again after it, so the answer is not older than the request.
      if (asked && c.probe != nullptr) c.run_now = true;
      continue;
    }
    c.queued = true;
    waiting_.push_back(i);
  }
  while (running_ < options_.max_concurrent && !waiting_.empty()) {
    const size_t i = waiting_.front();
    waiting_.pop_front();
    checks_[i].queued = false;
    StartRun(i);
  }
}

void CheckLoop::StartRun(size_t i) {
  Check& c = checks_[i];
  c.started = absl::Now();
  c.deadline = c.started + c.spec.timeout;
  c.running_for = std::move(c.asked_by);
  c.asked_by.clear();
  c.finished = false;
  c.probe = Protocols().at(c.spec.parsed.scheme).make(c.spec, &env_, c.deadline);
  ++running_;
  c.probe->Start([this, i](Outcome o) {
    Check& done = checks_[i];
    done.outcome = std::move(o);
    done.finished = true;
  });
}

void CheckLoop::FinishRun(size_t i, Outcome outcome, std::vector<v1::CheckResult>* results) {
  Check& c = checks_[i];
  const absl::Time end = absl::Now();
  c.probe.reset();
  c.finished = false;
  --running_;
  const v1::CheckStatus observed = outcome.status;
  std::string message = std::move(outcome.message);
  if (Failed(observed)) {
    ++c.consecutive_failures;
    if (c.consecutive_failures >= c.spec.failures) {
      c.state = observed;
    } else {
      absl::StrAppend(&message, " (", c.consecutive_failures, " of ", c.spec.failures,
                      " failures before the check turns ", CheckStatusName(observed), ")");
    }
  } else {
    c.consecutive_failures = 0;
    c.state = observed;
  }
  runs_.Add({{"result", CheckStatusName(observed)}}).Increment();
  v1::CheckResult& r = results->emplace_back();
  r.set_name(c.spec.name);
  r.set_target(c.spec.target);
  r.set_status(c.state);
  r.set_observed(observed);
  r.set_consecutive_failures(static_cast<uint32_t>(c.consecutive_failures));
  r.set_latency_seconds(absl::ToDoubleSeconds(end - c.started));
  r.set_message(SafeText(message, 1024));
  r.set_timestamp_ms(absl::ToUnixMillis(end));
  for (const auto& [k, v] : c.spec.labels) (*r.mutable_labels())[k] = v;
  for (std::string& id : c.running_for) r.add_command_ids(std::move(id));
  c.running_for.clear();

  MutexLock lock(&mu_);
  Latest& l = latest_[i];
  l.valid = true;
  l.state = c.state;
  l.success = observed == v1::CHECK_STATUS_OK || observed == v1::CHECK_STATUS_WARNING;
  l.duration_seconds = r.latency_seconds();
  l.outcome = std::move(outcome);
}

absl::Time CheckLoop::NextWake() const {
  absl::Time t = curl_->NextTimer();
  for (const Check& c : checks_) {
    if (c.probe != nullptr && c.finished) return absl::InfinitePast();  // to collect now
    if (c.probe != nullptr) {
      t = std::min({t, c.deadline + kGrace, c.probe->NextTimer()});
    } else if (!c.queued) {
      t = std::min(t, c.next_due);
    }
  }
  return t;
}

void CheckLoop::Run() {
  std::vector<v1::CheckResult> results;
  while (!stopping()) {
    passes_.fetch_add(1, std::memory_order_relaxed);
    absl::Time now = absl::Now();
    StartDue(now);
    // Timers: curl's, the probes' own, and the loop's hard deadlines.
    if (curl_->NextTimer() <= now) curl_->OnTimer();
    for (size_t i = 0; i < checks_.size(); ++i) {
      Check& c = checks_[i];
      if (c.probe == nullptr || c.finished) continue;
      if (c.deadline + kGrace <= now) {
        Outcome o;
        o.status = v1::CHECK_STATUS_CRITICAL;
        o.message = absl::StrCat("timeout after ", absl::FormatDuration(c.spec.timeout), " ",
                                 c.probe->Phase());
        c.outcome = std::move(o);
        c.finished = true;
      } else if (c.probe->NextTimer() <= now) {
        c.probe->OnTimer();
      }
    }
    bool readable = false;
    const absl::Duration wait = std::max(absl::ZeroDuration(), NextWake() - absl::Now());
    if (!WaitForFd(wait, loop_.fd(), &readable)) break;
    if (readable) loop_.Poll(absl::Now());  // dispatch what is ready; does not wait
    // Probes are destroyed here, never inside their own callbacks.
    for (size_t i = 0; i < checks_.size(); ++i) {
      if (checks_[i].probe != nullptr && checks_[i].finished) {
        FinishRun(i, std::move(checks_[i].outcome), &results);
      }
    }
    running_gauge_.Set(static_cast<double>(running_));
    waiting_gauge_.Set(static_cast<double>(waiting_.size()));
    if (!results.empty()) {
      if (options_.on_results) options_.on_results(std::move(results));
      results.clear();
    }
  }
}

void CheckLoop::AppendMetrics(int64_t now_ms, Collection* out) const {
  MutexLock lock(&mu_);
  for (size_t i = 0; i < checks_.size(); ++i) {
    const Latest& l = latest_[i];
    if (!l.valid) continue;
    std::map<std::string, std::string> labels = checks_[i].spec.labels;
    labels["check"] = checks_[i].spec.name;
    labels["target"] = checks_[i].spec.target;
    out->Add("probe_success", labels, l.success ? 1 : 0, now_ms, MetricType::kGauge,
             "Whether the check's last run succeeded (blackbox_exporter's name).");
    out->Add("probe_duration_seconds", labels, l.duration_seconds, now_ms, MetricType::kGauge,
             "How long the check's last run took.");
    out->Add("vigie_check_status", labels, CheckStatusValue(l.state), now_ms, MetricType::kGauge,
             "The check's state: 0 OK, 1 WARNING, 2 CRITICAL, 3 UNKNOWN.");
    for (const auto& [name, value] : l.outcome.metrics) {
      out->Add(name, labels, value, now_ms, MetricType::kGauge,
               "A detail of the check's last run (blackbox_exporter's name).");
    }
    for (const Outcome::LabeledMetric& m : l.outcome.labeled) {
      std::map<std::string, std::string> with = labels;
      with[m.label.first] = m.label.second;
      out->Add(m.name, with, m.value, now_ms, MetricType::kGauge,
               "Performance data of the check's plugin, in base units.");
    }
    for (const auto& [name, label] : l.outcome.info) {
      std::map<std::string, std::string> with = labels;
      with[label.first] = label.second;
      out->Add(name, with, 1, now_ms, MetricType::kGauge,
               "A detail of the check's last run, as a label (blackbox_exporter's name).");
    }
  }
}

}  // namespace vigie::agent::checks
