#include "common/grpc_security.h"

#include <fcntl.h>
#include <grpc/grpc.h>
#include <grpc/grpc_security.h>
#include <grpc/slice.h>
#include <openssl/bio.h>
#include <openssl/pem.h>
#include <openssl/x509.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstring>
#include <ctime>

#include "absl/strings/ascii.h"
#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "absl/time/clock.h"
#include "common/grpc_util.h"
#include "common/log.h"
#include "common/secrets.h"
#include "common/status.h"
#include "common/yaml_config.h"
#include "grpc/health/v1/health.grpc.pb.h"
#include "grpcpp/impl/server_builder_option.h"
#include "grpcpp/server_builder.h"

namespace vigie {
namespace {

constexpr char kRoleProperty[] = "vigie.role";
constexpr char kTokenIdProperty[] = "vigie.token_id";
constexpr char kAgentIdProperty[] = "vigie.agent_id";

absl::string_view SliceView(const grpc_slice& s) {
  return absl::string_view(reinterpret_cast<const char*>(GRPC_SLICE_START_PTR(s)),
                           GRPC_SLICE_LENGTH(s));
}

// Server credentials made with gRPC core's C API, so that an auth metadata processor can be
// attached to plaintext ports too (the C++ InsecureServerCredentials() refuses one).
class RawServerCredentials final : public grpc::ServerCredentials {
 public:
  explicit RawServerCredentials(grpc_server_credentials* creds) : creds_(creds) {}
  ~RawServerCredentials() override { grpc_server_credentials_release(creds_); }
  void SetAuthMetadataProcessor(const std::shared_ptr<grpc::AuthMetadataProcessor>&) override {
    // The processor is attached once, at creation (AttachAuthorizer); a second one would
    // silently replace the first.
    std::abort();
  }

