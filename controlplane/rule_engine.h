// Threshold rules evaluated as samples arrive, with the alert state machine
// inactive -> pending -> firing -> resolved (inactive again).
#ifndef VIGIE_CONTROLPLANE_RULE_ENGINE_H_
#define VIGIE_CONTROLPLANE_RULE_ENGINE_H_

#include <cstdint>
#include <map>
#include <memory>
#include <string>
#include <unordered_map>
#include <vector>

#include "absl/base/thread_annotations.h"
#include "absl/status/statusor.h"
#include "absl/time/time.h"
#include "common/mutex.h"
#include "vigie/v1/admin.pb.h"
#include "vigie/v1/agent.pb.h"

namespace vigie::controlplane {

enum class Op { kGt, kGe, kLt, kLe, kEq, kNe };

struct AnnotationTemplates;  // the rule's parsed {{...}} annotations (rule_engine.cc)

struct Rule {
  std::string name;
  std::string metric;
  std::map<std::string, std::string> matchers;
  Op op = Op::kGt;
  double threshold = 0;
  absl::Duration for_duration = absl::ZeroDuration();
  std::string severity = "warning";
  std::map<std::string, std::string> labels;
  std::map<std::string, std::string> annotations;
  // Hysteresis: while firing, the condition is checked against clear_threshold (the threshold
  // itself when unset), and must be false for clear_for before the alert resolves.
  double clear_threshold = 0;
  absl::Duration clear_for = absl::ZeroDuration();
  // Flap hold (0: none): flap_threshold changes within flap_window mark the alert flapping.
  int flap_threshold = 0;
  absl::Duration flap_window = absl::ZeroDuration();
  // A check rule (metric vigie_check_status, >= its min_status) or a service rule (on the
  // vigie_service_* series of events): the names or globs it selects, matched against the
  // label `glob_label` ("check" or "service"; no globs: all).
  bool check_rule = false;
  bool service_rule = false;
  std::vector<std::string> name_globs;
  std::string glob_label;
  // Non-zero: an agent-absent rule (metric, op and threshold unused).
  absl::Duration absent_for = absl::ZeroDuration();
  // Non-zero: a crash-loop rule over a window, evaluated by the timer from the stored events:
  // more than `threshold` restarts within restarts_within.
  absl::Duration restarts_within = absl::ZeroDuration();
  v1::Rule proto;  // as configured, for the Admin API
  // Annotations holding "{{": Mustache templates, parsed once (null when there are none).
  std::shared_ptr<AnnotationTemplates> templates;
};

// The rule's annotations for one alert: templates filled in from `labels` and `value`
// ({{value}}, {{labels.<name>}}, {{rule}}, {{severity}}), the others as they are. Thread-safe.
std::map<std::string, std::string> RenderAnnotations(
    const Rule& rule, const std::map<std::string, std::string>& labels, double value);

// Validates a configured rule; errors name `field` (e.g. "rules[2].op") and the value.
absl::StatusOr<Rule> RuleFromProto(const v1::Rule& proto, const std::string& field);
// Validates a list: each rule and unique names.
absl::StatusOr<std::vector<Rule>> RulesFromProto(
    const google::protobuf::RepeatedPtrField<v1::Rule>& rules);

// A firing or resolved alert, to store and hand to the notifier.
struct Transition {
  enum Kind { kFiring, kResolved };
  Kind kind;
  std::string rule;
  std::string fingerprint;
  std::map<std::string, std::string> labels;
  std::map<std::string, std::string> annotations;
  std::string severity;
  double value = 0;
  int64_t starts_at_ms = 0;
  int64_t ends_at_ms = 0;  // resolved only
  // An agent-absent alert: while it fires, new alerts of its agent are held back.
  bool agent_absent = false;
  // The rule's flap hold (0: none).
  int flap_threshold = 0;
  int64_t flap_window_ms = 0;

