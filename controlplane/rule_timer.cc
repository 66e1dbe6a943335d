#include "controlplane/rule_timer.h"

#include <set>

#include "common/log.h"

namespace vigie::controlplane {

RuleTimer::RuleTimer(RuleTimerOptions options, std::vector<Rule> rules, PgStore* store,
                     const RuleEngine* engine, prometheus::Registry* registry)
    : Runnable("rule-timer"),
      options_(std::move(options)),
      store_(store),
      engine_(engine),
      alerts_(prometheus::BuildGauge()
                  .Name("vigie_controlplane_alerts")
                  .Help("Alerts by state and severity: pending (this replica's rule engine), "
                        "firing, held (firing, notification held back by a silence or an agent "
                        "down) and acknowledged (firing) from the database, every 5 s.")
                  .Register(*registry)),
      transitions_(prometheus::BuildCounter()
                       .Name("vigie_controlplane_absence_transitions_total")
                       .Help("Agent-absent alerts fired and resolved by this replica's timer.")
                       .Register(*registry)),
      errors_(prometheus::BuildCounter()
                  .Name("vigie_controlplane_absence_errors_total")
                  .Help("Absence evaluations that failed (retried at the next tick).")
                  .Register(*registry)
                  .Add({})),
      reconciled_(prometheus::BuildCounter()
                      .Name("vigie_controlplane_notifications_released_total")
                      .Help("Notifications queued by the timer: firings held back by a silence "
                            "or an agent down that ended, silences that came to cover or stopped "
                            "covering a notified alert, acknowledgements that expired.")
                      .Register(*registry)
                      .Add({})),
      reconcile_errors_(prometheus::BuildCounter()
                            .Name("vigie_controlplane_reconcile_errors_total")
                            .Help("Reconciliations of held notifications that failed (retried "
                                  "at the next tick).")
                            .Register(*registry)
                            .Add({})) {
  for (Rule& r : rules) {
    if (r.absent_for != absl::ZeroDuration() || r.restarts_within != absl::ZeroDuration()) {
      rules_.push_back(std::move(r));
    }
  }
  for (const char* s : {"firing", "resolved"}) transitions_.Add({{"status", s}});
}

RuleTimer::~RuleTimer() { Stop(); }

void RuleTimer::CountAlerts() {
  absl::StatusOr<std::map<std::string, PgStore::FiringCount>> firing = store_->CountFiringAlerts();
  if (!firing.ok()) return;  // the gauges keep their last values; the next tick retries
  std::map<std::string, size_t> pending;
  if (engine_ != nullptr) pending = engine_->PendingBySeverity();
  std::set<std::string> severities = {"info", "warning", "critical"};
  for (const auto& [s, n] : *firing) severities.insert(s);
  for (const std::string& s : severities) {
    const PgStore::FiringCount c = firing->count(s) ? firing->at(s) : PgStore::FiringCount{};
    alerts_.Add({{"state", "pending"}, {"severity", s}})
        .Set(static_cast<double>(pending.count(s) ? pending.at(s) : 0));
    alerts_.Add({{"state", "firing"}, {"severity", s}}).Set(static_cast<double>(c.firing));
    alerts_.Add({{"state", "held"}, {"severity", s}}).Set(static_cast<double>(c.held));
    alerts_.Add({{"state", "acknowledged"}, {"severity", s}})
        .Set(static_cast<double>(c.acknowledged));
  }
}

void RuleTimer::Run() {
  do {
    bool queued = false;
    if (!rules_.empty()) {
      auto t = store_->EvaluateAbsence(rules_, options_.generator_url);
      if (!t.ok()) {
        errors_.Increment();
        log::Warn("absence evaluation failed; retrying", {{"error", t.status()}});
      } else {
        for (const Transition& x : *t) {
          const bool firing = x.kind == Transition::kFiring;
          transitions_.Add({{"status", firing ? "firing" : "resolved"}}).Increment();
          log::Info(
              firing ? "agent absent" : "agent back",
              {{"rule", x.rule}, {"agent", x.labels.count("agent") ? x.labels.at("agent") : ""}});
        }
        queued = !t->empty();
      }
    }
    // What was held back (silences, an agent down) or an acknowledgement that expired.
    absl::StatusOr<int> sent = store_->ReconcileNotifications();
    if (!sent.ok()) {
      reconcile_errors_.Increment();
      log::Warn("reconciling notifications failed; retrying", {{"error", sent.status()}});
    } else if (*sent > 0) {
      reconciled_.Increment(*sent);
      queued = true;
    }
    if (queued && options_.on_transitions) options_.on_transitions();
    CountAlerts();
  } while (WaitFor(options_.interval));
}

}  // namespace vigie::controlplane
