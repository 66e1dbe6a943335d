// Security of gRPC servers and clients: who may call what (an Authorizer consulted for every
// call, reflection included, before any handler runs), TLS with certificates reloaded from
// disk, and the matching client side (TLS channel credentials and the bearer token).
//
// Every server port is built from raw gRPC core credentials (TLS, or plaintext) with one auth
// metadata processor attached, so the same check guards every method on every listener. The
// processor removes the authorization header from the call, so handlers never see a secret;
// they read the established Principal with PrincipalOf().
#ifndef VIGIE_COMMON_GRPC_SECURITY_H_
#define VIGIE_COMMON_GRPC_SECURITY_H_

#include <map>
#include <memory>
#include <optional>
#include <string>

#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"
#include "absl/time/time.h"
#include "common/mutex.h"
#include "common/runnable.h"
#include "grpcpp/grpcpp.h"
#include "prometheus/counter.h"
#include "prometheus/family.h"
#include "prometheus/gauge.h"
#include "prometheus/registry.h"
#include "vigie/v1/config.pb.h"

namespace vigie {

// Who a call comes from.
struct Principal {
  std::string token_id;  // the token's public id; "" for methods open to all
  std::string role;      // "agent", "enrolment", "viewer", "admin", "client" or "" (open)
  std::string agent_id;  // role "agent": the agent the token is bound to
};

// Decides whether a call may proceed. Thread-safe; called on gRPC's threads for every call, so
// it must not block (no I/O).
class Authorizer {
 public:
  virtual ~Authorizer() = default;
  // `method` is the call's path ("/vigie.v1.Admin/ListAgents"); `token` the bearer token, or
  // "" when the call carries none. Errors are kUnauthenticated (no, unknown or revoked token)
  // or kPermissionDenied (the token's role may not call `method`), with `*reason` set to a
  // short label for vigie_auth_failures_total. Messages never contain the token.
  virtual absl::StatusOr<Principal> Authorize(absl::string_view method, absl::string_view token,
                                              std::string* reason) const = 0;
};

// Counts refused calls in vigie_auth_failures_total{reason} and logs them (without the
// secret; 1st, 2nd, 4th, 8th... refusal per reason, so a flood cannot flood the log).
// Thread-safe.
class AuthFailures {
 public:
  explicit AuthFailures(prometheus::Registry* registry);
  void Count(const std::string& reason, absl::string_view method, absl::string_view detail);

 private:
  prometheus::Family<prometheus::Counter>& family_;
  Mutex mu_;
  std::map<std::string, prometheus::Counter*> by_reason_ ABSL_GUARDED_BY(mu_);
};

// The bearer token in an authorization header value ("Bearer <token>", scheme case-insensitive).
// "" for an empty header; kUnauthenticated (reason "malformed_token") for any other scheme.
absl::StatusOr<std::string> BearerToken(absl::string_view header);

// One shared token for every method but health (the notifier's callers): role "client".
class SharedTokenAuthorizer : public Authorizer {
 public:
  explicit SharedTokenAuthorizer(const std::string& token);
  absl::StatusOr<Principal> Authorize(absl::string_view method, absl::string_view token,
                                      std::string* reason) const override;

 private:
  const std::string sha256_;
};

// The principal an Authorizer established for this call; nullopt if none ran.
std::optional<Principal> PrincipalOf(const grpc::ServerContextBase& context);

// TLS on a server port, from config.
struct ServerTlsOptions {
  std::string cert_file;
  std::string key_file;
  std::string client_ca_file;  // set: clients must present a certificate it signed (mTLS)
  absl::Duration reload_interval = absl::Seconds(10);
  bool enabled() const { return !cert_file.empty(); }
};
// Errors name `field` ("tls.cert_file: ...").
absl::StatusOr<ServerTlsOptions> ServerTlsFromConfig(absl::string_view field,
                                                     const v1::ServerTls& tls);

// Checks the listener rule: plaintext is allowed on loopback IPs only, unless `insecure`.
// Returns whether the listener is plaintext beyond loopback (to be warned about).
absl::StatusOr<bool> CheckListenerSecurity(absl::string_view field, const std::string& listen,
                                           const ServerTlsOptions& tls, bool insecure);

// The credentials of one server port: TLS (certificates re-read every reload_interval and
// swapped in only once they parse and the key matches the certificate) or plaintext, with the
// authorizer attached. Exports vigie_tls_reloads_total{result} and
// vigie_tls_certificate_expiry_timestamp_seconds. Start() begins watching the files.
class ServerSecurity : public Runnable {
 public:
  // `authorizer` and `failures` must outlive the server. InvalidArgument naming `field` if the
  // initial files are unusable.
  static absl::StatusOr<std::unique_ptr<ServerSecurity>> Create(std::string field,
                                                                ServerTlsOptions tls,
                                                                const Authorizer* authorizer,
                                                                AuthFailures* failures,
                                                                prometheus::Registry* registry);
  ~ServerSecurity() override;

