// A delivery channel: one way to hand a notification to people (webhook now; email, SMS and
// Slack later). Implementations must be thread-safe.
#ifndef VIGIE_NOTIFIER_CHANNEL_H_
#define VIGIE_NOTIFIER_CHANNEL_H_

#include <string>

#include "absl/status/status.h"
#include "vigie/v1/notifier.pb.h"

namespace vigie::notifier {

class Channel {
 public:
  virtual ~Channel() = default;
  // Delivers one notification. kUnavailable (or any error) means "retry later";
  // kInvalidArgument means retrying cannot help.
  virtual absl::Status Send(const v1::NotifyRequest& request) = 0;
  // Whether resolved notifications go to this channel.
  virtual bool send_resolved() const { return true; }
};

}  // namespace vigie::notifier

#endif  // VIGIE_NOTIFIER_CHANNEL_H_
