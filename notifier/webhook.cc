#include "notifier/webhook.h"

#include <openssl/evp.h>
#include <openssl/hmac.h>

#include <memory>

#include "absl/strings/escaping.h"
#include "absl/strings/str_cat.h"
#include "nlohmann/json.hpp"
#include "notifier/http_request.h"

namespace vigie::notifier {
namespace {

std::string Rfc3339(int64_t ms) {
  if (ms == 0) return "0001-01-01T00:00:00Z";  // Alertmanager's "not ended"
  return absl::FormatTime("%Y-%m-%dT%H:%M:%E3SZ", absl::FromUnixMillis(ms), absl::UTCTimeZone());
}

template <typename Map>
nlohmann::json Object(const Map& m) {
  nlohmann::json j = nlohmann::json::object();
  for (const auto& [k, v] : m) j[k] = v;
  return j;
}

}  // namespace

std::string WebhookPayload(const v1::NotifyRequest& request, const std::string& receiver,
                           const std::string& external_url) {
  const v1::Notification& n = request.notification();
  const char* status = n.status() == v1::Notification::STATUS_RESOLVED ? "resolved" : "firing";
  nlohmann::json labels = Object(n.labels());
  nlohmann::json annotations = Object(n.annotations());
  nlohmann::json alert = {
      {"status", status},
      {"labels", labels},
      {"annotations", annotations},
      {"startsAt", Rfc3339(n.starts_at_ms())},
      {"endsAt", Rfc3339(n.ends_at_ms())},
      {"generatorURL", n.generator_url()},
      {"fingerprint", n.fingerprint()},
  };
  const std::string alertname =
      n.labels().count("alertname") ? n.labels().at("alertname") : n.rule();
  nlohmann::json body = {
      {"receiver", receiver},
      {"status", status},
      {"alerts", nlohmann::json::array({alert})},
      {"groupLabels", {{"alertname", alertname}}},
      {"commonLabels", labels},
      {"commonAnnotations", annotations},
      {"externalURL", external_url},
      {"version", "4"},
      {"groupKey", absl::StrCat("{}:{alertname=\"", alertname, "\"}")},
      {"truncatedAlerts", 0},
      // Vigie's own addition: receivers can drop duplicates on it.
      {"idempotencyKey", request.idempotency_key()},
  };
  return body.dump();
}

std::string WebhookSignature(const std::string& secret, const std::string& body) {
  unsigned char mac[EVP_MAX_MD_SIZE];
  unsigned int len = 0;
  HMAC(EVP_sha256(), secret.data(), static_cast<int>(secret.size()),
       reinterpret_cast<const unsigned char*>(body.data()), body.size(), mac, &len);
  return absl::StrCat("sha256=",
                      absl::BytesToHexString(std::string(reinterpret_cast<char*>(mac), len)));
}

absl::Status WebhookChannel::Send(const v1::NotifyRequest& request) {
  const std::string what = absl::StrCat("webhook ", options_.receiver);
  if (!SafeForHeader(request.idempotency_key(), 512)) {
    return absl::InvalidArgumentError(absl::StrCat(what, ": idempotency key unfit for a header"));
  }
  HttpRequest r;
  r.url = options_.url;
  r.body = WebhookPayload(request, options_.receiver, options_.external_url);
  r.headers = {"Content-Type: application/json",
               absl::StrCat("Idempotency-Key: ", request.idempotency_key())};
  if (!options_.hmac_secret.empty()) {
    r.headers.push_back(
        absl::StrCat("X-Vigie-Signature-256: ", WebhookSignature(options_.hmac_secret, r.body)));
  }
  r.timeout = options_.timeout;
  return SendHttp(what, r);
}

}  // namespace vigie::notifier
