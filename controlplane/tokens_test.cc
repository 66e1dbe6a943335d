#include "controlplane/tokens.h"

#include "common/secrets.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"

namespace vigie::controlplane {
namespace {

using ::testing::HasSubstr;

// Only the token methods; the rest is never called here.
class TokenStore : public Store {
 public:
  absl::StatusOr<uint64_t> RegisterAgent(const v1::Hello&, const std::string&) override {
    return 0;
  }
  absl::Status MarkDisconnected(const std::string&, const std::string&) override {
    return absl::OkStatus();
  }
  absl::Status TouchAgent(const std::string&) override { return absl::OkStatus(); }
  absl::StatusOr<IngestResult> Ingest(const std::string&, const std::vector<v1::AgentMessage>&,
                                      const std::vector<Transition>&,
                                      const std::vector<PendingChange>&,
                                      const std::string&) override {
    return IngestResult{};
  }
  absl::StatusOr<std::vector<v1::Agent>> ListAgents() override { return std::vector<v1::Agent>{}; }
  absl::StatusOr<v1::Agent> GetAgent(const std::string&) override { return v1::Agent{}; }
  absl::StatusOr<std::vector<ActiveAlert>> LoadFiringAlerts() override {
    return std::vector<ActiveAlert>{};
  }
  absl::StatusOr<v1::QuerySamplesResponse> QuerySamples(const v1::QuerySamplesRequest&,
                                                        absl::Duration, uint32_t) override {
    return v1::QuerySamplesResponse{};
  }
  absl::StatusOr<int> DispatchOutbox(
      int, absl::Duration, const std::function<DeliveryOutcome(const OutboxEntry&)>&) override {
    return 0;
  }
  absl::StatusOr<OutboxStatus> PendingOutbox() override { return OutboxStatus{}; }
  absl::StatusOr<TokenRecord> CreateToken(const TokenRecord& t) override {
    tokens.push_back(t);
    tokens.back().created_at_unix = 1;
    return tokens.back();
  }
  absl::StatusOr<std::vector<TokenRecord>> ListTokens() override { return tokens; }
  absl::StatusOr<TokenRecord> RevokeToken(const std::string& id) override {
    for (TokenRecord& t : tokens) {
      if (t.id == id) {
        if (t.revoked_at_unix == 0) t.revoked_at_unix = 2;
        return t;
      }
    }
    return absl::NotFoundError("id");
  }
  absl::Status UpsertBootstrapToken(const TokenRecord& t) override {
    tokens.push_back(t);
    return absl::OkStatus();
  }
  std::vector<TokenRecord> tokens;
};

class TokenRegistryTest : public ::testing::Test {
 protected:
  std::string Make(v1::TokenKind kind, const std::string& agent = "") {
    auto r = tokens_.Create(kind, agent, "test", "bootstrap");
    EXPECT_TRUE(r.ok()) << r.status();
    return r->second;
  }
  absl::StatusOr<Principal> Auth(const std::string& method, const std::string& token) {
    reason_.clear();
    return tokens_.Authorize(method, token, &reason_);
  }
  TokenStore store_;
  TokenRegistry tokens_{&store_, absl::Seconds(5)};
  std::string reason_;
};

TEST_F(TokenRegistryTest, SecretsAreStoredOnlyAsHashes) {
  const std::string secret = Make(v1::TOKEN_KIND_ADMIN);
  ASSERT_EQ(store_.tokens.size(), 1u);
  EXPECT_EQ(store_.tokens[0].sha256, Sha256(secret));
  EXPECT_EQ(store_.tokens[0].sha256.find(secret), std::string::npos);
  EXPECT_EQ(store_.tokens[0].id.size(), 16u);
}

TEST_F(TokenRegistryTest, RolesGateMethods) {
  const std::string admin = Make(v1::TOKEN_KIND_ADMIN);
  const std::string viewer = Make(v1::TOKEN_KIND_VIEWER);
  const std::string agent = Make(v1::TOKEN_KIND_AGENT, "web1");
  EXPECT_TRUE(Auth("/grpc.health.v1.Health/Check", "").ok());
  EXPECT_EQ(Auth("/vigie.v1.Admin/ListAgents", "").status().code(),
            absl::StatusCode::kUnauthenticated);
  EXPECT_EQ(reason_, "missing_token");
  EXPECT_EQ(Auth("/vigie.v1.Admin/ListAgents", "vigie_nope").status().code(),
            absl::StatusCode::kUnauthenticated);
  EXPECT_EQ(reason_, "unknown_token");
  EXPECT_TRUE(Auth("/vigie.v1.Admin/ListAgents", viewer).ok());
  EXPECT_TRUE(Auth("/vigie.v1.Admin/QuerySamples", viewer).ok());
  EXPECT_TRUE(Auth("/grpc.reflection.v1alpha.ServerReflection/ServerReflectionInfo", viewer).ok());
  EXPECT_EQ(Auth("/vigie.v1.Admin/CreateToken", viewer).status().code(),
            absl::StatusCode::kPermissionDenied);
  EXPECT_EQ(reason_, "wrong_role");
  EXPECT_EQ(Auth("/vigie.v1.Admin/RevokeToken", viewer).status().code(),
            absl::StatusCode::kPermissionDenied);
  EXPECT_TRUE(Auth("/vigie.v1.Admin/CreateToken", admin).ok());
  EXPECT_EQ(Auth("/vigie.v1.Admin/ListAgents", agent).status().code(),
            absl::StatusCode::kPermissionDenied);
  EXPECT_EQ(
      Auth("/grpc.reflection.v1alpha.ServerReflection/ServerReflectionInfo", agent).status().code(),
      absl::StatusCode::kPermissionDenied);
  EXPECT_EQ(Auth("/vigie.v1.AgentGateway/Connect", admin).status().code(),
            absl::StatusCode::kPermissionDenied);
  auto p = Auth("/vigie.v1.AgentGateway/Connect", agent);
  ASSERT_TRUE(p.ok());
  EXPECT_EQ(p->agent_id, "web1");
  // Unknown methods need admin.
  EXPECT_EQ(Auth("/vigie.v1.Admin/SomethingNew", viewer).status().code(),
            absl::StatusCode::kPermissionDenied);
}

TEST_F(TokenRegistryTest, RevokedTokensAreRefusedAndReported) {
  const std::string agent = Make(v1::TOKEN_KIND_AGENT, "web1");
  std::vector<std::string> revoked;
  tokens_.SetOnRevoked([&](const std::string& id) { revoked.push_back(id); });
  const std::string id = store_.tokens[0].id;
  ASSERT_TRUE(tokens_.Revoke(id).ok());
  EXPECT_EQ(Auth("/vigie.v1.AgentGateway/Connect", agent).status().code(),
            absl::StatusCode::kUnauthenticated);
  EXPECT_EQ(reason_, "revoked_token");
  EXPECT_THAT(revoked, ::testing::ElementsAre(id));
  EXPECT_EQ(tokens_.List(false).size(), 0u);
  EXPECT_EQ(tokens_.List(true).size(), 1u);
  EXPECT_EQ(tokens_.Revoke("nope").status().code(), absl::StatusCode::kNotFound);
}

TEST_F(TokenRegistryTest, HelloIdentityRules) {
  const std::string agent = Make(v1::TOKEN_KIND_AGENT, "web1");
  v1::Hello hello;
  hello.set_agent_id("web2");
  hello.set_hostname("web2");
  std::string reason;
  Principal a{"t", "agent", "web1"};
  absl::Status s = tokens_.AuthorizeHello(a, hello, &reason);
  EXPECT_EQ(s.code(), absl::StatusCode::kPermissionDenied);
  EXPECT_EQ(reason, "agent_id_mismatch");
  EXPECT_THAT(s.message(), HasSubstr("hello.agent_id: \"web2\""));
  hello.set_agent_id("web1");
  EXPECT_TRUE(tokens_.AuthorizeHello(a, hello, &reason).ok());
  // Enrolment: the identity is the hostname, and never one with a token of its own.
  Principal e{"e", "enrolment", ""};
  hello.set_agent_id("web2");
  hello.set_hostname("web2");
  EXPECT_TRUE(tokens_.AuthorizeHello(e, hello, &reason).ok());
  hello.set_hostname("other");
  EXPECT_EQ(tokens_.AuthorizeHello(e, hello, &reason).code(), absl::StatusCode::kPermissionDenied);
  hello.set_agent_id("web1");
  hello.set_hostname("web1");
  EXPECT_EQ(tokens_.AuthorizeHello(e, hello, &reason).code(), absl::StatusCode::kPermissionDenied);
  EXPECT_EQ(reason, "agent_id_reserved");
  EXPECT_EQ(tokens_.AuthorizeHello(std::nullopt, hello, &reason).code(),
            absl::StatusCode::kPermissionDenied);
}

TEST_F(TokenRegistryTest, BadRequestsNameTheField) {
  EXPECT_THAT(tokens_.Create(v1::TOKEN_KIND_AGENT, "", "", "").status().message(),
              HasSubstr("agent_id"));
  EXPECT_THAT(tokens_.Create(v1::TOKEN_KIND_AGENT, "bad\xff", "", "").status().message(),
              HasSubstr("agent_id"));
  EXPECT_THAT(tokens_.Create(v1::TOKEN_KIND_UNSPECIFIED, "", "", "").status().message(),
              HasSubstr("kind"));
  EXPECT_THAT(tokens_.Create(v1::TOKEN_KIND_ADMIN, "web1", "", "").status().message(),
              HasSubstr("agent_id"));
  EXPECT_THAT(
      tokens_.Create(v1::TOKEN_KIND_ADMIN, "", std::string(300, 'x'), "").status().message(),
      HasSubstr("description"));
}

}  // namespace
}  // namespace vigie::controlplane
