// The part of the probes that speak to a host through their own library rather than curl
// (redis, postgresql): the host's addresses from c-ares, so no thread ever blocks in
// getaddrinfo, then the protocol's own connection, and a single place that ends the run.
#ifndef VIGIE_AGENT_CHECKS_ADDRESS_PROBE_H_
#define VIGIE_AGENT_CHECKS_ADDRESS_PROBE_H_

#include <memory>
#include <string>
#include <vector>

#include "agent/checks/check.h"
#include "agent/checks/resolver.h"

namespace vigie::agent::checks {

class AddressProbe : public Probe {
 public:
  AddressProbe(const CheckSpec& spec, ProbeEnv* env, absl::Time deadline);

  void Start(Done done) final;
  std::string Phase() const override { return phase_; }
  absl::Time NextTimer() const override;
  void OnTimer() override;

 protected:
  // Called once with the target host's addresses as text (the host itself if it is an IP).
  virtual void Connect(const std::vector<std::string>& addresses) = 0;
  // Ends the run; later calls do nothing. Calls Finishing() first.
  void Finish(Outcome o);
  // Releases what the probe watches before the run ends (a library may have closed, and may
  // soon reuse, the descriptor's number).
  virtual void Finishing() {}
  void Finish(v1::CheckStatus status, std::string message);
  bool finished() const { return done_ == nullptr; }
  // "12 ms" since Start().
  std::string Elapsed() const;

  const CheckSpec& spec_;
  ProbeEnv* const env_;
  const absl::Time deadline_;
  absl::Time start_;
  std::string phase_;  // for the timeout message: "connecting to 10.0.0.5:6379"

 private:
  Done done_;
  std::unique_ptr<Resolver> resolver_;
};

}  // namespace vigie::agent::checks

#endif  // VIGIE_AGENT_CHECKS_ADDRESS_PROBE_H_
