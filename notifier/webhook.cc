#include "notifier/webhook.h"

#include <curl/curl.h>

#include <memory>

#include "absl/strings/str_cat.h"
#include "nlohmann/json.hpp"

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

size_t Discard(char*, size_t size, size_t n, void*) { return size * n; }

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

absl::Status WebhookChannel::Send(const v1::NotifyRequest& request) {
  const std::string body = WebhookPayload(request, options_.receiver, options_.external_url);
  std::unique_ptr<CURL, void (*)(CURL*)> curl(curl_easy_init(), curl_easy_cleanup);
  if (!curl) return absl::InternalError("curl_easy_init failed");
  curl_slist* headers = nullptr;
  headers = curl_slist_append(headers, "Content-Type: application/json");
  headers = curl_slist_append(headers, "User-Agent: Vigie-Notifier/" VIGIE_VERSION);
  headers = curl_slist_append(headers,
                              absl::StrCat("Idempotency-Key: ", request.idempotency_key()).c_str());
  std::unique_ptr<curl_slist, void (*)(curl_slist*)> header_guard(headers, curl_slist_free_all);
  char error[CURL_ERROR_SIZE] = {0};
  CURL* c = curl.get();
  curl_easy_setopt(c, CURLOPT_URL, options_.url.c_str());
  curl_easy_setopt(c, CURLOPT_POST, 1L);
  curl_easy_setopt(c, CURLOPT_POSTFIELDS, body.data());
  curl_easy_setopt(c, CURLOPT_POSTFIELDSIZE, static_cast<long>(body.size()));
  curl_easy_setopt(c, CURLOPT_HTTPHEADER, headers);
  curl_easy_setopt(c, CURLOPT_TIMEOUT_MS,
                   static_cast<long>(absl::ToInt64Milliseconds(options_.timeout)));
  curl_easy_setopt(c, CURLOPT_NOSIGNAL, 1L);
  curl_easy_setopt(c, CURLOPT_PROTOCOLS_STR, "http,https");
  curl_easy_setopt(c, CURLOPT_WRITEFUNCTION, Discard);
  curl_easy_setopt(c, CURLOPT_ERRORBUFFER, error);
  CURLcode rc = curl_easy_perform(c);
  if (rc != CURLE_OK) {
    // The URL is not in the message: webhook URLs often carry secrets.
    return absl::UnavailableError(absl::StrCat("webhook ", options_.receiver, ": ",
                                               error[0] ? error : curl_easy_strerror(rc)));
  }
  long code = 0;
  curl_easy_getinfo(c, CURLINFO_RESPONSE_CODE, &code);
  if (code >= 200 && code < 300) return absl::OkStatus();
  if (code >= 400 && code < 500 && code != 408 && code != 429) {
    return absl::InvalidArgumentError(
        absl::StrCat("webhook ", options_.receiver, ": HTTP ", code, " (not retried)"));
  }
  return absl::UnavailableError(absl::StrCat("webhook ", options_.receiver, ": HTTP ", code));
}

}  // namespace vigie::notifier
