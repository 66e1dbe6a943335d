// The part of the curl-based probes (http, https, tcp, smtp) they share: name resolution with
// c-ares handed to curl (CURLOPT_RESOLVE), one transfer on the shared CurlMulti, and the TLS
// diagnosis (the chain's earliest expiry, the version, and why verification failed).
#ifndef VIGIE_AGENT_CHECKS_CURL_PROBE_H_
#define VIGIE_AGENT_CHECKS_CURL_PROBE_H_

#include <curl/curl.h>

#include <memory>
#include <string>
#include <vector>

#include "agent/checks/check.h"
#include "agent/checks/curl_multi.h"
#include "agent/checks/resolver.h"

namespace vigie::agent::checks {

// Validates a CheckTls into `out`; `expiry_shorthand` is a protocol's own tls_expiry_warning.
absl::Status TlsSettingsFromConfig(const v1::CheckTls& c, const std::string& field,
                                   const std::string& expiry_shorthand, TlsSettings* out);

// What the TLS handshake showed, recorded by OpenSSL callbacks during the transfer.
struct TlsObservation {
  bool handshake_done = false;
  std::string version;          // "TLSv1.3"
  int64_t earliest_expiry = 0;  // unix seconds, 0 = no certificate seen
  std::string leaf_subject;     // "CN=example.org"
  std::string leaf_names;       // "example.org, www.example.org" (SANs, else the CN)
  // The first verification error (0 = none) and the certificate it was about.
  int verify_error = 0;
  std::string error_subject;
  std::string error_issuer;
  int64_t error_not_before = 0, error_not_after = 0;
};

class CurlProbe : public Probe {
 public:
  CurlProbe(const CheckSpec& spec, ProbeEnv* env, absl::Time deadline, bool tls);
  ~CurlProbe() override;

  void Start(Done done) override;
  std::string Phase() const override;
  absl::Time NextTimer() const override;
  void OnTimer() override;

 protected:
  // The URL handed to curl.
  virtual std::string Url() const = 0;
  // Sets the protocol's options on `easy`; an error ends the run as UNKNOWN.
  virtual absl::Status Configure(CURL* easy) = 0;
  // Judges a transfer that completed without a curl error.
  virtual Outcome Judge(CURL* easy) = 0;
  // A curl error that still means the run completed (the HTTP body cap aborts the transfer).
  virtual bool Completed(CURLcode) const { return false; }

  // Adds the certificate verdict (WARNING when expiring soon) and TLS metrics to `o`.
  void AddTlsVerdict(Outcome* o) const;
  // "HTTP 200 in 12 ms" style latency suffix.
  std::string Elapsed() const;
  // Stops and frees the transfer. A subclass whose members curl points at (WRITEDATA, header
  // lists) calls it first thing in its destructor.
  void Release();

  const CheckSpec& spec_;
  ProbeEnv* const env_;
  const absl::Time deadline_;
  const bool tls_;
  TlsObservation observed_;

 private:
  void Resolved(absl::StatusOr<std::vector<std::string>> addresses);
  void StartTransfer(const std::string& resolve_entry);
  // A transient CURLOPT_RESOLVE entry: the URL's host at `addresses` (bracketed for IPv6).
  std::string ResolveEntry(const std::vector<std::string>& addresses) const;
  std::string FailedHost() const;
  void Finished(CURLcode code);
  Outcome Failure(CURLcode code);

  Done done_;
  absl::Time start_;
  std::string phase_ = "starting";
  std::unique_ptr<Resolver> resolver_;
  CURL* easy_ = nullptr;
  curl_slist* resolve_ = nullptr;
  char error_[CURL_ERROR_SIZE] = {0};
};

}  // namespace vigie::agent::checks

#endif  // VIGIE_AGENT_CHECKS_CURL_PROBE_H_
