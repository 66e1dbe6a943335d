// SMS through HTTP gateways: a generic templated request (method, URL, headers, body), and two
// presets: "free_mobile" (GET with user and pass in the query, the style of Free Mobile's API)
// and "twilio" (a form POST per recipient with HTTP basic auth, the style of Twilio's API).
// The message is cut to max_length characters (default 160, UTF-8 safe, "…" at the end).
#ifndef VIGIE_NOTIFIER_SMS_H_
#define VIGIE_NOTIFIER_SMS_H_

#include <map>
#include <memory>
#include <string>
#include <vector>

#include "absl/time/time.h"
#include "notifier/channel.h"
#include "notifier/http_request.h"
#include "notifier/template.h"

namespace vigie::notifier {

struct SmsOptions {
  std::string receiver;
  enum class Preset { kHttp, kFreeMobile, kTwilio } preset = Preset::kHttp;
  std::string url;       // presets: the API's base URL (overridable); http: a template
  std::string user;      // free_mobile: user; twilio: account SID
  std::string password;  // free_mobile: pass; twilio: auth token (secret)
  std::string from;
  std::vector<std::string> to;
  // http preset: method, header templates, body template. Besides the alert's fields they
  // see `message` (the cut text), `message_url` (percent-encoded) and `message_json` (a JSON
  // string body, without quotes).
  std::string method = "POST";
  std::map<std::string, std::shared_ptr<Template>> headers;
  std::shared_ptr<Template> url_template, body;
  std::shared_ptr<Template> text;
  size_t max_length = 160;
  absl::Duration timeout = absl::Seconds(10);
  bool send_resolved = true;
};

extern const char kDefaultSmsText[];
extern const char kFreeMobileUrl[];
extern const char kTwilioUrl[];

// Cuts UTF-8 `s` to at most `max` characters, ending with "…" when cut.
std::string CutMessage(const std::string& s, size_t max);

// The requests a notification becomes (one per recipient for twilio).
std::vector<HttpRequest> SmsRequests(const SmsOptions& options, const Batch& batch);

class SmsChannel : public Channel {
 public:
  explicit SmsChannel(SmsOptions options) : options_(std::move(options)) {}
  absl::Status Send(const Batch& batch) override;
  bool send_resolved() const override { return options_.send_resolved; }

 private:
  const SmsOptions options_;
};

}  // namespace vigie::notifier

#endif  // VIGIE_NOTIFIER_SMS_H_
