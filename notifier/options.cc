#include "notifier/options.h"

#include <set>

#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "common/secrets.h"
#include "common/status.h"
#include "common/yaml_config.h"
#include "re2/re2.h"

namespace vigie::notifier {

absl::StatusOr<NotifierOptions> NotifierOptionsFromConfig(const v1::NotifierConfig& c) {
  NotifierOptions o;
  VIGIE_ASSIGN_OR_RETURN(o.grpc, GrpcListenerFromConfig(c.grpc_listen(), "127.0.0.1:7401", c.tls(),
                                                        c.insecure(), c.health_listen()));
  if (!IsSet(c.client_token())) {
    return absl::InvalidArgumentError(
        "client_token: required: the token the control plane presents (its notifier_token), "
        "e.g. client_token: {file: /etc/vigie/notifier.token}");
  }
  VIGIE_ASSIGN_OR_RETURN(o.client_token, ReadSecret("client_token", c.client_token(), 32));
  VIGIE_ASSIGN_OR_RETURN(o.http_listen,
                         ListenAddress("http_listen", c.http_listen(), o.http_listen));
  VIGIE_ASSIGN_OR_RETURN(o.http_auth, HttpAuthFromConfig("http", o.http_listen, c.http()));
  if (c.max_queue() != 0) o.delivery.max_queue = c.max_queue();
  if (c.max_remembered_keys() != 0) o.delivery.max_remembered_keys = c.max_remembered_keys();
  if (c.delivery_workers() != 0) o.delivery.workers = static_cast<int>(c.delivery_workers());
  if (o.delivery.workers > 64) {
    return absl::InvalidArgumentError(
        absl::StrCat("delivery_workers: at most 64, got ", c.delivery_workers()));
  }
  VIGIE_ASSIGN_OR_RETURN(o.delivery.backoff,
                         BackoffFromConfig("retry_backoff", c.retry_backoff(), o.delivery.backoff));
  VIGIE_ASSIGN_OR_RETURN(
      o.delivery.give_up_after,
      ParseConfigDuration("give_up_after", c.give_up_after(), o.delivery.give_up_after));
  o.delivery.spool_directory = c.spool_directory();
  static const RE2 kName("[A-Za-z0-9._-]{1,64}");
  std::set<std::string> names;
  for (int i = 0; i < c.receivers_size(); ++i) {
    const v1::Receiver& r = c.receivers(i);
    const std::string field = absl::StrCat("receivers[", i, "]");
    if (!RE2::FullMatch(r.name(), kName)) {
      return absl::InvalidArgumentError(absl::StrCat(
          field, ".name: \"", r.name(), "\" must be 1-64 characters of A-Z a-z 0-9 . _ -"));
    }
    if (!names.insert(r.name()).second) {
      return absl::InvalidArgumentError(
          absl::StrCat(field, ".name: \"", r.name(), "\" is used by an earlier receiver"));
    }
    if (!r.has_webhook()) {
      return absl::InvalidArgumentError(absl::StrCat(field, ": needs a channel (webhook)"));
    }
    WebhookOptions w;
    w.receiver = r.name();
    w.url = r.webhook().url();
    if (!absl::StartsWith(w.url, "http://") && !absl::StartsWith(w.url, "https://")) {
      // The value is not echoed: webhook URLs often carry secrets.
      return absl::InvalidArgumentError(
          absl::StrCat(field, ".webhook.url: must start with http:// or https://"));
    }
    VIGIE_ASSIGN_OR_RETURN(w.timeout, ParseConfigDuration(absl::StrCat(field, ".webhook.timeout"),
                                                          r.webhook().timeout(), w.timeout));
    w.send_resolved = !r.webhook().has_send_resolved() || r.webhook().send_resolved();
    w.external_url = c.external_url();
    o.webhooks.push_back(std::move(w));
  }
  return o;
}

}  // namespace vigie::notifier
