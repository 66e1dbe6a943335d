// Slack incoming webhooks: one message per notification with a colour by status and severity,
// a title linking to the control plane, a text, and the labels as fields.
#ifndef VIGIE_NOTIFIER_SLACK_H_
#define VIGIE_NOTIFIER_SLACK_H_

#include <memory>
#include <string>

#include "absl/time/time.h"
#include "notifier/channel.h"
#include "notifier/template.h"

namespace vigie::notifier {

struct SlackOptions {
  std::string receiver;
  std::string api_url;  // the incoming-webhook URL: a secret
  std::string channel;  // optional override ("#ops")
  std::string username;
  std::shared_ptr<Template> title, text;
  absl::Duration timeout = absl::Seconds(10);
  bool send_resolved = true;
};

extern const char kDefaultSlackTitle[];
extern const char kDefaultSlackText[];

// The JSON body posted to Slack.
std::string SlackPayload(const SlackOptions& options, const Batch& batch);

class SlackChannel : public Channel {
 public:
  explicit SlackChannel(SlackOptions options) : options_(std::move(options)) {}
  absl::Status Send(const Batch& batch) override;
  bool send_resolved() const override { return options_.send_resolved; }

 private:
  const SlackOptions options_;
};

}  // namespace vigie::notifier

#endif  // VIGIE_NOTIFIER_SLACK_H_
