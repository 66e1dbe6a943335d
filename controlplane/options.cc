#include "controlplane/options.h"

#include "absl/strings/str_cat.h"
#include "common/status.h"
#include "common/yaml_config.h"

namespace vigie::controlplane {

absl::StatusOr<ControlPlaneOptions> ControlPlaneOptionsFromConfig(const v1::ControlPlaneConfig& c) {
  ControlPlaneOptions o;
  // Agent and admin authentication are not built yet, so nothing may listen beyond loopback.
  VIGIE_ASSIGN_OR_RETURN(o.grpc_listen,
                         LoopbackListenAddress("grpc_listen", c.grpc_listen(), o.grpc_listen));
  VIGIE_ASSIGN_OR_RETURN(o.http_listen,
                         LoopbackListenAddress("http_listen", c.http_listen(), o.http_listen));
  o.database_url = c.database_url();
  if (o.database_url.empty()) {
    return absl::InvalidArgumentError(
        "database_url: required, e.g. \"postgresql://vigie@127.0.0.1:5432/vigie\"");
  }
  o.notifier = c.notifier();
  if (!o.notifier.empty()) VIGIE_RETURN_IF_ERROR(ValidateHostPort("notifier", o.notifier));
  if (c.storage_workers() != 0) o.storage_workers = static_cast<int>(c.storage_workers());
  if (o.storage_workers > 64) {
    return absl::InvalidArgumentError(
        absl::StrCat("storage_workers: at most 64, got ", c.storage_workers()));
  }
  if (c.max_inflight_per_stream() != 0) {
    o.gateway.max_inflight_per_stream = c.max_inflight_per_stream();
  }
  if (o.gateway.max_inflight_per_stream > 1024) {
    return absl::InvalidArgumentError(
        absl::StrCat("max_inflight_per_stream: at most 1024, got ", c.max_inflight_per_stream()));
  }
  if (c.max_message_bytes() != 0) o.max_message_bytes = c.max_message_bytes();
  if (o.max_message_bytes < 1024 || o.max_message_bytes > (64u << 20)) {
    return absl::InvalidArgumentError(absl::StrCat(
        "max_message_bytes: must be between 1024 and 67108864, got ", c.max_message_bytes()));
  }
  if (c.max_samples_per_batch() != 0) o.gateway.max_samples_per_batch = c.max_samples_per_batch();
  if (c.max_labels_per_sample() != 0) o.gateway.max_labels_per_sample = c.max_labels_per_sample();
  VIGIE_ASSIGN_OR_RETURN(o.gateway.heartbeat_interval,
                         ParseConfigDuration("heartbeat_interval", c.heartbeat_interval(),
                                             o.gateway.heartbeat_interval));
  if (o.gateway.heartbeat_interval < absl::Seconds(1)) {
    return absl::InvalidArgumentError(
        absl::StrCat("heartbeat_interval: at least 1s, got \"", c.heartbeat_interval(), "\""));
  }
  VIGIE_ASSIGN_OR_RETURN(o.notify_backoff,
                         BackoffFromConfig("notify_backoff", c.notify_backoff(), o.notify_backoff));
  o.gateway.generator_url =
      c.external_url().empty() ? absl::StrCat("http://", o.http_listen, "/") : c.external_url();
  VIGIE_ASSIGN_OR_RETURN(o.rules, RulesFromProto(c.rules()));
  return o;
}

}  // namespace vigie::controlplane
