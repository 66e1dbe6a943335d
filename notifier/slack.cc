#include "notifier/slack.h"

#include <map>

#include "absl/strings/str_cat.h"
#include "nlohmann/json.hpp"
#include "notifier/http_request.h"

namespace vigie::notifier {

const char kDefaultSlackTitle[] = "[{{STATUS}}] {{alertname}}: {{summary}}";
const char kDefaultSlackText[] =
    "{{#description}}{{description}}\n{{/description}}Value {{value}} since {{starts_at}}"
    "{{#resolved}}, resolved {{ends_at}}{{/resolved}}";

namespace {

const char* Colour(const v1::Notification& n) {
  if (n.status() == v1::Notification::STATUS_RESOLVED) return "#2eb886";  // green
  if (n.severity() == "critical" || n.severity() == "page") return "#d00000";
  if (n.severity() == "warning") return "#daa038";
  return "#439fe0";
}

}  // namespace

std::string SlackPayload(const SlackOptions& options, const v1::NotifyRequest& request) {
  const v1::Notification& n = request.notification();
  nlohmann::json fields = nlohmann::json::array();
  std::map<std::string, std::string> labels(n.labels().begin(), n.labels().end());
  for (const auto& [k, v] : labels) {
    fields.push_back({{"title", k}, {"value", v}, {"short", true}});
  }
  nlohmann::json attachment = {
      {"color", Colour(n)},
      {"title", options.title->Render(request)},
      {"text", options.text->Render(request)},
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

absl::Status SlackChannel::Send(const v1::NotifyRequest& request) {
  HttpRequest r;
  r.url = options_.api_url;
  r.headers = {"Content-Type: application/json"};
  r.body = SlackPayload(options_, request);
  r.timeout = options_.timeout;
  return SendHttp(absl::StrCat("slack ", options_.receiver), r);
}

}  // namespace vigie::notifier