  // Stable across retries and restarts: rule/fingerprint/starts_at_ms/firing|resolved.
  std::string IdempotencyKey() const;
};

// The metric a service check's state is: 0 OK, 1 WARNING, 2 CRITICAL, 3 UNKNOWN.
inline constexpr char kCheckStatusMetric[] = "vigie_check_status";
// Series the gateway makes from supervised services' events (labels: service, agent).
inline constexpr char kServiceStableMetric[] = "vigie_service_stable";
inline constexpr char kServiceRestartsInARowMetric[] = "vigie_service_restarts_in_a_row";
inline constexpr char kServiceHealthFailuresMetric[] = "vigie_service_health_failures_in_a_row";

// Gives each transition of a rule on kCheckStatusMetric the annotation "message": the latest
// message of its check in `messages` (by check name, for the transitions' agent).
void AttachCheckMessages(const std::vector<Rule>& rules,
                         const std::map<std::string, std::string>& messages,
                         std::vector<Transition>* transitions);
// The checks of the transitions of rules on kCheckStatusMetric that have no "message" yet.
std::vector<std::string> ChecksLackingMessages(const std::vector<Rule>& rules,
                                               const std::vector<Transition>& transitions);

// A pending alert that started (since_ms > 0) or ended (since_ms 0: it fired or was cancelled).
// Stored with the samples that caused it, so a restarted control plane resumes its `for`.
struct PendingChange {
  std::string rule;
  std::string fingerprint;
  std::map<std::string, std::string> labels;
  int64_t since_ms = 0;
  double value = 0;
};

// An alert that is firing, as loaded from storage at start-up.
struct ActiveAlert {
  std::string rule;
  std::string fingerprint;
  std::map<std::string, std::string> labels;
  double value = 0;
  int64_t starts_at_ms = 0;
};

// FNV-1a over sorted name=value pairs: 16 hex digits, stable across processes and versions.
std::string Fingerprint(const std::map<std::string, std::string>& labels);

// Evaluates rules against samples. Evaluation is two-step so that state changes only when the
// samples (and the transitions they cause) are committed: Evaluate() computes, Apply() commits.
// Time comes from sample timestamps, so evaluation is deterministic. Samples of one series must
// be evaluated in order (the gateway serializes each agent's messages). Thread-safe.
class RuleEngine {
 public:
  // At most `max_active` alerts are pending or firing at once: the bound on the engine's
  // memory whatever the label cardinality. Beyond it, new alerts are not started (counted in
  // refused()); existing ones still move on.
  explicit RuleEngine(std::vector<Rule> rules, size_t max_active = 100000);

  struct Evaluation {
    std::vector<Transition> transitions;
    // New state per alert key, applied by Apply().
    struct State {
      enum Phase { kInactive, kPending, kFiring } phase = kInactive;
      int64_t since_ms = 0;
      // Firing, the clear condition true since this sample time (0: not clearing).
      int64_t clearing_since_ms = 0;
      double value = 0;
      std::map<std::string, std::string> labels;
    };
    std::map<std::string, State> updates;
    // Pending alerts started or ended by this evaluation, to store.
    std::vector<PendingChange> pending;
  };

  // `agent_id` becomes the "agent" label of every series.
  Evaluation Evaluate(const std::string& agent_id, const v1::MetricBatch& batch) const;
  void Apply(const Evaluation& evaluation);

  // Marks alerts firing, e.g. those stored before a restart.
  void Restore(const std::vector<ActiveAlert>& active);
  // Marks alerts pending since their stored time (those of unknown rules are skipped).
  void RestorePending(const std::vector<PendingChange>& pending);

  const std::vector<Rule>& rules() const { return rules_; }
  // Alerts currently pending or firing.
  std::vector<v1::Alert> Snapshot() const;
  // Alerts not started because max_active were already active.
  uint64_t refused() const;
  // Alerts pending or firing in memory (the rule state's size, bounded by max_active).
  size_t active() const;
  // Pending alerts by their rule's severity.
  std::map<std::string, size_t> PendingBySeverity() const;

 private:
  static std::string Key(const std::string& rule, const std::string& fingerprint);
  const std::vector<Rule> rules_;
  // Indexes into rules_ by metric name: most samples match no rule and cost one lookup.
  std::unordered_map<std::string, std::vector<size_t>> by_metric_;
  const size_t max_active_;
  mutable Mutex mu_;
  std::map<std::string, Evaluation::State> state_ ABSL_GUARDED_BY(mu_);
  mutable uint64_t refused_ ABSL_GUARDED_BY(mu_) = 0;
};

}  // namespace vigie::controlplane

#endif  // VIGIE_CONTROLPLANE_RULE_ENGINE_H_
