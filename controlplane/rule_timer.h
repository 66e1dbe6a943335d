// The clock-driven side of rule evaluation: what no sample can trigger is evaluated on a
// timer. Today: agent-absent rules (Rule.absent_for), and notifications whose time came
// (a silence or an agent down that held them back ended, an acknowledgement expired).
#ifndef VIGIE_CONTROLPLANE_RULE_TIMER_H_
#define VIGIE_CONTROLPLANE_RULE_TIMER_H_

#include <functional>
#include <string>
#include <vector>

#include "common/runnable.h"
#include "controlplane/pg_store.h"
#include "controlplane/rule_engine.h"
#include "prometheus/counter.h"
#include "prometheus/gauge.h"
#include "prometheus/registry.h"

namespace vigie::controlplane {

struct RuleTimerOptions {
  // How often absence is looked at: the detection delay is absent_for plus at most this.
  absl::Duration interval = absl::Seconds(5);
  std::string generator_url;
  // Called after transitions were stored (wakes the dispatcher).
  std::function<void()> on_transitions;
};

class RuleTimer : public Runnable {
 public:
  // `engine` (may be null) gives the pending alerts for vigie_controlplane_alerts.
  RuleTimer(RuleTimerOptions options, std::vector<Rule> rules, PgStore* store,
            const RuleEngine* engine, prometheus::Registry* registry);
  ~RuleTimer() override;

 protected:
  void Run() override;

 private:
  const RuleTimerOptions options_;
  std::vector<Rule> rules_;  // the agent-absent ones and the crash loops over a window
  PgStore* const store_;
  const RuleEngine* const engine_;
  // Publishes alerts by state and severity.
  void CountAlerts();
  prometheus::Family<prometheus::Gauge>& alerts_;
  prometheus::Family<prometheus::Counter>& transitions_;
  prometheus::Counter& errors_;
  prometheus::Counter& reconciled_;
  prometheus::Counter& reconcile_errors_;
};

}  // namespace vigie::controlplane

#endif  // VIGIE_CONTROLPLANE_RULE_TIMER_H_
