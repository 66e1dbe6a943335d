#include "agent/checks/address_probe.h"

#include <utility>

#include "absl/strings/str_cat.h"

namespace vigie::agent::checks {

AddressProbe::AddressProbe(const CheckSpec& spec, ProbeEnv* env, absl::Time deadline)
    : spec_(spec), env_(env), deadline_(deadline) {}

void AddressProbe::Start(Done done) {
  done_ = std::move(done);
  start_ = absl::Now();
  const std::string& host = spec_.parsed.host;
  if (IsIpLiteral(host)) {
    Connect({host});
    return;
  }
  phase_ = absl::StrCat("resolving ", host);
  resolver_ = std::make_unique<Resolver>(env_->loop);
  if (absl::Status s = resolver_->Init("", deadline_ - start_); !s.ok()) {
    Finish(v1::CHECK_STATUS_UNKNOWN, std::string(s.message()));
    return;
  }
  resolver_->LookupAddresses(host, [this](absl::StatusOr<std::vector<std::string>> addresses) {
    if (!addresses.ok()) {
      Finish(v1::CHECK_STATUS_CRITICAL,
             absl::StrCat("DNS failure: ", spec_.parsed.host, ": ", addresses.status().message()));
      return;
    }
    Connect(*addresses);
  });
}

absl::Time AddressProbe::NextTimer() const {
  return resolver_ ? resolver_->NextTimer() : absl::InfiniteFuture();
}

void AddressProbe::OnTimer() {
  if (resolver_) resolver_->OnTimer();
}

void AddressProbe::Finish(Outcome o) {
  if (done_ == nullptr) return;
  Finishing();
  std::exchange(done_, nullptr)(std::move(o));
}

void AddressProbe::Finish(v1::CheckStatus status, std::string message) {
  Outcome o;
  o.status = status;
  o.message = std::move(message);
  Finish(std::move(o));
}

std::string AddressProbe::Elapsed() const {
  return absl::StrCat(absl::ToInt64Milliseconds(absl::Now() - start_), " ms");
}

}  // namespace vigie::agent::checks
