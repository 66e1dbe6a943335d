// A delivery channel: one way to hand a message to people (webhook, email, SMS, Slack).
// Implementations must be thread-safe.
#ifndef VIGIE_NOTIFIER_CHANNEL_H_
#define VIGIE_NOTIFIER_CHANNEL_H_

#include <string>

#include "absl/status/status.h"
#include "notifier/batch.h"

namespace vigie::notifier {

class Channel {
 public:
  virtual ~Channel() = default;
  // Delivers one message (the alerts of one group). kUnavailable (or any error) means "retry
  // later"; kInvalidArgument means retrying cannot help.
  virtual absl::Status Send(const Batch& batch) = 0;
  // Whether resolved notifications go to this channel.
  virtual bool send_resolved() const { return true; }
};

}  // namespace vigie::notifier

#endif  // VIGIE_NOTIFIER_CHANNEL_H_
