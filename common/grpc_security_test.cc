// Real gRPC servers and clients in one process: the auth processor on plaintext and TLS ports,
// certificate reload (good and bad files), and mTLS. Certificates come from the openssl CLI.
#include "common/grpc_security.h"

#include <cstdlib>
#include <fstream>
#include <thread>

#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "common/grpc_util.h"
#include "common/secrets.h"
#include "gmock/gmock.h"
#include "grpc/health/v1/health.grpc.pb.h"
#include "gtest/gtest.h"
#include "vigie/v1/notifier.grpc.pb.h"

namespace vigie {
namespace {

using ::testing::HasSubstr;

// Lets "/vigie.v1.Notifier/*" through with token "good" (role "client"), health to anyone.
class TestAuthorizer : public Authorizer {
 public:
  absl::StatusOr<Principal> Authorize(absl::string_view method, absl::string_view token,
                                      std::string* reason) const override {
    if (absl::StartsWith(method, "/grpc.health.v1.Health/")) return Principal{};
    if (token.empty()) {
      *reason = "missing_token";
      return absl::UnauthenticatedError("no token");
    }
    if (!ConstantTimeEquals(token, "good")) {
      *reason = "unknown_token";
      return absl::UnauthenticatedError("unknown token");
    }
    return Principal{"t1", "client", ""};
  }
};

// Answers duplicate = true when the caller's principal is the "client" role; records whether
// the authorization header reached the handler.
class EchoNotifier : public v1::Notifier::CallbackService {
 public:
  grpc::ServerUnaryReactor* Notify(grpc::CallbackServerContext* ctx, const v1::NotifyRequest*,
                                   v1::NotifyResponse* resp) override {
    std::optional<Principal> p = PrincipalOf(*ctx);
    resp->set_duplicate(p && p->role == "client" && p->token_id == "t1");
    saw_authorization_ = ctx->client_metadata().count("authorization") > 0;
    auto* r = ctx->DefaultReactor();
    r->Finish(grpc::Status::OK);
    return r;
  }
  std::atomic<bool> saw_authorization_{false};
};

std::string Sh(const std::string& cmd) {
  EXPECT_EQ(std::system((cmd + " >/dev/null 2>&1").c_str()), 0) << cmd;
  return cmd;
}

std::string ReadAll(const std::string& path) {
  std::ifstream in(path);
  std::stringstream b;
  b << in.rdbuf();
  return b.str();
}

class GrpcSecurityTest : public ::testing::Test {
 protected:
  void SetUp() override {
    char tmpl[] = "/tmp/vigie-tls-test.XXXXXX";
    dir_ = mkdtemp(tmpl);
    MakeCa("ca");
    MakeCa("otherca");
    MakeCert("ca", "server", "subjectAltName=DNS:vigie.test,IP:127.0.0.1");
    MakeCert("ca", "server2", "subjectAltName=DNS:vigie.test,IP:127.0.0.1");
    MakeCert("ca", "client", "subjectAltName=DNS:agent1");
    MakeCert("otherca", "rogue", "subjectAltName=DNS:agent1");
  }
  void TearDown() override {
    if (server_) server_->Shutdown();
    if (security_) security_->Stop();
    std::system(absl::StrCat("rm -rf ", dir_).c_str());
  }
  std::string P(const std::string& name) { return absl::StrCat(dir_, "/", name); }
  void MakeCa(const std::string& name) {
    Sh(
        absl::StrCat("openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:prime256v1 -nodes "
                     "-days 2 -subj /CN=",
                     name, " -keyout ", P(name + ".key"), " -out ", P(name + ".crt")));
  }
  void MakeCert(const std::string& ca, const std::string& name, const std::string& ext) {
    Sh(absl::StrCat(
        "openssl req -newkey ec -pkeyopt ec_paramgen_curve:prime256v1 -nodes -subj /CN=", name,
        " -keyout ", P(name + ".key"), " -out ", P(name + ".csr")));
    std::ofstream(P(name + ".ext")) << ext << "\n";
    Sh(absl::StrCat("openssl x509 -req -in ", P(name + ".csr"), " -CA ", P(ca + ".crt"), " -CAkey ",
                    P(ca + ".key"), " -CAcreateserial -days 2 -extfile ", P(name + ".ext"),
                    " -out ", P(name + ".crt")));
  }

  void Serve(ServerTlsOptions tls) {
    EnableHealthAndReflection();
    auto s = ServerSecurity::Create("tls", tls, &authorizer_, &failures_, &registry_);
    ASSERT_TRUE(s.ok()) << s.status();
    security_ = std::move(*s);
    security_->Start();
    port_ = 0;
    grpc::ServerBuilder b;
    b.AddListeningPort("127.0.0.1:0", security_->credentials(), &port_);
    b.RegisterService(&service_);
    server_ = b.BuildAndStart();
    ASSERT_NE(port_, 0);
  }

