#include "controlplane/rule_engine.h"

#include <fnmatch.h>

#include <algorithm>
#include <cmath>
#include <set>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "common/mutex.h"
#include "common/status.h"
#include "common/yaml_config.h"
#include "kainjow/mustache.hpp"
#include "re2/re2.h"

namespace vigie::controlplane {

struct AnnotationTemplates {
  Mutex mu;  // kainjow renders through non-const members
  std::map<std::string, std::unique_ptr<kainjow::mustache::mustache>> by_name ABSL_GUARDED_BY(mu);
};

namespace {

kainjow::mustache::data TemplateData(const Rule& r,
                                     const std::map<std::string, std::string>& labels,
                                     double value) {
  kainjow::mustache::data d;
  d.set("value", absl::StrCat(value));
  d.set("rule", r.name);
  d.set("severity", r.severity);
  kainjow::mustache::data l;
  for (const auto& [k, v] : labels) l.set(k, v);
  d.set("labels", l);
  return d;
}

bool Holds(Op op, double v, double t) {
  switch (op) {
    case Op::kGt:
      return v > t;
    case Op::kGe:
      return v >= t;
    case Op::kLt:
      return v < t;
    case Op::kLe:
      return v <= t;
    case Op::kEq:
      return v == t;
    case Op::kNe:
      return v != t;
  }
  return false;
}

bool Matches(const Rule& r, const v1::Sample& s) {
  if (s.name() != r.metric) return false;
  if (!r.name_globs.empty()) {
    auto name = s.labels().find(r.glob_label);
    if (name == s.labels().end()) return false;
    bool any = false;
    for (const std::string& glob : r.name_globs) {
      any = any || fnmatch(glob.c_str(), name->second.c_str(), 0) == 0;
    }
    if (!any) return false;
  }
  for (const auto& [k, want] : r.matchers) {
    auto it = s.labels().find(k);
    const std::string& have = it == s.labels().end() ? std::string() : it->second;
    if (have != want) return false;
  }
  return true;
}

}  // namespace

namespace {

// The check a transition is about, if its rule is on kCheckStatusMetric.
const std::string* CheckOf(const std::vector<Rule>& rules, const Transition& t) {
  auto rule =
      std::find_if(rules.begin(), rules.end(), [&](const Rule& r) { return r.name == t.rule; });
  if (rule == rules.end() || rule->metric != kCheckStatusMetric) return nullptr;
  auto check = t.labels.find("check");
  return check == t.labels.end() ? nullptr : &check->second;
}

}  // namespace

void AttachCheckMessages(const std::vector<Rule>& rules,
                         const std::map<std::string, std::string>& messages,
                         std::vector<Transition>* transitions) {
  if (messages.empty()) return;
  for (Transition& t : *transitions) {
    const std::string* check = CheckOf(rules, t);
    if (check == nullptr || t.annotations.count("message") > 0) continue;
    auto message = messages.find(*check);
    if (message != messages.end()) t.annotations["message"] = message->second;
  }
}

std::vector<std::string> ChecksLackingMessages(const std::vector<Rule>& rules,
                                               const std::vector<Transition>& transitions) {
  std::set<std::string> out;
  for (const Transition& t : transitions) {
    const std::string* check = CheckOf(rules, t);
    if (check != nullptr && t.annotations.count("message") == 0) out.insert(*check);
  }
  return {out.begin(), out.end()};
}

std::map<std::string, std::string> RenderAnnotations(
    const Rule& rule, const std::map<std::string, std::string>& labels, double value) {
  if (!rule.templates) return rule.annotations;
  std::map<std::string, std::string> out = rule.annotations;
  const kainjow::mustache::data data = TemplateData(rule, labels, value);
  MutexLock lock(&rule.templates->mu);
  for (auto& [name, tmpl] : rule.templates->by_name) out[name] = tmpl->render(data);
  return out;
}

absl::StatusOr<Rule> RuleFromProto(const v1::Rule& p, const std::string& field) {
  static const RE2 kName("[A-Za-z0-9._:-]{1,128}");
  static const RE2 kMetric("[a-zA-Z_:][a-zA-Z0-9_:]*");
  Rule r;
  r.proto = p;
  r.name = p.name();
  if (!RE2::FullMatch(r.name, kName)) {
    return absl::InvalidArgumentError(absl::StrCat(
        field, ".name: \"", r.name, "\" must be 1-128 characters of A-Z a-z 0-9 . _ : -"));
  }
  r.severity = p.severity().empty() ? "warning" : p.severity();
  if (r.severity != "info" && r.severity != "warning" && r.severity != "critical") {
    return absl::InvalidArgumentError(absl::StrCat(
        field, ".severity: must be info, warning or critical; got \"", p.severity(), "\""));
  }
  r.matchers.insert(p.matchers().begin(), p.matchers().end());
  r.labels.insert(p.labels().begin(), p.labels().end());
  r.annotations.insert(p.annotations().begin(), p.annotations().end());
  if (p.has_check()) {
    if (!p.metric().empty() || !p.op().empty() || p.threshold() != 0 || !p.absent_for().empty() ||
        p.has_clear_threshold()) {
      return absl::InvalidArgumentError(absl::StrCat(
          field, ": a check rule takes no metric, op, threshold, clear_threshold or absent_for"));
    }
    r.check_rule = true;
    r.glob_label = "check";
    for (int i = 0; i < p.check().names_size(); ++i) {
      const std::string& glob = p.check().names(i);
      if (glob.empty() || glob.size() > 128 || glob.find('\0') != std::string::npos) {
        return absl::InvalidArgumentError(
            absl::StrCat(field, ".check.names[", i, "]: \"", glob, "\" must be 1-128 characters"));
      }
      r.name_globs.push_back(glob);
    }
    const std::string& min = p.check().min_status();
    if (!min.empty() && min != "warning" && min != "critical") {
      return absl::InvalidArgumentError(
          absl::StrCat(field, ".check.min_status: must be warning or critical; got \"", min, "\""));
    }
    r.annotations.emplace("summary",
                          "{{labels.check}} ({{labels.target}}) on {{labels.agent}} is not OK");
  }
  if (p.has_service()) {
    const v1::ServiceRule& sr = p.service();
    if (p.has_check() || !p.metric().empty() || !p.op().empty() || p.threshold() != 0 ||
        !p.absent_for().empty() || p.has_clear_threshold()) {
      return absl::InvalidArgumentError(
          absl::StrCat(field,
                       ": a service rule takes no check, metric, op, threshold, "
                       "clear_threshold or absent_for"));
    }
    r.service_rule = true;
    r.glob_label = "service";
    for (int i = 0; i < sr.names_size(); ++i) {
      const std::string& glob = sr.names(i);
      if (glob.empty() || glob.size() > 128 || glob.find('\0') != std::string::npos) {
        return absl::InvalidArgumentError(absl::StrCat(field, ".service.names[", i, "]: \"", glob,
                                                       "\" must be 1-128 characters"));
      }
      r.name_globs.push_back(glob);
    }
    if (sr.restarts() > 1000 || sr.failures() > 1000) {
      return absl::InvalidArgumentError(
          absl::StrCat(field, ".service: restarts and failures at most 1000"));
    }
    const std::string on = sr.on().empty() ? "exit" : sr.on();
    if (on == "exit") {
      r.metric = kServiceStableMetric;
      r.op = Op::kLt;
      r.threshold = 1;
      r.annotations.emplace("summary", "{{labels.service}} exited on {{labels.agent}}");
    } else if (on == "crash_loop") {
      r.metric = kServiceRestartsInARowMetric;
      r.op = Op::kGt;
      r.threshold = sr.restarts() == 0 ? 3 : sr.restarts();
      r.annotations.emplace("summary",
                            "{{labels.service}} on {{labels.agent}} is in a crash loop "
                            "({{value}} restarts in a row)");
    } else if (on == "health") {
      r.metric = kServiceHealthFailuresMetric;
      r.op = Op::kGe;
      r.threshold = sr.failures() == 0 ? 1 : sr.failures();
      r.annotations.emplace("summary",
                            "{{labels.service}} on {{labels.agent}} fails its health command "
                            "({{value}} in a row)");
    } else {
      return absl::InvalidArgumentError(absl::StrCat(
          field, ".service.on: must be exit, crash_loop or health; got \"", sr.on(), "\""));
    }
    if (!sr.within().empty()) {
      if (on != "crash_loop") {
        return absl::InvalidArgumentError(
            absl::StrCat(field, ".service.within: only with on: crash_loop"));
      }
      VIGIE_ASSIGN_OR_RETURN(r.restarts_within,
                             ParseConfigDuration(absl::StrCat(field, ".service.within"),
                                                 sr.within(), absl::ZeroDuration()));
      if (r.restarts_within < absl::Seconds(1) || r.restarts_within > absl::Hours(24 * 7)) {
        return absl::InvalidArgumentError(
            absl::StrCat(field, ".service.within: between 1s and 7d, got \"", sr.within(), "\""));
      }
      if (!p.for_().empty()) {
        return absl::InvalidArgumentError(
            absl::StrCat(field, ".for: not with service.within (the window is the wait)"));
      }
      if (p.annotations().count("summary") == 0)
        r.annotations["summary"] =
            absl::StrCat("{{labels.service}} on {{labels.agent}} restarted {{value}} times within ",
                         sr.within());
    }
    if (on != "crash_loop" && sr.restarts() != 0) {
      return absl::InvalidArgumentError(
          absl::StrCat(field, ".service.restarts: only with on: crash_loop"));
    }
    if (on != "health" && sr.failures() != 0) {
      return absl::InvalidArgumentError(
          absl::StrCat(field, ".service.failures: only with on: health"));
    }
  }
  for (const auto& [name, text] : r.annotations) {
    if (text.find("{{") == std::string::npos) continue;
    const std::string where = absl::StrCat(field, ".annotations.", name);
    auto tmpl = std::make_unique<kainjow::mustache::mustache>(text);
    if (tmpl->is_valid()) {
      tmpl->set_custom_escape([](const std::string& s) { return s; });
      // Once with sample data: what fails at run time fails here instead.
      (void)tmpl->render(TemplateData(r, {{"agent", "web1"}}, 1.5));
    }
    if (!tmpl->is_valid()) {
      return absl::InvalidArgumentError(absl::StrCat(where, ": ", tmpl->error_message()));
    }
    if (!r.templates) r.templates = std::make_shared<AnnotationTemplates>();
    MutexLock lock(&r.templates->mu);
    r.templates->by_name[name] = std::move(tmpl);
  }
  if (!p.absent_for().empty()) {
    VIGIE_ASSIGN_OR_RETURN(r.absent_for, ParseConfigDuration(absl::StrCat(field, ".absent_for"),
                                                             p.absent_for(), absl::ZeroDuration()));
    if (r.absent_for < absl::Seconds(1) || r.absent_for > absl::Hours(24 * 30)) {
      return absl::InvalidArgumentError(
          absl::StrCat(field, ".absent_for: \"", p.absent_for(), "\" must be between 1s and 30d"));
    }
    if (!p.metric().empty() || !p.op().empty() || !p.for_().empty()) {
      return absl::InvalidArgumentError(
          absl::StrCat(field, ": an absent_for rule takes no metric, op or for"));
    }
    return r;
  }
  if (!r.service_rule) r.metric = p.metric();
  if (r.service_rule) {
    // metric, op and threshold set above
  } else if (r.check_rule) {
    r.metric = kCheckStatusMetric;
    r.op = Op::kGe;
    r.threshold = p.check().min_status() == "warning" ? 1 : 2;
  } else if (!RE2::FullMatch(r.metric, kMetric)) {
    return absl::InvalidArgumentError(
        absl::StrCat(field, ".metric: \"", r.metric, "\" is not a metric name"));
  }
  static const std::map<std::string, Op> kOps = {{">", Op::kGt},  {">=", Op::kGe}, {"<", Op::kLt},
                                                 {"<=", Op::kLe}, {"==", Op::kEq}, {"!=", Op::kNe}};
  if (!r.check_rule && !r.service_rule) {
    auto op = kOps.find(p.op());
    if (op == kOps.end()) {
      return absl::InvalidArgumentError(
          absl::StrCat(field, ".op: must be one of >, >=, <, <=, ==, !=; got \"", p.op(), "\""));
    }
    r.op = op->second;
    r.threshold = p.threshold();
  }
  VIGIE_ASSIGN_OR_RETURN(r.for_duration, ParseConfigDuration(absl::StrCat(field, ".for"), p.for_(),
                                                             absl::ZeroDuration()));
  r.clear_threshold = r.threshold;
  // A check alert resolves when the check is OK again, not when CRITICAL becomes WARNING.
  if (r.check_rule) r.clear_threshold = 1;
  // A crash loop or failing health resolves at the stable run (or health success) that sets
  // the series to 0, not while it goes on.
  if (r.service_rule && r.metric == kServiceRestartsInARowMetric) r.clear_threshold = 0;
  if (r.service_rule && r.metric == kServiceHealthFailuresMetric) r.clear_threshold = 1;
  if (p.has_clear_threshold()) {
    r.clear_threshold = p.clear_threshold();
    const bool above = r.op == Op::kGt || r.op == Op::kGe;
    const bool below = r.op == Op::kLt || r.op == Op::kLe;
    if (!above && !below) {
      return absl::InvalidArgumentError(
          absl::StrCat(field, ".clear_threshold: only for >, >=, <, <=; op is \"", p.op(), "\""));
    }
    if (!std::isfinite(r.clear_threshold) || (above && r.clear_threshold > r.threshold) ||
        (below && r.clear_threshold < r.threshold)) {
      return absl::InvalidArgumentError(absl::StrCat(
          field, ".clear_threshold: ", r.clear_threshold, " must be on the good side of threshold ",
          r.threshold, " (", above ? "at or below" : "at or above", " it)"));
    }
  }
  VIGIE_ASSIGN_OR_RETURN(r.clear_for, ParseConfigDuration(absl::StrCat(field, ".clear_for"),
                                                          p.clear_for(), absl::ZeroDuration()));
  if (p.flap_threshold() != 0 || !p.flap_window().empty()) {
    if (p.flap_threshold() < 2 || p.flap_threshold() > 100) {
      return absl::InvalidArgumentError(
          absl::StrCat(field, ".flap_threshold: between 2 and 100 (with flap_window), got ",
                       p.flap_threshold()));
    }
    VIGIE_ASSIGN_OR_RETURN(r.flap_window,
                           ParseConfigDuration(absl::StrCat(field, ".flap_window"), p.flap_window(),
                                               absl::ZeroDuration()));
    if (r.flap_window < absl::Seconds(1) || r.flap_window > absl::Hours(24)) {
      return absl::InvalidArgumentError(
          absl::StrCat(field, ".flap_window: between 1s and 24h (with flap_threshold), got \"",
                       p.flap_window(), "\""));
    }
    r.flap_threshold = static_cast<int>(p.flap_threshold());
  }
  return r;
}

absl::StatusOr<std::vector<Rule>> RulesFromProto(
    const google::protobuf::RepeatedPtrField<v1::Rule>& rules) {
  std::vector<Rule> out;
  std::set<std::string> names;
  for (int i = 0; i < rules.size(); ++i) {
    const std::string field = absl::StrCat("rules[", i, "]");
    VIGIE_ASSIGN_OR_RETURN(Rule r, RuleFromProto(rules[i], field));
    if (!names.insert(r.name).second) {
      return absl::InvalidArgumentError(
          absl::StrCat(field, ".name: \"", r.name, "\" is used by an earlier rule"));
    }
    out.push_back(std::move(r));
  }
  return out;
}

std::string Fingerprint(const std::map<std::string, std::string>& labels) {
  uint64_t h = 14695981039346656037ull;
  auto mix = [&h](absl::string_view s) {
    for (unsigned char c : s) {
      h ^= c;
      h *= 1099511628211ull;
    }
    h ^= 0xff;  // separator that cannot occur in UTF-8
    h *= 1099511628211ull;
  };
  for (const auto& [k, v] : labels) {
    mix(k);
    mix(v);
  }
  return absl::StrFormat("%016x", h);
}

std::string Transition::IdempotencyKey() const {
  return absl::StrCat(rule, "/", fingerprint, "/", starts_at_ms, "/",
                      kind == kFiring ? "firing" : "resolved");
}

RuleEngine::RuleEngine(std::vector<Rule> rules, size_t max_active)
    : rules_(std::move(rules)), max_active_(max_active) {
  for (size_t i = 0; i < rules_.size(); ++i) {
    if (rules_[i].absent_for == absl::ZeroDuration() &&
        rules_[i].restarts_within == absl::ZeroDuration()) {
      by_metric_[rules_[i].metric].push_back(i);
    }
  }
}

std::string RuleEngine::Key(const std::string& rule, const std::string& fingerprint) {
  return absl::StrCat(rule, "\x1f", fingerprint);
}

RuleEngine::Evaluation RuleEngine::Evaluate(const std::string& agent_id,
                                            const v1::MetricBatch& batch) const {
  Evaluation ev;
  MutexLock lock(&mu_);
  for (const v1::Sample& s : batch.samples()) {
    auto candidates = by_metric_.find(s.name());
    if (candidates == by_metric_.end()) continue;
    for (size_t index : candidates->second) {
      const Rule& r = rules_[index];
      if (!Matches(r, s)) continue;
      std::map<std::string, std::string> labels(s.labels().begin(), s.labels().end());
      labels["agent"] = agent_id;
      for (const auto& [k, v] : r.labels) labels[k] = v;
      labels["alertname"] = r.name;
      const std::string fp = Fingerprint(labels);
      const std::string key = Key(r.name, fp);
      // Current state: an earlier sample of this batch, else the committed state.
      Evaluation::State st;
      bool known = true;
      if (auto u = ev.updates.find(key); u != ev.updates.end()) {
        st = u->second;
      } else if (auto c = state_.find(key); c != state_.end()) {
        st = c->second;
      } else {
        known = false;
      }
      const int64_t ts = s.timestamp_ms();
      // Firing, the alert holds until the clear threshold is crossed (hysteresis).
      const bool holds =
          Holds(r.op, s.value(),
                st.phase == Evaluation::State::kFiring ? r.clear_threshold : r.threshold);
      // Bounds memory: an upper estimate of the active alerts once this evaluation applies.
      if (!known && holds && state_.size() + ev.updates.size() >= max_active_) {
        ++refused_;
        continue;
      }
      Evaluation::State next = st;
      next.value = s.value();
      next.labels = labels;
      auto transition = [&](Transition::Kind kind) {
        Transition t;
        t.kind = kind;
        t.rule = r.name;
        t.fingerprint = fp;
        t.labels = labels;
        t.annotations = RenderAnnotations(r, labels, s.value());
        t.severity = r.severity;
        t.flap_threshold = r.flap_threshold;
        t.flap_window_ms = absl::ToInt64Milliseconds(r.flap_window);
        t.value = s.value();
        t.starts_at_ms = next.since_ms;
        if (kind == Transition::kResolved) {
          t.starts_at_ms = st.since_ms;
          t.ends_at_ms = ts;
        }
        ev.transitions.push_back(std::move(t));
      };
      if (holds) {
        next.clearing_since_ms = 0;
        if (st.phase == Evaluation::State::kInactive) {
          next.phase = Evaluation::State::kPending;
          next.since_ms = ts;
        }
        if (next.phase == Evaluation::State::kPending &&
            absl::Milliseconds(ts - next.since_ms) >= r.for_duration) {
          next.phase = Evaluation::State::kFiring;
          transition(Transition::kFiring);
        }
      } else if (st.phase == Evaluation::State::kFiring) {
        // Clearing: resolved once the clear condition has held for clear_for.
        if (next.clearing_since_ms == 0) next.clearing_since_ms = ts;
        if (absl::Milliseconds(ts - next.clearing_since_ms) >= r.clear_for) {
          transition(Transition::kResolved);
          next.phase = Evaluation::State::kInactive;
          next.since_ms = 0;
          next.clearing_since_ms = 0;
        }
      } else {
        next.phase = Evaluation::State::kInactive;
        next.since_ms = 0;
      }
      if (st.phase != Evaluation::State::kInactive || next.phase != Evaluation::State::kInactive) {
        ev.updates[key] = std::move(next);
      }
    }
  }
  // Pending alerts that start or end, against the committed state.
  for (const auto& [key, next] : ev.updates) {
    auto c = state_.find(key);
    const bool was = c != state_.end() && c->second.phase == Evaluation::State::kPending;
    const bool is = next.phase == Evaluation::State::kPending;
    if (!was && !is) continue;
    if (was && is && c->second.since_ms == next.since_ms) continue;
    PendingChange p;
    p.rule = key.substr(0, key.find('\x1f'));
    p.fingerprint = key.substr(key.find('\x1f') + 1);
    if (is) {
      p.labels = next.labels;
      p.since_ms = next.since_ms;
      p.value = next.value;
    }
    ev.pending.push_back(std::move(p));
  }
  return ev;
}

void RuleEngine::Apply(const Evaluation& ev) {
  MutexLock lock(&mu_);
  for (const auto& [key, st] : ev.updates) {
    if (st.phase == Evaluation::State::kInactive) {
      state_.erase(key);
    } else {
      state_[key] = st;
    }
  }
}

void RuleEngine::Restore(const std::vector<ActiveAlert>& active) {
  std::set<std::string> absent_rules;
  for (const Rule& r : rules_) {
    if (r.absent_for != absl::ZeroDuration()) absent_rules.insert(r.name);
  }
  MutexLock lock(&mu_);
  for (const ActiveAlert& a : active) {
    if (absent_rules.count(a.rule)) continue;  // the absence timer owns those (in PostgreSQL)
    Evaluation::State st;
    st.phase = Evaluation::State::kFiring;
    st.since_ms = a.starts_at_ms;
    st.value = a.value;
    st.labels = a.labels;
    state_[Key(a.rule, a.fingerprint)] = st;
  }
}

void RuleEngine::RestorePending(const std::vector<PendingChange>& pending) {
  std::set<std::string> threshold_rules;
  for (const Rule& r : rules_) {
    if (r.absent_for == absl::ZeroDuration()) threshold_rules.insert(r.name);
  }
  MutexLock lock(&mu_);
  for (const PendingChange& p : pending) {
    if (p.since_ms == 0 || !threshold_rules.count(p.rule) || state_.size() >= max_active_) continue;
    Evaluation::State st;
    st.phase = Evaluation::State::kPending;
    st.since_ms = p.since_ms;
    st.value = p.value;
    st.labels = p.labels;
    state_.emplace(Key(p.rule, p.fingerprint), st);  // a firing one already restored wins
  }
}

uint64_t RuleEngine::refused() const {
  MutexLock lock(&mu_);
  return refused_;
}

size_t RuleEngine::active() const {
  MutexLock lock(&mu_);
  return state_.size();
}

std::map<std::string, size_t> RuleEngine::PendingBySeverity() const {
  std::map<std::string, const std::string*> severity;  // by rule name
  for (const Rule& r : rules_) severity[r.name] = &r.severity;
  std::map<std::string, size_t> out;
  MutexLock lock(&mu_);
  for (const auto& [key, st] : state_) {
    if (st.phase != Evaluation::State::kPending) continue;
    auto it = severity.find(key.substr(0, key.find('\x1f')));
    if (it != severity.end()) ++out[*it->second];
  }
  return out;
}

std::vector<v1::Alert> RuleEngine::Snapshot() const {
  std::vector<v1::Alert> out;
  MutexLock lock(&mu_);
  for (const auto& [key, st] : state_) {
    v1::Alert a;
    a.set_rule(key.substr(0, key.find('\x1f')));
    a.set_fingerprint(key.substr(key.find('\x1f') + 1));
    for (const auto& [k, v] : st.labels) (*a.mutable_labels())[k] = v;
    a.set_state(st.phase == Evaluation::State::kFiring ? v1::ALERT_STATE_FIRING
                                                       : v1::ALERT_STATE_PENDING);
    a.set_value(st.value);
    a.set_active_since_unix(st.since_ms / 1000);
    for (const Rule& r : rules_) {
      if (r.name == a.rule()) {
        a.set_severity(r.severity);
        for (const auto& [k, v] : r.annotations) (*a.mutable_annotations())[k] = v;
      }
    }
    out.push_back(std::move(a));
  }
  return out;
}

}  // namespace vigie::controlplane
