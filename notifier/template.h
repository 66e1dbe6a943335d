// Message templates: Mustache (https://mustache.github.io/mustache.5.html), through Debian's
// kainjow-mustache. Logic-less and safe: a template can only read the alert's fields, never run
// code, include files or loop forever. A template that does not parse is refused at load with
// the byte position of the error.
//
// Fields (every value a string): status ("firing" or "resolved"), STATUS (upper case), rule,
// alertname, severity, fingerprint, value, summary (annotation "summary", else the rule),
// description (annotation "description"), starts_at, ends_at (RFC 3339, UTC; ends_at empty while
// firing), generator_url, idempotency_key, acknowledged_by and acknowledgement_comment (who
// acknowledged a firing alert, empty otherwise), silenced_by (the silence a firing alert is
// now under, "silence <id>"; empty otherwise); labels.<name> and annotations.<name>; label_list
// and annotation_list (sections of {name, value}); firing and resolved (booleans, for
// {{#firing}}...{{/firing}}).
//
// A message may carry several alerts of a group (route group_by). The fields above describe
// the first alert, except status/STATUS/firing/resolved (firing while any alert is) and
// idempotency_key (the message's). Also: alerts (a section with the fields above for each
// alert, firing ones first), grouped (more than one alert), repeat (a repeat_interval repeat),
// alert_count, firing_count, resolved_count, others (alert_count - 1), group_labels.<name> and
// group_label_list.
// {{x}} escapes HTML in HTML templates only; text templates insert values as they are.
#ifndef VIGIE_NOTIFIER_TEMPLATE_H_
#define VIGIE_NOTIFIER_TEMPLATE_H_

#include <map>
#include <memory>
#include <string>

#include "absl/status/statusor.h"
#include "common/mutex.h"
#include "notifier/batch.h"
#include "vigie/v1/notifier.pb.h"

namespace kainjow::mustache {
template <typename>
class basic_mustache;
}  // namespace kainjow::mustache

namespace vigie::notifier {

class Template {
 public:
  enum class Escape { kNone, kHtml };
  // `field` names the setting in errors, e.g. "receivers[0].email_configs[0].subject".
  static absl::StatusOr<Template> Parse(const std::string& field, const std::string& text,
                                        Escape escape = Escape::kNone);
  // `extra` adds (or overrides) top-level string fields.
  std::string Render(const Batch& batch,
                     const std::map<std::string, std::string>& extra = {}) const;
  // A message of one alert.
  std::string Render(const v1::NotifyRequest& request,
                     const std::map<std::string, std::string>& extra = {}) const;
  ~Template();
  Template(Template&&) noexcept;
  Template& operator=(Template&&) noexcept;

 private:
  Template() = default;
  // kainjow's render is not const-safe: one render at a time per template.
  std::unique_ptr<Mutex> mu_;
  std::unique_ptr<kainjow::mustache::basic_mustache<std::string>> tmpl_;
};

// RFC 3339 UTC with milliseconds; "" for 0.
std::string Rfc3339Ms(int64_t ms);

}  // namespace vigie::notifier

#endif  // VIGIE_NOTIFIER_TEMPLATE_H_
