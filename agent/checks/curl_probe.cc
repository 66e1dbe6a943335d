#include "agent/checks/curl_probe.h"

#include <arpa/inet.h>
#include <openssl/ssl.h>
#include <openssl/x509.h>
#include <openssl/x509v3.h>

#include <cerrno>
#include <ctime>

#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "absl/strings/str_replace.h"

namespace vigie::agent::checks {
namespace {

int TlsIndex() {
  static const int index = SSL_CTX_get_ex_new_index(0, nullptr, nullptr, nullptr, nullptr);
  return index;
}

int64_t ToUnix(const ASN1_TIME* t) {
  struct tm tm {};
  if (t == nullptr || ASN1_TIME_to_tm(t, &tm) != 1) return 0;
  return static_cast<int64_t>(timegm(&tm));
}

std::string NameText(const X509_NAME* name) {
  BIO* b = BIO_new(BIO_s_mem());
  X509_NAME_print_ex(b, name, 0, XN_FLAG_RFC2253);
  char* data = nullptr;
  const long n = BIO_get_mem_data(b, &data);  // NOLINT(runtime/int)
  std::string out(data, n > 0 ? static_cast<size_t>(n) : 0);
  BIO_free(b);
  return out.size() > 256 ? out.substr(0, 256) + "..." : out;
}

// The names a certificate is for: its DNS and IP subject alternative names, else its CN.
std::string CertNames(X509* cert) {
  std::vector<std::string> names;
  auto* sans =
      static_cast<GENERAL_NAMES*>(X509_get_ext_d2i(cert, NID_subject_alt_name, nullptr, nullptr));
  if (sans != nullptr) {
    for (int i = 0; i < sk_GENERAL_NAME_num(sans) && names.size() < 8; ++i) {
      const GENERAL_NAME* n = sk_GENERAL_NAME_value(sans, i);
      if (n->type == GEN_DNS) {
        const ASN1_STRING* s = n->d.dNSName;
        names.emplace_back(reinterpret_cast<const char*>(ASN1_STRING_get0_data(s)),
                           ASN1_STRING_length(s));
      } else if (n->type == GEN_IPADD) {
        const ASN1_STRING* s = n->d.iPAddress;
        char buf[INET6_ADDRSTRLEN] = {0};
        const int len = ASN1_STRING_length(s);  // the server's bytes: only 4 or 16 are addresses
        if (len != 4 && len != 16) continue;
        if (inet_ntop(len == 16 ? AF_INET6 : AF_INET, ASN1_STRING_get0_data(s), buf, sizeof(buf)) !=
            nullptr) {
          names.emplace_back(buf);
        }
      }
    }
    GENERAL_NAMES_free(sans);
  }
  if (names.empty()) {
    char cn[256] = {0};
    if (X509_NAME_get_text_by_NID(X509_get_subject_name(cert), NID_commonName, cn, sizeof(cn)) >
        0) {
      names.emplace_back(cn);
    }
  }
  return names.empty() ? "no name" : absl::StrJoin(names, ", ");
}

TlsObservation* ObservationOf(const SSL* ssl) {
  if (ssl == nullptr) return nullptr;
  return static_cast<TlsObservation*>(SSL_CTX_get_ex_data(SSL_get_SSL_CTX(ssl), TlsIndex()));
}

// Records every certificate of the chain as OpenSSL verifies it; never changes the verdict.
int OnVerify(int ok, X509_STORE_CTX* store) {
  auto* ssl =
      static_cast<SSL*>(X509_STORE_CTX_get_ex_data(store, SSL_get_ex_data_X509_STORE_CTX_idx()));
  TlsObservation* o = ObservationOf(ssl);
  if (o == nullptr) return ok;
  X509* cert = X509_STORE_CTX_get_current_cert(store);
  if (cert != nullptr) {
    const int64_t expiry = ToUnix(X509_get0_notAfter(cert));
    if (expiry > 0 && (o->earliest_expiry == 0 || expiry < o->earliest_expiry)) {
      o->earliest_expiry = expiry;
    }
    if (X509_STORE_CTX_get_error_depth(store) == 0 && o->leaf_subject.empty()) {
      o->leaf_subject = NameText(X509_get_subject_name(cert));
      o->leaf_names = CertNames(cert);
    }
  }
  if (!ok && o->verify_error == 0) {
    o->verify_error = X509_STORE_CTX_get_error(store);
    if (cert != nullptr) {
      o->error_subject = NameText(X509_get_subject_name(cert));
      o->error_issuer = NameText(X509_get_issuer_name(cert));
      o->error_not_before = ToUnix(X509_get0_notBefore(cert));
      o->error_not_after = ToUnix(X509_get0_notAfter(cert));
    }
  }
  return ok;
}

void OnTlsInfo(const SSL* ssl, int where, int) {
  if ((where & SSL_CB_HANDSHAKE_DONE) == 0) return;
  if (TlsObservation* o = ObservationOf(ssl)) {
    o->handshake_done = true;
    o->version = SSL_get_version(ssl);
  }
}

// curl hands us its SSL_CTX after configuring it (verification mode included).
CURLcode OnSslContext(CURL*, void* ctx, void* observation) {
  auto* c = static_cast<SSL_CTX*>(ctx);
  // One context per connection: after a redirect, the observation is the new hop's alone.
  *static_cast<TlsObservation*>(observation) = TlsObservation{};
  SSL_CTX_set_ex_data(c, TlsIndex(), observation);
  SSL_CTX_set_verify(c, SSL_CTX_get_verify_mode(c), &OnVerify);
  SSL_CTX_set_info_callback(c, &OnTlsInfo);
  return CURLE_OK;
}

std::string Date(int64_t unix_seconds) {
  return absl::FormatTime("%Y-%m-%d %H:%M UTC", absl::FromUnixSeconds(unix_seconds),
                          absl::UTCTimeZone());
}

}  // namespace

CurlProbe::CurlProbe(const CheckSpec& spec, ProbeEnv* env, absl::Time deadline, bool tls)
    : spec_(spec), env_(env), deadline_(deadline), tls_(tls) {}

CurlProbe::~CurlProbe() { Release(); }

void CurlProbe::Release() {
  if (easy_ != nullptr) {
    env_->curl->Remove(easy_);
    curl_easy_cleanup(easy_);
    easy_ = nullptr;
  }
  curl_slist_free_all(resolve_);
  resolve_ = nullptr;
}

std::string CurlProbe::FailedHost() const {
  // After redirects, the host curl was fetching when it failed.
  char* url = nullptr;
  curl_easy_getinfo(easy_, CURLINFO_EFFECTIVE_URL, &url);
  if (url != nullptr) {
    if (absl::StatusOr<Target> t = ParseTarget(url, "url"); t.ok() && !t->host.empty()) {
      return t->host;
    }
  }
  return spec_.tls.server_name.empty() ? spec_.parsed.host : spec_.tls.server_name;
}

std::string CurlProbe::Phase() const {
  if (easy_ == nullptr) return absl::StrCat("resolving ", spec_.parsed.host);
  curl_off_t connect = 0, app = 0;
  curl_easy_getinfo(easy_, CURLINFO_CONNECT_TIME_T, &connect);
  curl_easy_getinfo(easy_, CURLINFO_APPCONNECT_TIME_T, &app);
  if (connect == 0) return absl::StrCat("connecting to ", spec_.parsed.HostPort());
  if (tls_ && app == 0 && !observed_.handshake_done) {
    return absl::StrCat("in the TLS handshake with ", spec_.parsed.HostPort());
  }
  return "waiting for the response";
}

absl::Time CurlProbe::NextTimer() const {
  return resolver_ ? resolver_->NextTimer() : absl::InfiniteFuture();
}

void CurlProbe::OnTimer() {
  if (resolver_) resolver_->OnTimer();
}

std::string CurlProbe::Elapsed() const {
  return absl::StrCat(absl::ToInt64Milliseconds(absl::Now() - start_), " ms");
}

void CurlProbe::Start(Done done) {
  done_ = std::move(done);
  start_ = absl::Now();
  const std::string& host = spec_.parsed.host;
  if (IsIpLiteral(host)) {
    // With server_name, the URL names it: pin it to the target's address.
    StartTransfer(
        spec_.tls.server_name.empty()
            ? ""
            : ResolveEntry({absl::StrContains(host, ':') ? absl::StrCat("[", host, "]") : host}));
    return;
  }
  phase_ = "resolving";
  resolver_ = std::make_unique<Resolver>(env_->loop);
  if (absl::Status s = resolver_->Init("", deadline_ - absl::Now()); !s.ok()) {
    Outcome o;
    o.message = std::string(s.message());
    std::exchange(done_, nullptr)(std::move(o));
    return;
  }
  resolver_->LookupAddresses(
      host, [this](absl::StatusOr<std::vector<std::string>> a) { Resolved(std::move(a)); });
}

void CurlProbe::Resolved(absl::StatusOr<std::vector<std::string>> addresses) {
  if (!addresses.ok()) {
    Outcome o;
    o.status = v1::CHECK_STATUS_CRITICAL;
    o.message =
        absl::StrCat("DNS failure: ", spec_.parsed.host, ": ", addresses.status().message());
    std::exchange(done_, nullptr)(std::move(o));
    return;
  }
  std::vector<std::string> shown;
  for (const std::string& a : *addresses) {
    shown.push_back(absl::StrContains(a, ':') ? absl::StrCat("[", a, "]") : a);
  }
  StartTransfer(ResolveEntry(shown));
}

std::string CurlProbe::ResolveEntry(const std::vector<std::string>& addresses) const {
  const std::string& name =
      spec_.tls.server_name.empty() ? spec_.parsed.host : spec_.tls.server_name;
  // "+": a transient entry, gone with this transfer, never seen by another check's redirect.
  return absl::StrCat("+", name, ":", spec_.parsed.port, ":", absl::StrJoin(addresses, ","));
}

void CurlProbe::StartTransfer(const std::string& resolve_entry) {
  phase_ = "connecting";
  easy_ = curl_easy_init();
  const int64_t left_ms = std::max<int64_t>(1, absl::ToInt64Milliseconds(deadline_ - absl::Now()));
  curl_easy_setopt(easy_, CURLOPT_URL, Url().c_str());
  curl_easy_setopt(easy_, CURLOPT_ERRORBUFFER, error_);
  curl_easy_setopt(easy_, CURLOPT_NOSIGNAL, 1L);
  // Never wait for curl's own resolver thread (used after a redirect to another host) when a
  // transfer is abandoned: that would stop every check.
  curl_easy_setopt(easy_, CURLOPT_QUICK_EXIT, 1L);
  curl_easy_setopt(easy_, CURLOPT_TIMEOUT_MS, static_cast<long>(left_ms));         // NOLINT
  curl_easy_setopt(easy_, CURLOPT_CONNECTTIMEOUT_MS, static_cast<long>(left_ms));  // NOLINT
  // Every run measures a whole connection, as a user's first request would see it.
  curl_easy_setopt(easy_, CURLOPT_FRESH_CONNECT, 1L);
  curl_easy_setopt(easy_, CURLOPT_FORBID_REUSE, 1L);
  curl_easy_setopt(easy_, CURLOPT_PROXY, "");  // no proxy from the environment
  curl_easy_setopt(easy_, CURLOPT_USERAGENT, "vigie-agent/" VIGIE_VERSION);
  if (!resolve_entry.empty()) {
    resolve_ = curl_slist_append(nullptr, resolve_entry.c_str());
    curl_easy_setopt(easy_, CURLOPT_RESOLVE, resolve_);
  }
  if (tls_) {
    curl_easy_setopt(easy_, CURLOPT_SSL_CTX_FUNCTION, &OnSslContext);
    curl_easy_setopt(easy_, CURLOPT_SSL_CTX_DATA, &observed_);
    if (!spec_.tls.ca_file.empty())
      curl_easy_setopt(easy_, CURLOPT_CAINFO, spec_.tls.ca_file.c_str());
    // The CA bundle alone (Debian's curl also names /etc/ssl/certs as CApath, holding the
    // same certificates): with no CApath, curl keeps the parsed store on the multi handle
    // instead of reading and parsing ~140 certificates for every connection. Re-read after
    // 5 minutes, so a changed ca_file or bundle is seen.
    curl_easy_setopt(easy_, CURLOPT_CAPATH, nullptr);
    curl_easy_setopt(easy_, CURLOPT_CA_CACHE_TIMEOUT, 300L);
    if (spec_.tls.insecure_skip_verify) {
      curl_easy_setopt(easy_, CURLOPT_SSL_VERIFYPEER, 0L);
      curl_easy_setopt(easy_, CURLOPT_SSL_VERIFYHOST, 0L);
    }
  }
  if (absl::Status s = Configure(easy_); !s.ok()) {
    Outcome o;
    o.message = std::string(s.message());
    std::exchange(done_, nullptr)(std::move(o));
    return;
  }
  env_->curl->Add(easy_, [this](CURLcode code) { Finished(code); });
}

void CurlProbe::Finished(CURLcode code) {
  Outcome o = code == CURLE_OK || Completed(code) ? Judge(easy_) : Failure(code);
  AddTlsVerdict(&o);
  std::exchange(done_, nullptr)(std::move(o));
}

Outcome CurlProbe::Failure(CURLcode code) {
  Outcome o;
  o.status = v1::CHECK_STATUS_CRITICAL;
  const std::string where = spec_.parsed.HostPort();
  const std::string detail = error_[0] != '\0' ? error_ : curl_easy_strerror(code);
  switch (code) {
    case CURLE_COULDNT_CONNECT: {
      long err = 0;  // NOLINT(runtime/int)
      curl_easy_getinfo(easy_, CURLINFO_OS_ERRNO, &err);
      if (err == ECONNREFUSED) {
        o.message = absl::StrCat("connection refused by ", where);
      } else if (err == EHOSTUNREACH || err == ENETUNREACH) {
        o.message = absl::StrCat("no route to ", where);
      } else {
        o.message = absl::StrCat("could not connect to ", where, ": ", detail);
      }
      break;
    }
    case CURLE_OPERATION_TIMEDOUT:
      o.message = absl::StrCat("timeout after ", absl::FormatDuration(spec_.timeout), " ", Phase());
      break;
    case CURLE_COULDNT_RESOLVE_HOST:
      o.message = absl::StrCat("DNS failure: ", detail);
      break;
    case CURLE_PEER_FAILED_VERIFICATION: {
      const TlsObservation& t = observed_;
      switch (t.verify_error) {
        case 0: {
          const std::string wanted = FailedHost();
          o.message = absl::StrCat("host name mismatch: certificate for ", t.leaf_names,
                                   ", wanted ", wanted);
          break;
        }
        case X509_V_ERR_CERT_HAS_EXPIRED:
          o.message = absl::StrCat("certificate expired on ", Date(t.error_not_after), " (",
                                   t.error_subject, ")");
          break;
        case X509_V_ERR_CERT_NOT_YET_VALID:
          o.message = absl::StrCat("certificate not valid before ", Date(t.error_not_before), " (",
                                   t.error_subject, ")");
          break;
        case X509_V_ERR_UNABLE_TO_GET_ISSUER_CERT_LOCALLY:
        case X509_V_ERR_UNABLE_TO_GET_ISSUER_CERT:
        case X509_V_ERR_SELF_SIGNED_CERT_IN_CHAIN:
        case X509_V_ERR_DEPTH_ZERO_SELF_SIGNED_CERT:
        case X509_V_ERR_UNABLE_TO_VERIFY_LEAF_SIGNATURE:
          o.message = absl::StrCat("certificate signed by an unknown authority (issuer ",
                                   t.error_issuer, ")");
          break;
        default:
          o.message = absl::StrCat(
              "certificate verification failed: ", X509_verify_cert_error_string(t.verify_error),
              " (", t.error_subject, ")");
      }
      break;
    }
    case CURLE_SSL_CONNECT_ERROR:
      if (absl::StrContains(detail, "unsupported protocol") ||
          absl::StrContains(detail, "protocol version") ||
          absl::StrContains(detail, "no protocols available") ||
          absl::StrContains(detail, "legacy sigalg")) {
        // The server offers only TLS versions (or their signature algorithms) that OpenSSL's
        // security level refuses, e.g. a TLS 1.0-only server.
        o.message = absl::StrCat(
            "TLS handshake failed: protocol version or algorithms not accepted; no TLS version "
            "in common with ",
            where, " (", detail, ")");
      } else if (absl::StrContains(detail, "wrong version number") ||
                 absl::StrContains(detail, "packet length too long")) {
        o.message =
            absl::StrCat("TLS handshake failed: ", where, " does not speak TLS (", detail, ")");
      } else {
        o.message = absl::StrCat("TLS handshake failed with ", where, ": ", detail);
      }
      break;
    case CURLE_TOO_MANY_REDIRECTS:
      o.message = absl::StrCat("too many redirects: ", detail);
      break;
    case CURLE_GOT_NOTHING:
      o.message = absl::StrCat(where, " closed the connection without answering");
      break;
    case CURLE_USE_SSL_FAILED:
      o.message = absl::StrCat(where, " does not offer STARTTLS");
      break;
    case CURLE_SSL_CACERT_BADFILE:
    case CURLE_SSL_CERTPROBLEM:
      o.status = v1::CHECK_STATUS_UNKNOWN;
      o.message = absl::StrCat("TLS settings cannot be used: ", detail);
      break;
    default:
      o.message = absl::StrCat(detail, " (", where, ")");
  }
  return o;
}

void CurlProbe::AddTlsVerdict(Outcome* o) const {
  if (!tls_ || observed_.earliest_expiry == 0) return;
  o->metrics.emplace_back("probe_ssl_earliest_cert_expiry",
                          static_cast<double>(observed_.earliest_expiry));
  if (!observed_.version.empty()) {
    o->info.push_back({"probe_tls_version_info",
                       {"version", absl::StrReplaceAll(observed_.version, {{"TLSv", "TLS "}})}});
  }
  if (o->status != v1::CHECK_STATUS_OK) return;
  const int64_t now = absl::ToUnixSeconds(absl::Now());
  const int64_t left = observed_.earliest_expiry - now;
  if (left <= 0) {  // only possible with insecure_skip_verify
    o->status = v1::CHECK_STATUS_CRITICAL;
    o->message =
        absl::StrCat("certificate expired on ", Date(observed_.earliest_expiry), "; ", o->message);
  } else if (absl::Seconds(left) < spec_.tls.expiry_warning) {
    o->status = v1::CHECK_STATUS_WARNING;
    o->message = absl::StrCat("certificate expires in ", left / 86400, " days (on ",
                              Date(observed_.earliest_expiry), "); ", o->message);
  }
}

}  // namespace vigie::agent::checks
