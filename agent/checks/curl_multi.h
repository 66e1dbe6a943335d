// libcurl's multi interface on the check loop: many transfers, no thread each.
#ifndef VIGIE_AGENT_CHECKS_CURL_MULTI_H_
#define VIGIE_AGENT_CHECKS_CURL_MULTI_H_

#include <curl/curl.h>

#include <functional>

#include "absl/container/flat_hash_map.h"
#include "absl/time/time.h"
#include "agent/checks/event_loop.h"

namespace vigie::agent::checks {

// All on the loop's thread.
class CurlMulti {
 public:
  explicit CurlMulti(EventLoop* loop);
  ~CurlMulti();
  CurlMulti(const CurlMulti&) = delete;
  CurlMulti& operator=(const CurlMulti&) = delete;

  // Starts `easy`; `done` runs (from a loop callback or OnTimer) when it finishes. The caller
  // keeps ownership of `easy` and must Remove() it before cleaning it up if it has not finished.
  void Add(CURL* easy, std::function<void(CURLcode)> done);
  // Stops an unfinished transfer; no-op once `done` has run.
  void Remove(CURL* easy);
  // curl's own timer (timeouts, retries); the loop calls OnTimer() when it is due.
  absl::Time NextTimer() const { return timer_; }
  void OnTimer();
  size_t running() const { return done_.size(); }

 private:
  static int OnSocket(CURL* easy, curl_socket_t s, int what, void* self, void* socketp);
  static int OnTimerChange(CURLM* multi, long timeout_ms, void* self);  // NOLINT(runtime/int)
  void Action(curl_socket_t s, int flags);
  void Finished();

  EventLoop* const loop_;
  CURLM* const multi_;
  absl::Time timer_ = absl::InfiniteFuture();
  absl::flat_hash_map<CURL*, std::function<void(CURLcode)>> done_;
};

}  // namespace vigie::agent::checks

#endif  // VIGIE_AGENT_CHECKS_CURL_MULTI_H_
