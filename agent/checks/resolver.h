// One DNS lookup with c-ares on the check loop: never blocks a thread, and its own channel, so
// abandoning it (at the check's deadline) cancels nothing else.
#ifndef VIGIE_AGENT_CHECKS_RESOLVER_H_
#define VIGIE_AGENT_CHECKS_RESOLVER_H_

#include <ares.h>

#include <functional>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "absl/time/time.h"
#include "agent/checks/event_loop.h"

namespace vigie::agent::checks {

class Resolver {
 public:
  explicit Resolver(EventLoop* loop) : loop_(loop) {}
  ~Resolver();
  Resolver(const Resolver&) = delete;
  Resolver& operator=(const Resolver&) = delete;

  // `servers` as c-ares takes them ("127.0.0.1:5353,[::1]:53"); empty = the system's
  // (/etc/resolv.conf). `timeout` bounds the whole lookup.
  absl::Status Init(const std::string& servers, absl::Duration timeout);

  // The addresses of `host` (IPv4 and IPv6, as text), or an error naming the host and why.
  void LookupAddresses(const std::string& host,
                       std::function<void(absl::StatusOr<std::vector<std::string>>)> done);
  // A raw query of `type` (ns_t_a, ns_t_mx, ...): `done` gets the ares status and the answer.
  void Query(const std::string& name, int type,
             std::function<void(int status, const unsigned char* answer, int length)> done);

  absl::Time NextTimer() const;
  void OnTimer();

 private:
  static void OnSocketState(void* self, ares_socket_t fd, int readable, int writable);

  EventLoop* const loop_;
  ares_channel channel_ = nullptr;
  bool destroying_ = false;
  std::function<void(absl::StatusOr<std::vector<std::string>>)> addresses_done_;
  std::function<void(int, const unsigned char*, int)> query_done_;
};

// c-ares's status as words, e.g. "no such domain (NXDOMAIN)".
std::string AresError(int status);

}  // namespace vigie::agent::checks

#endif  // VIGIE_AGENT_CHECKS_RESOLVER_H_
