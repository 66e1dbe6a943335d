// Generic JSON webhook, payload compatible with Alertmanager's webhook (version "4"), so
// receivers written for Alertmanager work unchanged.
#ifndef VIGIE_NOTIFIER_WEBHOOK_H_
#define VIGIE_NOTIFIER_WEBHOOK_H_

#include <string>

#include "absl/time/time.h"
#include "notifier/channel.h"

namespace vigie::notifier {

struct WebhookOptions {
  std::string receiver;  // receiver name, put in the payload
  std::string url;
  absl::Duration timeout = absl::Seconds(10);
  bool send_resolved = true;
  std::string external_url;
};

// The Alertmanager-compatible JSON body for one notification.
std::string WebhookPayload(const v1::NotifyRequest& request, const std::string& receiver,
                           const std::string& external_url);

// POSTs WebhookPayload() with libcurl; 2xx is success. Thread-safe (one curl handle per call).
// Requires curl_global_init() in main.
class WebhookChannel : public Channel {
 public:
  explicit WebhookChannel(WebhookOptions options) : options_(std::move(options)) {}
  absl::Status Send(const v1::NotifyRequest& request) override;
  bool send_resolved() const override { return options_.send_resolved; }

 private:
  const WebhookOptions options_;
};

}  // namespace vigie::notifier

#endif  // VIGIE_NOTIFIER_WEBHOOK_H_
