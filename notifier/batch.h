// What one delivery carries: the alerts of one group, sent together to one receiver.
#ifndef VIGIE_NOTIFIER_BATCH_H_
#define VIGIE_NOTIFIER_BATCH_H_

#include <map>
#include <memory>
#include <string>
#include <vector>

#include "vigie/v1/notifier.pb.h"

namespace vigie::notifier {

struct Batch {
  // The receiver it goes to.
  std::string receiver;
  // Identifies the group (the route and the group_by values), e.g.
  // `route2:{alertname="DiskFull"}`; stable across messages of the group.
  std::string group_key;
  // The group_by labels and their values (empty when each alert is a group of its own).
  std::map<std::string, std::string> group_labels;
  // Firing alerts first, then resolved ones; never empty.
  std::vector<v1::NotifyRequest> alerts;
  // Unique per message: the single alert's idempotency key for a first message of one alert,
  // otherwise derived from the group and the alerts' keys (repeats get a key of their own).
  std::string key;
  // A repeat of a group still firing (repeat_interval), not a change.
  bool repeat = false;

  // A batch of one alert, as sent when grouping is off.
  static Batch Of(const v1::NotifyRequest& request, std::string receiver = "");
  // "firing" when any alert is firing, else "resolved".
  bool Firing() const;
  size_t FiringCount() const;
  // The first alert: what single-alert fields (summary, severity...) describe.
  const v1::Notification& First() const { return alerts.front().notification(); }
};

inline Batch Batch::Of(const v1::NotifyRequest& request, std::string receiver) {
  Batch b;
  b.receiver = std::move(receiver);
  b.group_key = request.notification().fingerprint();
  b.alerts.push_back(request);
  b.key = request.idempotency_key();
  return b;
}

inline size_t Batch::FiringCount() const {
  size_t n = 0;
  for (const v1::NotifyRequest& a : alerts) {
    n += a.notification().status() != v1::Notification::STATUS_RESOLVED;
  }
  return n;
}

inline bool Batch::Firing() const { return FiringCount() > 0; }

struct SpoolFile;

// One accepted notification while it waits in groups and deliveries: finished (its spool entry
// released) once every group it joined is done with it.
struct AcceptedNotification {
  v1::NotifyRequest request;
  // The spool file holding it (null without a spool); shared by a batch of the spool writer.
  std::shared_ptr<SpoolFile> spool;
  // Groups not yet done with it.
  size_t remaining = 0;
};

}  // namespace vigie::notifier

#endif  // VIGIE_NOTIFIER_BATCH_H_