  // One Notify call; returns its status and sets *principal_ok.
  grpc::Status Call(std::shared_ptr<grpc::ChannelCredentials> creds, const std::string& token,
                    bool* principal_ok = nullptr, const std::string& name_override = "vigie.test") {
    grpc::ChannelArguments args;
    if (!name_override.empty()) args.SetSslTargetNameOverride(name_override);
    auto ch = grpc::CreateCustomChannel(absl::StrCat("127.0.0.1:", port_), creds, args);
    auto stub = v1::Notifier::NewStub(ch);
    grpc::ClientContext ctx;
    ctx.set_deadline(std::chrono::system_clock::now() + std::chrono::seconds(5));
    AddBearerToken(&ctx, token);
    v1::NotifyRequest req;
    v1::NotifyResponse resp;
    grpc::Status st = stub->Notify(&ctx, req, &resp);
    if (principal_ok) *principal_ok = resp.duplicate();
    return st;
  }
  std::shared_ptr<grpc::ChannelCredentials> Tls(const std::string& client = "") {
    grpc::SslCredentialsOptions o;
    o.pem_root_certs = ReadAll(P("ca.crt"));
    if (!client.empty()) {
      o.pem_cert_chain = ReadAll(P(client + ".crt"));
      o.pem_private_key = ReadAll(P(client + ".key"));
    }
    return grpc::SslCredentials(o);
  }
  double Failures(const std::string& reason) {
    for (const auto& f : registry_.Collect()) {
      if (f.name != "vigie_auth_failures_total") continue;
      for (const auto& m : f.metric) {
        if (m.label[0].value == reason) return m.counter.value;
      }
    }
    return -1;
  }
  double Reloads(const std::string& result) {
    for (const auto& f : registry_.Collect()) {
      if (f.name != "vigie_tls_reloads_total") continue;
      for (const auto& m : f.metric) {
        for (const auto& l : m.label) {
          if (l.name == "result" && l.value == result) return m.counter.value;
        }
      }
    }
    return -1;
  }

