#include "agent/checks/curl_multi.h"

#include <vector>

namespace vigie::agent::checks {

CurlMulti::CurlMulti(EventLoop* loop) : loop_(loop), multi_(curl_multi_init()) {
  curl_multi_setopt(multi_, CURLMOPT_SOCKETFUNCTION, &CurlMulti::OnSocket);
  curl_multi_setopt(multi_, CURLMOPT_SOCKETDATA, this);
  curl_multi_setopt(multi_, CURLMOPT_TIMERFUNCTION, &CurlMulti::OnTimerChange);
  curl_multi_setopt(multi_, CURLMOPT_TIMERDATA, this);
}

CurlMulti::~CurlMulti() {
  for (auto& [easy, done] : done_) curl_multi_remove_handle(multi_, easy);
  curl_multi_cleanup(multi_);
}

void CurlMulti::Add(CURL* easy, std::function<void(CURLcode)> done) {
  done_[easy] = std::move(done);
  curl_multi_add_handle(multi_, easy);
}

void CurlMulti::Remove(CURL* easy) {
  if (done_.erase(easy) > 0) curl_multi_remove_handle(multi_, easy);
}

int CurlMulti::OnSocket(CURL*, curl_socket_t s, int what, void* self, void*) {
  auto* m = static_cast<CurlMulti*>(self);
  if (what == CURL_POLL_REMOVE) {
    m->loop_->Unwatch(s);
    return 0;
  }
  m->loop_->Watch(s, what == CURL_POLL_IN || what == CURL_POLL_INOUT,
                  what == CURL_POLL_OUT || what == CURL_POLL_INOUT, [m, s](bool r, bool w) {
                    m->Action(s, (r ? CURL_CSELECT_IN : 0) | (w ? CURL_CSELECT_OUT : 0));
                  });
  return 0;
}

int CurlMulti::OnTimerChange(CURLM*, long timeout_ms, void* self) {  // NOLINT(runtime/int)
  auto* m = static_cast<CurlMulti*>(self);
  m->timer_ =
      timeout_ms < 0 ? absl::InfiniteFuture() : absl::Now() + absl::Milliseconds(timeout_ms);
  return 0;
}

void CurlMulti::OnTimer() {
  timer_ = absl::InfiniteFuture();
  Action(CURL_SOCKET_TIMEOUT, 0);
}

void CurlMulti::Action(curl_socket_t s, int flags) {
  int running = 0;
  curl_multi_socket_action(multi_, s, flags, &running);
  Finished();
}

void CurlMulti::Finished() {
  // Collected first: a `done` callback may destroy its probe, which removes other handles.
  std::vector<std::pair<CURL*, CURLcode>> finished;
  int left = 0;
  while (CURLMsg* msg = curl_multi_info_read(multi_, &left)) {
    if (msg->msg == CURLMSG_DONE) finished.emplace_back(msg->easy_handle, msg->data.result);
  }
  for (auto [easy, code] : finished) {
    auto it = done_.find(easy);
    if (it == done_.end()) continue;
    std::function<void(CURLcode)> done = std::move(it->second);
    done_.erase(it);
    curl_multi_remove_handle(multi_, easy);
    done(code);
  }
}

}  // namespace vigie::agent::checks
