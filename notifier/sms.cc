#include "notifier/sms.h"

#include "absl/strings/str_cat.h"
#include "nlohmann/json.hpp"

namespace vigie::notifier {

const char kDefaultSmsText[] =
    "{{STATUS}} {{alertname}}{{#labels.instance}} on {{labels.instance}}{{/labels.instance}}"
    "{{#labels.agent}} on {{labels.agent}}{{/labels.agent}}: {{summary}} ({{value}})"
    "{{#grouped}} (+{{others}} more){{/grouped}}{{#acknowledged_by}} [ack: {{acknowledged_by}}]"
    "{{/acknowledged_by}}";
const char kFreeMobileUrl[] = "https://smsapi.free-mobile.fr/sendmsg";
const char kTwilioUrl[] = "https://api.twilio.com";

std::string CutMessage(const std::string& s, size_t max) {
  size_t chars = 0, i = 0;
  // Count characters (UTF-8 lead bytes) up to max - 1, leaving room for the ellipsis.
  size_t cut_at = std::string::npos;
  while (i < s.size()) {
    if (chars == max - 1 && cut_at == std::string::npos) cut_at = i;
    ++chars;
    ++i;
    while (i < s.size() && (static_cast<unsigned char>(s[i]) & 0xC0) == 0x80) ++i;
  }
  if (chars <= max) return s;
  return s.substr(0, cut_at) + "\xE2\x80\xA6";
}

namespace {

std::string JsonInner(const std::string& s) {
  std::string quoted =
      nlohmann::json(s).dump(-1, ' ', false, nlohmann::json::error_handler_t::replace);
  return quoted.substr(1, quoted.size() - 2);
}

}  // namespace

std::vector<HttpRequest> SmsRequests(const SmsOptions& o, const Batch& batch) {
  const std::string message = CutMessage(o.text->Render(batch), o.max_length);
  const std::map<std::string, std::string> fields = {{"message", message},
                                                     {"message_url", UrlEncode(message)},
                                                     {"message_json", JsonInner(message)}};
  std::vector<HttpRequest> out;
  switch (o.preset) {
    case SmsOptions::Preset::kFreeMobile: {
      HttpRequest r;
      r.method = "GET";
      r.url = absl::StrCat(o.url, "?user=", UrlEncode(o.user), "&pass=", UrlEncode(o.password),
                           "&msg=", UrlEncode(message));
      r.timeout = o.timeout;
      out.push_back(std::move(r));
      break;
    }
    case SmsOptions::Preset::kTwilio:
      for (const std::string& to : o.to) {
        HttpRequest r;
        r.url = absl::StrCat(o.url, "/2010-04-01/Accounts/", UrlEncode(o.user), "/Messages.json");
        r.headers = {"Content-Type: application/x-www-form-urlencoded"};
        r.body = absl::StrCat("To=", UrlEncode(to), "&From=", UrlEncode(o.from),
                              "&Body=", UrlEncode(message));
        r.basic_auth_username = o.user;
        r.basic_auth_password = o.password;
        r.timeout = o.timeout;
        out.push_back(std::move(r));
      }
      break;
    case SmsOptions::Preset::kHttp: {
      HttpRequest r;
      r.method = o.method;
      r.url = o.url_template->Render(batch, fields);
      for (const auto& [name, t] : o.headers) {
        r.headers.push_back(absl::StrCat(name, ": ", t->Render(batch, fields)));
      }
      if (o.body) r.body = o.body->Render(batch, fields);
      r.timeout = o.timeout;
      out.push_back(std::move(r));
      break;
    }
  }
  return out;
}

absl::Status SmsChannel::Send(const Batch& batch) {
  const std::string what = absl::StrCat("sms ", options_.receiver);
  for (const HttpRequest& r : SmsRequests(options_, batch)) {
    // Twilio: a recipient already sent gets it again on a retry; the gateway has no key.
    if (absl::Status s = SendHttp(what, r); !s.ok()) return s;
  }
  return absl::OkStatus();
}

}  // namespace vigie::notifier
