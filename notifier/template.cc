#include "notifier/template.h"

#include <kainjow/mustache.hpp>

#include "absl/strings/ascii.h"
#include "absl/strings/str_cat.h"
#include "absl/time/time.h"

namespace vigie::notifier {

namespace mu = kainjow::mustache;

std::string Rfc3339Ms(int64_t ms) {
  if (ms == 0) return "";
  return absl::FormatTime("%Y-%m-%dT%H:%M:%E3SZ", absl::FromUnixMillis(ms), absl::UTCTimeZone());
}

namespace {

template <typename Map>
void AddMap(const Map& m, const char* object_name, const char* list_name, mu::data* d) {
  mu::data obj{mu::data::type::object};
  mu::data list{mu::data::type::list};
  std::map<std::string, std::string> sorted(m.begin(), m.end());
  for (const auto& [k, v] : sorted) {
    obj.set(k, v);
    mu::data item;
    item.set("name", k);
    item.set("value", v);
    list.push_back(item);
  }
  d->set(object_name, obj);
  d->set(list_name, list);
}

// One alert's fields.
mu::data AlertContext(const v1::NotifyRequest& r) {
  const v1::Notification& n = r.notification();
  const bool resolved = n.status() == v1::Notification::STATUS_RESOLVED;
  mu::data d;
  d.set("status", resolved ? "resolved" : "firing");
  d.set("STATUS", resolved ? "RESOLVED" : "FIRING");
  d.set("firing", !resolved);
  d.set("resolved", resolved);
  d.set("rule", n.rule());
  d.set("alertname", n.labels().count("alertname") ? n.labels().at("alertname") : n.rule());
  d.set("severity", n.severity());
  d.set("fingerprint", n.fingerprint());
  d.set("value", absl::StrCat(n.value()));
  d.set("summary", n.annotations().count("summary") ? n.annotations().at("summary") : n.rule());
  d.set("description",
        n.annotations().count("description") ? n.annotations().at("description") : "");
  d.set("starts_at", Rfc3339Ms(n.starts_at_ms()));
  d.set("ends_at", resolved ? Rfc3339Ms(n.ends_at_ms()) : "");
  d.set("generator_url", n.generator_url());
  d.set("idempotency_key", r.idempotency_key());
  // Empty: false, so that {{#acknowledged_by}}...{{/acknowledged_by}} is skipped (an empty
  // string would be true), and an alert of a group does not show the first alert's.
  auto optional = [&d, resolved](const char* name, const std::string& value) {
    if (resolved || value.empty()) {
      d.set(name, mu::data(false));
    } else {
      d.set(name, value);
    }
  };
  optional("acknowledged_by", n.acknowledged_by());
  optional("acknowledgement_comment", n.acknowledgement_comment());
  optional("silenced_by", n.silenced_by());
  AddMap(n.labels(), "labels", "label_list", &d);
  AddMap(n.annotations(), "annotations", "annotation_list", &d);
  return d;
}

// The first alert's fields, then the message's: status is "firing" while any alert is.
mu::data Context(const Batch& b) {
  mu::data d = AlertContext(b.alerts.front());
  const size_t firing = b.FiringCount();
  d.set("status", firing > 0 ? "firing" : "resolved");
  d.set("STATUS", firing > 0 ? "FIRING" : "RESOLVED");
  d.set("firing", firing > 0);
  d.set("resolved", firing == 0);
  d.set("idempotency_key", b.key);
  d.set("grouped", b.alerts.size() > 1);
  d.set("repeat", b.repeat);
  d.set("alert_count", absl::StrCat(b.alerts.size()));
  d.set("firing_count", absl::StrCat(firing));
  d.set("resolved_count", absl::StrCat(b.alerts.size() - firing));
  d.set("others", absl::StrCat(b.alerts.size() - 1));
  mu::data alerts{mu::data::type::list};
  for (const v1::NotifyRequest& r : b.alerts) alerts.push_back(AlertContext(r));
  d.set("alerts", alerts);
  AddMap(b.group_labels, "group_labels", "group_label_list", &d);
  return d;
}

}  // namespace

absl::StatusOr<Template> Template::Parse(const std::string& field, const std::string& text,
                                         Escape escape) {
  Template t;
  t.mu_ = std::make_unique<Mutex>();
  t.tmpl_ = std::make_unique<mu::mustache>(text);
  if (!t.tmpl_->is_valid()) {
    return absl::InvalidArgumentError(absl::StrCat(field, ": ", t.tmpl_->error_message()));
  }
  if (escape == Escape::kNone) {
    t.tmpl_->set_custom_escape([](const std::string& s) { return s; });
  }
  // Render once with a sample alert: a template that fails at run time fails here instead.
  v1::NotifyRequest sample;
  sample.mutable_notification()->set_rule("sample");
  (void)t.Render(sample);
  if (!t.tmpl_->is_valid()) {
    return absl::InvalidArgumentError(absl::StrCat(field, ": ", t.tmpl_->error_message()));
  }
  return t;
}

std::string Template::Render(const v1::NotifyRequest& request,
                             const std::map<std::string, std::string>& extra) const {
  return Render(Batch::Of(request), extra);
}

std::string Template::Render(const Batch& batch,
                             const std::map<std::string, std::string>& extra) const {
  mu::data context = Context(batch);
  for (const auto& [k, v] : extra) context.set(k, v);
  MutexLock lock(mu_.get());
  return tmpl_->render(context);
}

Template::~Template() = default;
Template::Template(Template&&) noexcept = default;
Template& Template::operator=(Template&&) noexcept = default;

}  // namespace vigie::notifier
