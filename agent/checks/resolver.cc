#include "agent/checks/resolver.h"

#include <arpa/inet.h>
#include <arpa/nameser.h>
#include <netdb.h>

#include <algorithm>
#include <atomic>
#include <mutex>

#include "absl/strings/str_cat.h"

namespace vigie::agent::checks {

std::string AresError(int status) {
  switch (status) {
    case ARES_ENOTFOUND:
      return "no such domain (NXDOMAIN)";
    case ARES_ENODATA:
      return "no records of that type";
    case ARES_ETIMEOUT:
      return "the DNS server did not answer (timeout)";
    case ARES_ECONNREFUSED:
      return "the DNS server refused the connection";
    case ARES_ESERVFAIL:
      return "the DNS server failed (SERVFAIL)";
    case ARES_EREFUSED:
      return "the DNS server refused the query (REFUSED)";
    default:
      return ares_strerror(status);
  }
}

Resolver::~Resolver() {
  if (channel_ != nullptr) {
    destroying_ = true;  // ares_destroy calls pending callbacks with ARES_EDESTRUCTION
    ares_destroy(channel_);
  }
}

namespace {

int ServerCount(ares_channel channel) {
  ares_addr_port_node* servers = nullptr;
  if (ares_get_servers_ports(channel, &servers) != ARES_SUCCESS) return 1;
  int n = 0;
  for (ares_addr_port_node* s = servers; s != nullptr; s = s->next) ++n;
  ares_free_data(servers);
  return std::max(n, 1);
}

}  // namespace

absl::Status Resolver::Init(const std::string& servers, absl::Duration timeout) {
  static std::once_flag once;
  std::call_once(once, [] { ares_library_init(ARES_LIB_INIT_ALL); });
  // The system's server count, learnt once (resolv.conf rarely changes under an agent).
  static std::atomic<int> system_servers{0};
  // c-ares asks each server in turn, `tries` rounds, doubling the per-try timeout each round:
  // one round, with the deadline shared among the servers, keeps the lookup within `timeout`
  // and every server asked.
  const int count = !servers.empty()
                        ? static_cast<int>(std::count(servers.begin(), servers.end(), ',')) + 1
                    : system_servers.load() > 0 ? system_servers.load()
                                                : 1;
  ares_options o{};
  o.sock_state_cb = &Resolver::OnSocketState;
  o.sock_state_cb_data = this;
  o.timeout = static_cast<int>(std::max<int64_t>(absl::ToInt64Milliseconds(timeout) / count, 50));
  o.tries = 1;
  int r = ares_init_options(&channel_, &o,
                            ARES_OPT_SOCK_STATE_CB | ARES_OPT_TIMEOUTMS | ARES_OPT_TRIES);
  if (r != ARES_SUCCESS) {
    channel_ = nullptr;
    return absl::UnavailableError(absl::StrCat("DNS resolver: ", ares_strerror(r)));
  }
  if (!servers.empty()) {
    r = ares_set_servers_ports_csv(channel_, servers.c_str());
    if (r != ARES_SUCCESS) {
      return absl::InvalidArgumentError(
          absl::StrCat("DNS server \"", servers, "\": ", ares_strerror(r)));
    }
  } else if (system_servers.load() == 0) {
    system_servers = ServerCount(channel_);
    if (system_servers.load() > 1) {  // the first lookup too gets its share per server
      ares_destroy(channel_);
      channel_ = nullptr;
      return Init(servers, timeout);
    }
  }
  return absl::OkStatus();
}

void Resolver::OnSocketState(void* self, ares_socket_t fd, int readable, int writable) {
  auto* r = static_cast<Resolver*>(self);
  if (!readable && !writable) {
    r->loop_->Unwatch(fd);
    return;
  }
  r->loop_->Watch(fd, readable, writable, [r, fd](bool rd, bool wr) {
    ares_process_fd(r->channel_, rd ? fd : ARES_SOCKET_BAD, wr ? fd : ARES_SOCKET_BAD);
  });
}

absl::Time Resolver::NextTimer() const {
  if (channel_ == nullptr) return absl::InfiniteFuture();
  timeval max{3600, 0}, tv{};
  const timeval* t = ares_timeout(channel_, &max, &tv);
  return absl::Now() + absl::DurationFromTimeval(*t);
}

void Resolver::OnTimer() {
  if (channel_ != nullptr) ares_process_fd(channel_, ARES_SOCKET_BAD, ARES_SOCKET_BAD);
}

void Resolver::LookupAddresses(const std::string& host,
                               std::function<void(absl::StatusOr<std::vector<std::string>>)> done) {
  addresses_done_ = std::move(done);
  ares_addrinfo_hints hints{};
  hints.ai_family = AF_UNSPEC;
  hints.ai_socktype = SOCK_STREAM;
  auto cb = [](void* arg, int status, int, ares_addrinfo* res) {
    auto* r = static_cast<Resolver*>(arg);
    if (r->destroying_) {
      if (res != nullptr) ares_freeaddrinfo(res);
      return;
    }
    auto done = std::move(r->addresses_done_);
    if (status != ARES_SUCCESS) {
      if (res != nullptr) ares_freeaddrinfo(res);
      done(absl::UnavailableError(AresError(status)));
      return;
    }
    std::vector<std::string> out;
    for (ares_addrinfo_node* n = res->nodes; n != nullptr; n = n->ai_next) {
      char buf[INET6_ADDRSTRLEN] = {0};
      const void* a = n->ai_family == AF_INET6
                          ? static_cast<const void*>(
                                &reinterpret_cast<const sockaddr_in6*>(n->ai_addr)->sin6_addr)
                          : &reinterpret_cast<const sockaddr_in*>(n->ai_addr)->sin_addr;
      if (inet_ntop(n->ai_family, a, buf, sizeof(buf)) != nullptr) out.emplace_back(buf);
    }
    ares_freeaddrinfo(res);
    if (out.empty()) {
      done(absl::UnavailableError("no addresses"));
    } else {
      done(std::move(out));
    }
  };
  ares_getaddrinfo(channel_, host.c_str(), nullptr, &hints, cb, this);
}

void Resolver::Query(const std::string& name, int type,
                     std::function<void(int, const unsigned char*, int)> done) {
  query_done_ = std::move(done);
  auto cb = [](void* arg, int status, int, unsigned char* abuf, int alen) {
    auto* r = static_cast<Resolver*>(arg);
    if (r->destroying_) return;
    auto done = std::move(r->query_done_);
    done(status, abuf, alen);
  };
  ares_query(channel_, name.c_str(), ns_c_in, type, cb, this);
}

}  // namespace vigie::agent::checks