  std::string dir_;
  prometheus::Registry registry_;
  TestAuthorizer authorizer_;
  AuthFailures failures_{&registry_};
  EchoNotifier service_;
  std::unique_ptr<ServerSecurity> security_;
  std::unique_ptr<grpc::Server> server_;
  int port_ = 0;
};

TEST_F(GrpcSecurityTest, PlaintextPortChecksTokensAndHidesThem) {
  Serve({});
  auto insecure = grpc::InsecureChannelCredentials();
  EXPECT_EQ(Call(insecure, "").error_code(), grpc::StatusCode::UNAUTHENTICATED);
  EXPECT_EQ(Failures("missing_token"), 1);
  EXPECT_EQ(Call(insecure, "bad").error_code(), grpc::StatusCode::UNAUTHENTICATED);
  EXPECT_EQ(Failures("unknown_token"), 1);
  bool principal_ok = false;
  EXPECT_TRUE(Call(insecure, "good", &principal_ok).ok());
  EXPECT_TRUE(principal_ok);
  EXPECT_FALSE(service_.saw_authorization_) << "the token must not reach handlers";
  // Health stays open.
  auto ch = grpc::CreateChannel(absl::StrCat("127.0.0.1:", port_), insecure);
  grpc::ClientContext ctx;
  grpc::health::v1::HealthCheckRequest req;
  grpc::health::v1::HealthCheckResponse resp;
  grpc::Status st = grpc::health::v1::Health::NewStub(ch)->Check(&ctx, req, &resp);
  EXPECT_TRUE(st.ok()) << st.error_message();
  EXPECT_EQ(resp.status(), grpc::health::v1::HealthCheckResponse::SERVING);
}

TEST_F(GrpcSecurityTest, MalformedAuthorizationIsRefused) {
  Serve({});
  auto ch =
      grpc::CreateChannel(absl::StrCat("127.0.0.1:", port_), grpc::InsecureChannelCredentials());
  grpc::ClientContext ctx;
  ctx.AddMetadata("authorization", "Basic Z29vZA==");
  v1::NotifyRequest req;
  v1::NotifyResponse resp;
  grpc::Status st = v1::Notifier::NewStub(ch)->Notify(&ctx, req, &resp);
  EXPECT_EQ(st.error_code(), grpc::StatusCode::UNAUTHENTICATED);
  EXPECT_THAT(st.error_message(), ::testing::Not(HasSubstr("Z29vZA")));
  EXPECT_EQ(Failures("malformed_token"), 1);
}

TEST_F(GrpcSecurityTest, TlsRefusesPlaintextAndReloadsOnlyGoodCertificates) {
  std::system(absl::StrCat("cp ", P("server.crt"), " ", P("live.crt"), "; cp ", P("server.key"),
                           " ", P("live.key"))
                  .c_str());
  Serve({P("live.crt"), P("live.key"), "", absl::Seconds(1)});
  EXPECT_TRUE(Call(Tls(), "good").ok());
  EXPECT_EQ(Call(grpc::InsecureChannelCredentials(), "good").error_code(),
            grpc::StatusCode::UNAVAILABLE);
  // A key that does not match the certificate: refused, counted, the old pair stays.
  Sh(absl::StrCat("cp ", P("server2.key"), " ", P("live.key")));
  for (int i = 0; i < 50 && Reloads("error") < 1; ++i) {
    std::this_thread::sleep_for(std::chrono::milliseconds(100));
  }
  EXPECT_EQ(Reloads("error"), 1);
  std::this_thread::sleep_for(std::chrono::milliseconds(1500));  // past gRPC's own refresh
  EXPECT_TRUE(Call(Tls(), "good").ok()) << "a bad file must not break new handshakes";
  // The matching certificate arrives: taken.
  Sh(absl::StrCat("cp ", P("server2.crt"), " ", P("live.crt")));
  for (int i = 0; i < 50 && Reloads("success") < 1; ++i) {
    std::this_thread::sleep_for(std::chrono::milliseconds(100));
  }
  EXPECT_EQ(Reloads("success"), 1);
  std::this_thread::sleep_for(std::chrono::milliseconds(1500));
  EXPECT_TRUE(Call(Tls(), "good").ok());
}

TEST_F(GrpcSecurityTest, MutualTlsRefusesUntrustedClientCertificates) {
  Serve({P("server.crt"), P("server.key"), P("ca.crt"), absl::Seconds(10)});
  grpc::Status st = Call(Tls("client"), "good");
  EXPECT_TRUE(st.ok()) << st.error_message();
  EXPECT_EQ(Call(Tls("rogue"), "good").error_code(), grpc::StatusCode::UNAVAILABLE);
  EXPECT_EQ(Call(Tls(), "good").error_code(), grpc::StatusCode::UNAVAILABLE);
}

TEST_F(GrpcSecurityTest, BadInitialFilesNameTheField) {
  auto s = ServerSecurity::Create("tls", {P("server.crt"), P("client.key"), "", absl::Seconds(1)},
                                  &authorizer_, &failures_, &registry_);
  EXPECT_EQ(s.status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_THAT(s.status().message(), HasSubstr("tls.key_file: the key does not match"));
  s = ServerSecurity::Create("tls", {P("missing.crt"), P("client.key"), "", absl::Seconds(1)},
                             &authorizer_, &failures_, &registry_);
  EXPECT_THAT(s.status().message(), HasSubstr("tls.cert_file: cannot read"));
}

TEST(ListenerSecurityTest, PlaintextBeyondLoopbackNeedsInsecure) {
  EXPECT_FALSE(*CheckListenerSecurity("grpc_listen", "127.0.0.1:1", {}, false));
  auto r = CheckListenerSecurity("grpc_listen", "0.0.0.0:1", {}, false);
  EXPECT_EQ(r.status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_THAT(r.status().message(), HasSubstr("grpc_listen: \"0.0.0.0:1\""));
  r = CheckListenerSecurity("grpc_listen", "127.evil.example:1", {}, false);
  EXPECT_FALSE(r.ok());
  EXPECT_TRUE(*CheckListenerSecurity("grpc_listen", "0.0.0.0:1", {}, true));
  ServerTlsOptions tls;
  tls.cert_file = "x";
  EXPECT_FALSE(*CheckListenerSecurity("grpc_listen", "0.0.0.0:1", tls, false));
}

TEST(BearerTokenTest, Parses) {
  EXPECT_EQ(*BearerToken(""), "");
  EXPECT_EQ(*BearerToken("Bearer abc"), "abc");
  EXPECT_EQ(*BearerToken("bearer  abc "), "abc");
  EXPECT_FALSE(BearerToken("Basic abc").ok());
  EXPECT_FALSE(BearerToken("abc").ok());
}

TEST(SecretsTest, TokensAreRandomAndLongEnough) {
  std::string a = NewToken(), b = NewToken();
  EXPECT_NE(a, b);
  EXPECT_EQ(a.size(), 6u + 43u);
  EXPECT_TRUE(absl::StartsWith(a, "vigie_"));
  EXPECT_EQ(Sha256("abc").size(), 32u);
  EXPECT_TRUE(ConstantTimeEquals("abc", "abc"));
  EXPECT_FALSE(ConstantTimeEquals("abc", "abd"));
  EXPECT_FALSE(ConstantTimeEquals("abc", "ab"));
}

TEST(SecretsTest, ReadSecretNamesTheSourceNotTheValue) {
  v1::SecretSource s;
  EXPECT_THAT(ReadSecret("token", s).status().message(), HasSubstr("token: set exactly one"));
  s.set_env("VIGIE_TEST_SECRET_UNSET");
  EXPECT_THAT(ReadSecret("token", s).status().message(),
              HasSubstr("token.env: variable VIGIE_TEST_SECRET_UNSET is not set"));
  setenv("VIGIE_TEST_SECRET", "s3cret", 1);
  s.set_env("VIGIE_TEST_SECRET");
  EXPECT_EQ(*ReadSecret("token", s), "s3cret");
  s.Clear();
  s.set_file("/nonexistent/token");
  EXPECT_THAT(ReadSecret("token", s).status().message(), HasSubstr("token.file: cannot read"));
}

}  // namespace
}  // namespace vigie
