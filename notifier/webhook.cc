#include "notifier/webhook.h"

#include <openssl/evp.h>
#include <openssl/hmac.h>

#include <map>
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

std::string WebhookPayload(const Batch& batch, const std::string& receiver,
                           const std::string& external_url) {
  nlohmann::json alerts = nlohmann::json::array();
  // Labels and annotations every alert shares (Alertmanager's commonLabels/commonAnnotations).
  std::map<std::string, std::string> common_labels, common_annotations;
  bool first = true;
  for (const v1::NotifyRequest& r : batch.alerts) {
    const v1::Notification& n = r.notification();
    std::map<std::string, std::string> labels(n.labels().begin(), n.labels().end());
    std::map<std::string, std::string> annotations(n.annotations().begin(), n.annotations().end());
    alerts.push_back({
        {"status", n.status() == v1::Notification::STATUS_RESOLVED ? "resolved" : "firing"},
        {"labels", Object(labels)},
        {"annotations", Object(annotations)},
        {"startsAt", Rfc3339(n.starts_at_ms())},
        {"endsAt", Rfc3339(n.ends_at_ms())},
        {"generatorURL", n.generator_url()},
        {"fingerprint", n.fingerprint()},
        // Vigie's own: each alert keeps its key, to deduplicate on.
        {"idempotencyKey", r.idempotency_key()},
    });
    // Vigie's own too: who acknowledged it, the silence it is under (firing alerts only).
    if (!n.acknowledged_by().empty()) {
      alerts.back()["acknowledgedBy"] = n.acknowledged_by();
      alerts.back()["acknowledgementComment"] = n.acknowledgement_comment();
    }
    if (!n.silenced_by().empty()) alerts.back()["silencedBy"] = n.silenced_by();
    auto intersect = [&](std::map<std::string, std::string>& common,
                         const std::map<std::string, std::string>& mine) {
      if (first) {
        common = mine;
        return;
      }
      for (auto it = common.begin(); it != common.end();) {
        auto m = mine.find(it->first);
        it = (m == mine.end() || m->second != it->second) ? common.erase(it) : std::next(it);
      }
    };
    intersect(common_labels, labels);
    intersect(common_annotations, annotations);
    first = false;
  }
  const v1::Notification& n = batch.First();
  std::map<std::string, std::string> group_labels = batch.group_labels;
  if (group_labels.empty()) {
    group_labels["alertname"] =
        n.labels().count("alertname") ? n.labels().at("alertname") : n.rule();
  }
  std::string group_key = "{}:{";
  bool first_label = true;
  for (const auto& [k, v] : group_labels) {
    absl::StrAppend(
        &group_key, first_label ? "" : ",", k, "=",
        nlohmann::json(v).dump(-1, ' ', false, nlohmann::json::error_handler_t::replace));
    first_label = false;
  }
  group_key += "}";
  nlohmann::json body = {
      {"receiver", receiver},
      {"status", batch.Firing() ? "firing" : "resolved"},
      {"alerts", alerts},
      {"groupLabels", Object(group_labels)},
      {"commonLabels", Object(common_labels)},
      {"commonAnnotations", Object(common_annotations)},
      {"externalURL", external_url},
      {"version", "4"},
      {"groupKey", group_key},
      {"truncatedAlerts", 0},
      // Vigie's own addition: receivers can drop duplicate messages on it.
      {"idempotencyKey", batch.key},
  };
  // Invalid UTF-8 in a label is replaced, never an exception (JSON must be UTF-8).
  return body.dump(-1, ' ', false, nlohmann::json::error_handler_t::replace);
}

std::string WebhookSignature(const std::string& secret, const std::string& body) {
  unsigned char mac[EVP_MAX_MD_SIZE];
  unsigned int len = 0;
  HMAC(EVP_sha256(), secret.data(), static_cast<int>(secret.size()),
       reinterpret_cast<const unsigned char*>(body.data()), body.size(), mac, &len);
  return absl::StrCat("sha256=",
                      absl::BytesToHexString(std::string(reinterpret_cast<char*>(mac), len)));
}

absl::Status WebhookChannel::Send(const Batch& batch) {
  const std::string what = absl::StrCat("webhook ", options_.receiver);
  if (!SafeForHeader(batch.key, 512)) {
    return absl::InvalidArgumentError(absl::StrCat(what, ": idempotency key unfit for a header"));
  }
  HttpRequest r;
  r.url = options_.url;
  r.body = WebhookPayload(batch, options_.receiver, options_.external_url);
  r.headers = {"Content-Type: application/json", absl::StrCat("Idempotency-Key: ", batch.key)};
  if (!options_.hmac_secret.empty()) {
    r.headers.push_back(
        absl::StrCat("X-Vigie-Signature-256: ", WebhookSignature(options_.hmac_secret, r.body)));
  }
  r.timeout = options_.timeout;
  return SendHttp(what, r);
}

}  // namespace vigie::notifier
