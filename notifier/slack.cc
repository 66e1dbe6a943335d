#include "notifier/slack.h"

#include <algorithm>
#include <map>

#include "absl/strings/str_cat.h"
#include "nlohmann/json.hpp"
#include "notifier/http_request.h"

namespace vigie::notifier {

const char kDefaultSlackTitle[] =
    "[{{STATUS}}{{#grouped}}:{{alert_count}}{{/grouped}}] {{alertname}}: {{summary}}"
    "{{#grouped}} (+{{others}} more){{/grouped}}";
const char kDefaultSlackText[] =
    "{{^grouped}}{{#description}}{{description}}\n{{/description}}Value {{value}} since "
    "{{starts_at}}{{#resolved}}, resolved {{ends_at}}{{/resolved}}"
    "{{#acknowledged_by}}\nAcknowledged by {{acknowledged_by}}{{#acknowledgement_comment}}: "
    "{{acknowledgement_comment}}{{/acknowledgement_comment}}{{/acknowledged_by}}"
    "{{#silenced_by}}\nSilenced ({{silenced_by}}){{/silenced_by}}{{/grouped}}"
    "{{#grouped}}{{#alerts}}\u2022 [{{STATUS}}] {{summary}}{{#labels.instance}} on "
    "{{labels.instance}}{{/labels.instance}}{{#labels.agent}} on {{labels.agent}}"
    "{{/labels.agent}} ({{value}}){{#acknowledged_by}}, acknowledged by {{acknowledged_by}}"
    "{{/acknowledged_by}}{{#silenced_by}}, silenced{{/silenced_by}}\n{{/alerts}}{{/grouped}}";

namespace {

// The colour of the worst firing alert; green when all are resolved.
const char* Colour(const Batch& b) {
  int worst = -1;
  for (const v1::NotifyRequest& r : b.alerts) {
    const v1::Notification& n = r.notification();
    if (n.status() == v1::Notification::STATUS_RESOLVED) continue;
    const int level = (n.severity() == "critical" || n.severity() == "page") ? 2
                      : n.severity() == "warning"                            ? 1
                                                                             : 0;
    worst = std::max(worst, level);
  }
  static const char* const kColours[] = {"#439fe0", "#daa038", "#d00000"};
  return worst < 0 ? "#2eb886" : kColours[worst];
}

}  // namespace

std::string SlackPayload(const SlackOptions& options, const Batch& batch) {
  const v1::Notification& n = batch.First();
  nlohmann::json fields = nlohmann::json::array();
  // One alert: its labels; a group: the labels it is grouped by.
  std::map<std::string, std::string> labels =
      batch.alerts.size() == 1
          ? std::map<std::string, std::string>(n.labels().begin(), n.labels().end())
          : batch.group_labels;
  for (const auto& [k, v] : labels) {
    fields.push_back({{"title", k}, {"value", v}, {"short", true}});
  }
  nlohmann::json attachment = {
      {"color", Colour(batch)},
      {"title", options.title->Render(batch)},
      {"text", options.text->Render(batch)},
      {"fields", fields},
      {"footer", "Vigie"},
      {"ts", n.starts_at_ms() / 1000},
  };
  if (!n.generator_url().empty()) attachment["title_link"] = n.generator_url();
  nlohmann::json body = {{"attachments", nlohmann::json::array({attachment})}};
  // The fallback text for notifications (phones, screen readers).
  body["text"] = attachment["title"];
  if (!options.channel.empty()) body["channel"] = options.channel;
  if (!options.username.empty()) body["username"] = options.username;
  // Invalid UTF-8 in a label is replaced, never an exception (JSON must be UTF-8).
  return body.dump(-1, ' ', false, nlohmann::json::error_handler_t::replace);
}

absl::Status SlackChannel::Send(const Batch& batch) {
  HttpRequest r;
  r.url = options_.api_url;
  r.headers = {"Content-Type: application/json"};
  r.body = SlackPayload(options_, batch);
  r.timeout = options_.timeout;
  return SendHttp(absl::StrCat("slack ", options_.receiver), r);
}

}  // namespace vigie::notifier