  std::shared_ptr<grpc::ServerCredentials> credentials() const { return credentials_; }

 protected:
  void Run() override;

 private:
  ServerSecurity(std::string field, ServerTlsOptions tls, prometheus::Registry* registry);
  // Reads and checks the files; on success publishes them to gRPC. Returns whether they
  // changed and were published; errors leave what was published before.
  absl::StatusOr<bool> Reload();

  const std::string field_;
  const ServerTlsOptions tls_;
  std::string fingerprint_;  // stat() identity of the files last published (Run thread only)
  // memfds gRPC reads through /proc/self/fd/N: replaced atomically with dup2 on reload.
  int identity_fd_ = -1;
  int roots_fd_ = -1;
  std::shared_ptr<grpc::ServerCredentials> credentials_;
  prometheus::Counter* reload_ok_ = nullptr;
  prometheus::Counter* reload_error_ = nullptr;
  prometheus::Gauge* expiry_ = nullptr;
};

// A gRPC listener from config: the address, TLS, consent to plaintext beyond loopback, and
// the plaintext health port. The config fields are grpc_listen, tls, insecure and
// health_listen in every component; errors name them.
struct GrpcListenerOptions {
  std::string listen;
  ServerTlsOptions tls;
  bool insecure = false;      // plaintext beyond loopback, asked for with insecure: true
  std::string health_listen;  // "" = none
};
absl::StatusOr<GrpcListenerOptions> GrpcListenerFromConfig(const std::string& listen,
                                                           const std::string& default_listen,
                                                           const v1::ServerTls& tls, bool insecure,
                                                           const std::string& health_listen);

// A process's gRPC side: the main server (TLS or plaintext; every call authorized before its
// handler; grpc.health.v1 and reflection), its certificate reloader, and the optional plaintext
// health server (grpc.health.v1 Check only, no reflection: for the kubelet's gRPC probe, which
// presents no token and no client certificate). Exports vigie_insecure_listener.
class GrpcServers {
 public:
  // `authorizer`, `failures` and `services` must outlive it. InvalidArgument for unusable TLS
  // files (a config error), kUnavailable if a port cannot be bound.
  static absl::StatusOr<std::unique_ptr<GrpcServers>> Start(
      const GrpcListenerOptions& options, const Authorizer* authorizer, AuthFailures* failures,
      prometheus::Registry* registry, int max_receive_message_bytes,
      const std::vector<grpc::Service*>& services);
  // Stops taking calls; calls in flight get up to `grace` to finish.
  void Shutdown(absl::Duration grace);

 private:
  GrpcServers() = default;
  std::unique_ptr<ServerSecurity> security_;
  std::unique_ptr<grpc::Server> health_;
  std::unique_ptr<grpc::Server> server_;
};

// How a client reaches a server: TLS (CA, optional client certificate, name override) or
// plaintext, which is refused to a target that is not a loopback IP unless `insecure` (a token
// would cross the network in clear).
struct ClientSecurity {
  bool tls = false;
  std::shared_ptr<grpc::ChannelCredentials> credentials;
  std::string server_name;  // checked against the certificate; "" = the host in the target
};
// Reads and checks the files `tls` names. Errors name `field` (e.g. "tls.ca_file: ...") or
// `target_field` (the address setting, e.g. "controlplane").
absl::StatusOr<ClientSecurity> ClientSecurityFromConfig(absl::string_view field,
                                                        absl::string_view target_field,
                                                        const std::string& target,
                                                        const v1::ClientTls& tls, bool insecure);
std::shared_ptr<grpc::Channel> MakeChannel(const std::string& target,
                                           const ClientSecurity& security,
                                           grpc::ChannelArguments args);

// Reads a PEM certificate and key, checks that they match, and returns the path
// (/proc/self/fd/N) of an in-memory file holding both, for libraries that want one PEM file.
absl::StatusOr<std::string> CombinedPemFile(absl::string_view field, const std::string& cert_file,
                                            const std::string& key_file);

// Adds "authorization: Bearer <token>" to a call (nothing if `token` is empty).
void AddBearerToken(grpc::ClientContext* context, const std::string& token);

}  // namespace vigie

#endif  // VIGIE_COMMON_GRPC_SECURITY_H_
