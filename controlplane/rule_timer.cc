#include "controlplane/rule_timer.h"

#include "common/log.h"

namespace vigie::controlplane {

RuleTimer::RuleTimer(RuleTimerOptions options, std::vector<Rule> rules, PgStore* store,
                     prometheus::Registry* registry)
    : Runnable("rule-timer"),
      options_(std::move(options)),
      store_(store),
      transitions_(prometheus::BuildCounter()
                       .Name("vigie_controlplane_absence_transitions_total")
                       .Help("Agent-absent alerts fired and resolved by this replica's timer.")
                       .Register(*registry)),
      errors_(prometheus::BuildCounter()
                  .Name("vigie_controlplane_absence_errors_total")
                  .Help("Absence evaluations that failed (retried at the next tick).")
                  .Register(*registry)
                  .Add({})) {
  for (Rule& r : rules) {
    if (r.absent_for != absl::ZeroDuration()) rules_.push_back(std::move(r));
  }
  for (const char* s : {"firing", "resolved"}) transitions_.Add({{"status", s}});
}

RuleTimer::~RuleTimer() { Stop(); }

void RuleTimer::Run() {
  if (rules_.empty()) return;
  do {
    auto t = store_->EvaluateAbsence(rules_, options_.generator_url);
    if (!t.ok()) {
      errors_.Increment();
      log::Warn("absence evaluation failed; retrying", {{"error", t.status()}});
      continue;
    }
    for (const Transition& x : *t) {
      const bool firing = x.kind == Transition::kFiring;
      transitions_.Add({{"status", firing ? "firing" : "resolved"}}).Increment();
      log::Info(firing ? "agent absent" : "agent back",
                {{"rule", x.rule}, {"agent", x.labels.count("agent") ? x.labels.at("agent") : ""}});
    }
    if (!t->empty() && options_.on_transitions) options_.on_transitions();
  } while (WaitFor(options_.interval));
}

}  // namespace vigie::controlplane