 private:
  int AddPortToServer(const std::string& addr, grpc_server* server) override {
    return grpc_server_add_http2_port(server, addr.c_str(), creds_);
  }
  grpc_server_credentials* const creds_;
};

struct ProcessorState {
  const Authorizer* authorizer;
  AuthFailures* failures;
};

void ProcessAuthMetadata(void* state, grpc_auth_context* context, const grpc_metadata* md,
                         size_t num_md, grpc_process_auth_metadata_done_cb cb, void* user_data) {
  const auto* st = static_cast<const ProcessorState*>(state);
  absl::string_view path;
  const grpc_metadata* authorization = nullptr;
  int authorization_count = 0;
  for (size_t i = 0; i < num_md; ++i) {
    absl::string_view key = SliceView(md[i].key);
    if (key == ":path") path = SliceView(md[i].value);
    if (key == "authorization") {
      authorization = &md[i];
      ++authorization_count;
    }
  }
  std::string reason;
  absl::StatusOr<Principal> principal = [&]() -> absl::StatusOr<Principal> {
    if (authorization_count > 1) {
      reason = "malformed_token";
      return absl::UnauthenticatedError("authorization: sent more than once");
    }
    absl::StatusOr<std::string> token =
        BearerToken(authorization ? SliceView(authorization->value) : absl::string_view());
    if (!token.ok()) {
      reason = "malformed_token";
      return token.status();
    }
    return st->authorizer->Authorize(path, *token, &reason);
  }();
  if (!principal.ok()) {
    st->failures->Count(reason, path, principal.status().message());
    const std::string message(principal.status().message());
    cb(user_data, nullptr, 0, nullptr, 0, static_cast<grpc_status_code>(principal.status().code()),
       message.c_str());
    return;
  }
  grpc_auth_context_add_cstring_property(context, kRoleProperty, principal->role.c_str());
  grpc_auth_context_add_cstring_property(context, kTokenIdProperty, principal->token_id.c_str());
  grpc_auth_context_add_cstring_property(context, kAgentIdProperty, principal->agent_id.c_str());
  // Consumed: the header is removed from the call, so no handler ever sees the secret.
  cb(user_data, authorization, authorization ? 1 : 0, nullptr, 0, GRPC_STATUS_OK, nullptr);
}

void AttachAuthorizer(grpc_server_credentials* creds, const Authorizer* authorizer,
                      AuthFailures* failures) {
  grpc_auth_metadata_processor p;
  p.process = ProcessAuthMetadata;
  p.destroy = [](void* state) { delete static_cast<ProcessorState*>(state); };
  p.state = new ProcessorState{authorizer, failures};
  grpc_server_credentials_set_auth_metadata_processor(creds, p);
}

// Certificates, keys and CA bundles are small; 1 MiB is far above any real one.
absl::StatusOr<std::string> ReadPem(absl::string_view field, const std::string& path) {
  absl::StatusOr<std::string> text = ReadConfigFile(field, path, 1 << 20);
  if (!text.ok()) return absl::InvalidArgumentError(text.status().message());
  return text;
}

struct BioDeleter {
  void operator()(BIO* b) const { BIO_free(b); }
};
struct X509Deleter {
  void operator()(X509* x) const { X509_free(x); }
};
struct PkeyDeleter {
  void operator()(EVP_PKEY* k) const { EVP_PKEY_free(k); }
};

std::unique_ptr<BIO, BioDeleter> MemBio(const std::string& data) {
  return std::unique_ptr<BIO, BioDeleter>(
      BIO_new_mem_buf(data.data(), static_cast<int>(data.size())));
}

// Checks a PEM certificate chain and key; returns the leaf's expiry (Unix seconds).
absl::StatusOr<int64_t> CheckKeyPair(absl::string_view field, const std::string& cert_pem,
                                     const std::string& key_pem) {
  std::unique_ptr<X509, X509Deleter> leaf(
      PEM_read_bio_X509(MemBio(cert_pem).get(), nullptr, nullptr, nullptr));
  if (!leaf) {
    return absl::InvalidArgumentError(absl::StrCat(field, ".cert_file: no PEM certificate"));
  }
  std::unique_ptr<EVP_PKEY, PkeyDeleter> key(
      PEM_read_bio_PrivateKey(MemBio(key_pem).get(), nullptr, nullptr, nullptr));
  if (!key) {
    return absl::InvalidArgumentError(
        absl::StrCat(field, ".key_file: no PEM private key (or it is encrypted)"));
  }
  if (X509_check_private_key(leaf.get(), key.get()) != 1) {
    return absl::InvalidArgumentError(
        absl::StrCat(field, ".key_file: the key does not match the certificate in cert_file"));
  }
  std::tm tm{};
  if (ASN1_TIME_to_tm(X509_get0_notAfter(leaf.get()), &tm) != 1) {
    return absl::InvalidArgumentError(absl::StrCat(field, ".cert_file: unreadable expiry"));
  }
  return static_cast<int64_t>(timegm(&tm));
}

absl::Status CheckCaBundle(absl::string_view field, const std::string& pem) {
  std::unique_ptr<X509, X509Deleter> ca(
      PEM_read_bio_X509(MemBio(pem).get(), nullptr, nullptr, nullptr));
  if (!ca) return absl::InvalidArgumentError(absl::StrCat(field, ": no PEM certificate"));
  return absl::OkStatus();
}

// A certificate chain and its key, read from files and checked to match.
struct KeyPair {
  std::string cert;
  std::string key;
  int64_t expiry_unix = 0;
};
absl::StatusOr<KeyPair> ReadKeyPair(absl::string_view field, const std::string& cert_file,
                                    const std::string& key_file) {
  KeyPair p;
  VIGIE_ASSIGN_OR_RETURN(p.cert, ReadPem(absl::StrCat(field, ".cert_file"), cert_file));
  VIGIE_ASSIGN_OR_RETURN(p.key, ReadPem(absl::StrCat(field, ".key_file"), key_file));
  VIGIE_ASSIGN_OR_RETURN(p.expiry_unix, CheckKeyPair(field, p.cert, p.key));
  return p;
}

absl::StatusOr<std::string> ReadCaBundle(absl::string_view field, const std::string& path) {
  VIGIE_ASSIGN_OR_RETURN(std::string pem, ReadPem(field, path));
  VIGIE_RETURN_IF_ERROR(CheckCaBundle(field, pem));
  return pem;
}

absl::Status RequireBothOrNeither(absl::string_view field, const std::string& cert_file,
                                  const std::string& key_file) {
  if (cert_file.empty() == key_file.empty()) return absl::OkStatus();
  return absl::InvalidArgumentError(
      absl::StrCat(field, ": cert_file and key_file go together; set both"));
}

// Writes `data` to a new memfd and puts it at *fd (atomically replacing what was there, so a
// reader of /proc/self/fd/N sees either the old or the new contents, never a mix).
absl::Status PublishMemfd(int* fd, const std::string& data) {
  int nfd = memfd_create("vigie-tls", MFD_CLOEXEC);
  if (nfd < 0) return absl::InternalError(absl::StrCat("memfd_create: ", strerror(errno)));
  size_t off = 0;
  while (off < data.size()) {
    ssize_t n = write(nfd, data.data() + off, data.size() - off);
    if (n < 0 && errno == EINTR) continue;
    if (n <= 0) {
      close(nfd);
      return absl::InternalError(absl::StrCat("memfd write: ", strerror(errno)));
    }
    off += static_cast<size_t>(n);
  }
  if (*fd < 0) {
    *fd = nfd;
    return absl::OkStatus();
  }
  if (dup3(nfd, *fd, O_CLOEXEC) < 0) {
    close(nfd);
    return absl::InternalError(absl::StrCat("dup3: ", strerror(errno)));
  }
  close(nfd);
  return absl::OkStatus();
}

std::string FileIdentity(const std::string& path) {
  struct stat st;
  if (path.empty()) return "-";
  if (stat(path.c_str(), &st) != 0) return absl::StrCat(path, ":missing");
  return absl::StrCat(st.st_dev, ":", st.st_ino, ":", st.st_size, ":", st.st_mtim.tv_sec, ".",
                      st.st_mtim.tv_nsec);
}

std::string FdPath(int fd) { return absl::StrCat("/proc/self/fd/", fd); }

}  // namespace

AuthFailures::AuthFailures(prometheus::Registry* registry)
    : family_(prometheus::BuildCounter()
                  .Name("vigie_auth_failures_total")
                  .Help("Calls refused by authentication or authorization, by reason.")
                  .Register(*registry)) {
  for (const char* r : {"missing_token", "malformed_token", "unknown_token", "revoked_token",
                        "wrong_role", "agent_id_mismatch", "agent_id_reserved"}) {
    by_reason_[r] = &family_.Add({{"reason", r}});
  }
}

void AuthFailures::Count(const std::string& reason, absl::string_view method,
                         absl::string_view detail) {
  double n;
  {
    MutexLock lock(&mu_);
    prometheus::Counter*& c = by_reason_[reason];
    if (c == nullptr) c = &family_.Add({{"reason", reason}});
    c->Increment();
    n = c->Value();
  }
  const auto count = static_cast<uint64_t>(n);
  if ((count & (count - 1)) == 0) {  // 1, 2, 4, 8, ...
    log::Warn("call refused", {{"reason", reason},
                               {"method", std::string(method)},
                               {"error", std::string(detail)},
                               {"refused_so_far", count}});
  }
}

absl::StatusOr<std::string> BearerToken(absl::string_view header) {
  if (header.empty()) return std::string();
  if (header.size() < 7 || !absl::EqualsIgnoreCase(header.substr(0, 7), "bearer ")) {
    return absl::UnauthenticatedError(
        "authorization: expected \"Bearer <token>\" (the value is not shown)");
  }
  return std::string(absl::StripAsciiWhitespace(header.substr(7)));
}

SharedTokenAuthorizer::SharedTokenAuthorizer(const std::string& token) : sha256_(Sha256(token)) {}

absl::StatusOr<Principal> SharedTokenAuthorizer::Authorize(absl::string_view method,
                                                           absl::string_view token,
                                                           std::string* reason) const {
  if (absl::StartsWith(method, "/grpc.health.v1.Health/")) return Principal{};
  if (token.empty()) {
    *reason = "missing_token";
    return absl::UnauthenticatedError("authorization: a bearer token is required");
  }
  if (!ConstantTimeEquals(Sha256(token), sha256_)) {
    *reason = "unknown_token";
    return absl::UnauthenticatedError("authorization: unknown token");
  }
  return Principal{"client", "client", ""};
}

std::optional<Principal> PrincipalOf(const grpc::ServerContextBase& context) {
  std::shared_ptr<const grpc::AuthContext> auth = context.auth_context();
  if (!auth) return std::nullopt;
  auto one = [&](const char* name) -> std::optional<std::string> {
    std::vector<grpc::string_ref> v = auth->FindPropertyValues(name);
    if (v.empty()) return std::nullopt;
    return std::string(v.back().data(), v.back().size());
  };
  std::optional<std::string> role = one(kRoleProperty);
  if (!role) return std::nullopt;
  Principal p;
  p.role = *role;
  p.token_id = one(kTokenIdProperty).value_or("");
  p.agent_id = one(kAgentIdProperty).value_or("");
  return p;
}

absl::StatusOr<ServerTlsOptions> ServerTlsFromConfig(absl::string_view field,
                                                     const v1::ServerTls& tls) {
  ServerTlsOptions o;
  o.cert_file = tls.cert_file();
  o.key_file = tls.key_file();
  o.client_ca_file = tls.client_ca_file();
  VIGIE_RETURN_IF_ERROR(RequireBothOrNeither(field, o.cert_file, o.key_file));
  if (o.cert_file.empty() && !o.client_ca_file.empty()) {
    return absl::InvalidArgumentError(
        absl::StrCat(field, ".client_ca_file: needs cert_file and key_file (mTLS is TLS)"));
  }
  VIGIE_ASSIGN_OR_RETURN(o.reload_interval,
                         ParseConfigDuration(absl::StrCat(field, ".reload_interval"),
                                             tls.reload_interval(), o.reload_interval));
  if (o.reload_interval < absl::Seconds(1)) {
    return absl::InvalidArgumentError(
        absl::StrCat(field, ".reload_interval: at least 1s, got \"", tls.reload_interval(), "\""));
  }
  return o;
}

absl::StatusOr<bool> CheckListenerSecurity(absl::string_view field, const std::string& listen,
                                           const ServerTlsOptions& tls, bool insecure) {
  if (tls.enabled() || IsLoopback(listen)) return false;
  if (!insecure) {
    VIGIE_RETURN_IF_ERROR(RequireLoopback(
        field, listen,
        "set tls (cert_file, key_file) to listen there, or insecure: true to serve plaintext "
        "anyway (e.g. behind a TLS-terminating proxy)"));
  }
  return true;
}

absl::StatusOr<GrpcListenerOptions> GrpcListenerFromConfig(const std::string& listen,
                                                           const std::string& default_listen,
                                                           const v1::ServerTls& tls, bool insecure,
                                                           const std::string& health_listen) {
  GrpcListenerOptions o;
  VIGIE_ASSIGN_OR_RETURN(o.listen, ListenAddress("grpc_listen", listen, default_listen));
  VIGIE_ASSIGN_OR_RETURN(o.tls, ServerTlsFromConfig("tls", tls));
  VIGIE_ASSIGN_OR_RETURN(o.insecure,
                         CheckListenerSecurity("grpc_listen", o.listen, o.tls, insecure));
  if (!health_listen.empty()) {
    VIGIE_ASSIGN_OR_RETURN(o.health_listen, ListenAddress("health_listen", health_listen, ""));
  }
  return o;
}

ServerSecurity::ServerSecurity(std::string field, ServerTlsOptions tls,
                               prometheus::Registry* registry)
    : Runnable("tls-reload"), field_(std::move(field)), tls_(std::move(tls)) {
  auto& reloads = prometheus::BuildCounter()
                      .Name("vigie_tls_reloads_total")
                      .Help(
                          "Certificate reloads from disk, by result; on error the previous "
                          "certificate stays in use.")
                      .Register(*registry);
  reload_ok_ = &reloads.Add({{"listener", field_}, {"result", "success"}});
  reload_error_ = &reloads.Add({{"listener", field_}, {"result", "error"}});
  expiry_ = &prometheus::BuildGauge()
                 .Name("vigie_tls_certificate_expiry_timestamp_seconds")
                 .Help("notAfter of the certificate in use, in Unix seconds.")
                 .Register(*registry)
                 .Add({{"listener", field_}});
}

ServerSecurity::~ServerSecurity() {
  Stop();
  // The credentials (and gRPC's file watcher) may outlive this object inside the server; the
  // memfds are closed only at exit.
}

absl::StatusOr<std::unique_ptr<ServerSecurity>> ServerSecurity::Create(
    std::string field, ServerTlsOptions tls, const Authorizer* authorizer, AuthFailures* failures,
    prometheus::Registry* registry) {
  std::unique_ptr<ServerSecurity> s(new ServerSecurity(std::move(field), std::move(tls), registry));
  grpc_server_credentials* creds = nullptr;
  if (!s->tls_.enabled()) {
    creds = grpc_insecure_server_credentials_create();
  } else {
    VIGIE_RETURN_IF_ERROR(s->Reload().status());
    const std::string identity = FdPath(s->identity_fd_);
    const bool mtls = !s->tls_.client_ca_file.empty();
    // Key and chain are one file (a memfd holding both PEM blocks), so gRPC never reads a key
    // from one update with a certificate from another.
    grpc_tls_certificate_provider* provider = grpc_tls_certificate_provider_file_watcher_create(
        identity.c_str(), identity.c_str(), mtls ? FdPath(s->roots_fd_).c_str() : nullptr, 1);
    grpc_tls_credentials_options* options = grpc_tls_credentials_options_create();
    grpc_tls_credentials_options_set_certificate_provider(options, provider);
    grpc_tls_certificate_provider_release(provider);
    grpc_tls_credentials_options_watch_identity_key_cert_pairs(options);
    if (mtls) {
      grpc_tls_credentials_options_watch_root_certs(options);
      grpc_tls_credentials_options_set_cert_request_type(
          options, GRPC_SSL_REQUEST_AND_REQUIRE_CLIENT_CERTIFICATE_AND_VERIFY);
    } else {
      grpc_tls_credentials_options_set_cert_request_type(options,
                                                         GRPC_SSL_DONT_REQUEST_CLIENT_CERTIFICATE);
    }
    creds = grpc_tls_server_credentials_create(options);
  }
  AttachAuthorizer(creds, authorizer, failures);
  s->credentials_ = std::make_shared<RawServerCredentials>(creds);
  return s;
}

absl::StatusOr<bool> ServerSecurity::Reload() {
  const std::string fingerprint =
      absl::StrCat(FileIdentity(tls_.cert_file), "|", FileIdentity(tls_.key_file), "|",
                   FileIdentity(tls_.client_ca_file));
  if (fingerprint == fingerprint_) return false;
  fingerprint_ = fingerprint;  // a bad file is reported once, not at every check
  // Everything is read and checked before anything is published.
  VIGIE_ASSIGN_OR_RETURN(KeyPair pair, ReadKeyPair(field_, tls_.cert_file, tls_.key_file));
  std::string ca;
  if (!tls_.client_ca_file.empty()) {
    VIGIE_ASSIGN_OR_RETURN(ca, ReadCaBundle(field_ + ".client_ca_file", tls_.client_ca_file));
    VIGIE_RETURN_IF_ERROR(PublishMemfd(&roots_fd_, ca));
  }
  VIGIE_RETURN_IF_ERROR(PublishMemfd(&identity_fd_, absl::StrCat(pair.key, "\n", pair.cert)));
  expiry_->Set(static_cast<double>(pair.expiry_unix));
  return true;
}

void ServerSecurity::Run() {
  while (WaitFor(tls_.reload_interval)) {
    absl::StatusOr<bool> r = Reload();
    if (!r.ok()) {
      reload_error_->Increment();
      log::Error("new certificate refused; the previous one stays in use",
                 {{"listener", field_}, {"error", r.status()}});
    } else if (*r) {
      reload_ok_->Increment();
      log::Info("certificate reloaded",
                {{"listener", field_}, {"expires_unix", static_cast<int64_t>(expiry_->Value())}});
    }
  }
}

absl::StatusOr<ClientSecurity> ClientSecurityFromConfig(absl::string_view field,
                                                        absl::string_view target_field,
                                                        const std::string& target,
                                                        const v1::ClientTls& tls, bool insecure) {
  VIGIE_RETURN_IF_ERROR(ValidateHostPort(target_field, target));
  VIGIE_RETURN_IF_ERROR(RequireBothOrNeither(field, tls.cert_file(), tls.key_file()));
  ClientSecurity c;
  c.tls = tls.enabled() || !tls.ca_file().empty() || !tls.cert_file().empty() ||
          !tls.server_name().empty();
  if (!c.tls) {
    if (!insecure && !IsLoopback(target)) {
      return absl::InvalidArgumentError(absl::StrCat(
          field, ": required, since ", target_field, " \"", target, "\" is not a loopback IP (set ",
          field, ".ca_file, or insecure: true to send the token in clear)"));
    }
    c.credentials = grpc::InsecureChannelCredentials();
    return c;
  }
  grpc::SslCredentialsOptions ssl;
  if (!tls.ca_file().empty()) {
    VIGIE_ASSIGN_OR_RETURN(ssl.pem_root_certs,
                           ReadCaBundle(absl::StrCat(field, ".ca_file"), tls.ca_file()));
  }
  if (!tls.cert_file().empty()) {
    VIGIE_ASSIGN_OR_RETURN(KeyPair pair, ReadKeyPair(field, tls.cert_file(), tls.key_file()));
    ssl.pem_cert_chain = std::move(pair.cert);
    ssl.pem_private_key = std::move(pair.key);
  }
  c.credentials = grpc::SslCredentials(ssl);
  c.server_name = tls.server_name();
  return c;
}

std::shared_ptr<grpc::Channel> MakeChannel(const std::string& target,
                                           const ClientSecurity& security,
                                           grpc::ChannelArguments args) {
  if (!security.server_name.empty()) args.SetSslTargetNameOverride(security.server_name);
  return grpc::CreateCustomChannel(target, security.credentials, args);
}

absl::StatusOr<std::string> CombinedPemFile(absl::string_view field, const std::string& cert_file,
                                            const std::string& key_file) {
  VIGIE_ASSIGN_OR_RETURN(KeyPair pair, ReadKeyPair(field, cert_file, key_file));
  int fd = -1;
  VIGIE_RETURN_IF_ERROR(PublishMemfd(&fd, absl::StrCat(pair.key, "\n", pair.cert)));
  return FdPath(fd);
}

void AddBearerToken(grpc::ClientContext* context, const std::string& token) {
  if (!token.empty()) context->AddMetadata("authorization", absl::StrCat("Bearer ", token));
}

}  // namespace vigie
