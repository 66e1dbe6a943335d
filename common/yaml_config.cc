#include "common/yaml_config.h"

#include <arpa/inet.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cerrno>
#include <cmath>
#include <cstring>
#include <limits>
#include <sstream>
#include <vector>

#include "absl/strings/ascii.h"
#include "absl/strings/match.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "absl/strings/strip.h"
#include "common/agent_message.h"
#include "common/files.h"
#include "common/status.h"
#include "google/protobuf/descriptor.h"
#include "google/protobuf/util/json_util.h"
#include "nlohmann/json.hpp"
#include "re2/re2.h"
#include "yaml-cpp/yaml.h"

namespace vigie {
namespace {

using google::protobuf::Descriptor;
using google::protobuf::EnumDescriptor;
using google::protobuf::FieldDescriptor;
using nlohmann::json;

absl::Status Bad(const std::string& path, const YAML::Node& node, absl::string_view what) {
  return absl::InvalidArgumentError(absl::StrCat(path.empty() ? "(top level)" : path, " (line ",
                                                 node.Mark().line + 1, "): ", what));
}

std::string Join(const std::string& path, absl::string_view key) {
  return path.empty() ? std::string(key) : absl::StrCat(path, ".", key);
}

absl::StatusOr<json> MessageToJson(const YAML::Node& node, const Descriptor* d,
                                   const std::string& path);

absl::StatusOr<json> ScalarToJson(const YAML::Node& node, const FieldDescriptor* f,
                                  const std::string& path) {
  if (f->cpp_type() == FieldDescriptor::CPPTYPE_MESSAGE) {
    return MessageToJson(node, f->message_type(), path);
  }
  if (!node.IsScalar()) {
    return Bad(path, node, absl::StrCat("expected a single value of type ", f->type_name()));
  }
  const std::string& s = node.Scalar();
  // Checked first: JSON (and every proto string) must be valid UTF-8, and the messages below
  // quote the value.
  if (!IsValidUtf8(s)) return Bad(path, node, "is not valid UTF-8");
  auto expected = [&](absl::string_view what) {
    return Bad(path, node, absl::StrCat("expected ", what, ", got \"", s, "\""));
  };
  switch (f->cpp_type()) {
    case FieldDescriptor::CPPTYPE_STRING:
      return json(s);
    case FieldDescriptor::CPPTYPE_BOOL: {
      const std::string l = absl::AsciiStrToLower(s);
      if (l == "true") return json(true);
      if (l == "false") return json(false);
      return expected("true or false");
    }
    case FieldDescriptor::CPPTYPE_INT32:
    case FieldDescriptor::CPPTYPE_INT64: {
      int64_t v;
      if (!absl::SimpleAtoi(s, &v)) return expected("an integer");
      if (f->cpp_type() == FieldDescriptor::CPPTYPE_INT32 &&
          (v < std::numeric_limits<int32_t>::min() || v > std::numeric_limits<int32_t>::max())) {
        return expected("a 32-bit integer");
      }
      return json(v);
    }
    case FieldDescriptor::CPPTYPE_UINT32:
    case FieldDescriptor::CPPTYPE_UINT64: {
      uint64_t v;
      if (!absl::SimpleAtoi(s, &v)) return expected("a non-negative integer");
      if (f->cpp_type() == FieldDescriptor::CPPTYPE_UINT32 &&
          v > std::numeric_limits<uint32_t>::max()) {
        return expected("a 32-bit non-negative integer");
      }
      return json(v);
    }
    case FieldDescriptor::CPPTYPE_FLOAT:
    case FieldDescriptor::CPPTYPE_DOUBLE: {
      double v;
      // NaN and infinities would reach JSON as null, i.e. silently 0.
      if (!absl::SimpleAtod(s, &v)) return expected("a number");
      if (!std::isfinite(v)) return expected("a finite number");
      return json(v);
    }
    case FieldDescriptor::CPPTYPE_ENUM: {
      const EnumDescriptor* e = f->enum_type();
      if (e->FindValueByName(s) == nullptr) {
        std::vector<std::string> names;
        for (int i = 0; i < e->value_count(); ++i) names.push_back(e->value(i)->name());
        return expected(absl::StrCat("one of ", absl::StrJoin(names, ", ")));
      }
      return json(s);
    }
    default:
      return Bad(path, node, "unsupported field type");
  }
}

absl::StatusOr<json> MessageToJson(const YAML::Node& node, const Descriptor* d,
                                   const std::string& path) {
  json out = json::object();
  if (node.IsNull()) return out;
  if (!node.IsMap()) return Bad(path, node, absl::StrCat("expected a mapping (", d->name(), ")"));
  for (const auto& kv : node) {
    if (!kv.first.IsScalar()) return Bad(path, kv.first, "keys must be plain names");
    const std::string& key = kv.first.Scalar();
    const std::string fpath = Join(path, key);
    const FieldDescriptor* f = d->FindFieldByName(key);
    if (f == nullptr) {
      std::vector<std::string> names;
      for (int i = 0; i < d->field_count(); ++i) names.push_back(d->field(i)->name());
      return Bad(fpath, kv.first,
                 absl::StrCat("unknown field; known fields: ", absl::StrJoin(names, ", ")));
    }
    const YAML::Node& v = kv.second;
    if (v.IsNull()) continue;  // "key:" with nothing after it keeps the default
    if (f->is_map()) {
      if (!v.IsMap()) return Bad(fpath, v, "expected a mapping of names to values");
      const FieldDescriptor* value_field = f->message_type()->map_value();
      json m = json::object();
      for (const auto& entry : v) {
        if (!entry.first.IsScalar()) return Bad(fpath, entry.first, "map keys must be plain");
        const std::string k = entry.first.Scalar();
        if (!IsValidUtf8(k)) return Bad(fpath, entry.first, "a key is not valid UTF-8");
        VIGIE_ASSIGN_OR_RETURN(
            m[k], ScalarToJson(entry.second, value_field, absl::StrCat(fpath, "[\"", k, "\"]")));
      }
      out[f->json_name()] = std::move(m);
    } else if (f->is_repeated()) {
      if (!v.IsSequence()) return Bad(fpath, v, "expected a list");
      json list = json::array();
      for (size_t i = 0; i < v.size(); ++i) {
        VIGIE_ASSIGN_OR_RETURN(json item, ScalarToJson(v[i], f, absl::StrCat(fpath, "[", i, "]")));
        list.push_back(std::move(item));
      }
      out[f->json_name()] = std::move(list);
    } else {
      VIGIE_ASSIGN_OR_RETURN(out[f->json_name()], ScalarToJson(v, f, fpath));
    }
  }
  return out;
}

}  // namespace

absl::Status ParseYamlConfig(absl::string_view yaml, google::protobuf::Message* message) {
  message->Clear();
  YAML::Node root;
  try {
    root = YAML::Load(std::string(yaml));
  } catch (const YAML::Exception& e) {
    return absl::InvalidArgumentError(
        absl::StrCat("line ", e.mark.line + 1, ", column ", e.mark.column + 1, ": ", e.msg));
  }
  VIGIE_ASSIGN_OR_RETURN(json j, MessageToJson(root, message->GetDescriptor(), ""));
  google::protobuf::util::JsonParseOptions options;
  options.ignore_unknown_fields = false;
  auto status = google::protobuf::util::JsonStringToMessage(j.dump(), message, options);
  if (!status.ok()) {
    return absl::InvalidArgumentError(std::string(status.message()));
  }
  return absl::OkStatus();
}

absl::StatusOr<std::string> ReadConfigFile(absl::string_view field, const std::string& path,
                                           size_t max_bytes) {
  absl::StatusOr<std::string> text = ReadRegularFile(path, max_bytes);
  if (text.ok()) return text;
  std::string message =
      absl::StrCat(field, ": cannot read \"", path, "\": ", text.status().message());
  if (absl::IsNotFound(text.status())) return absl::NotFoundError(message);
  return absl::InvalidArgumentError(message);
}

absl::Status LoadYamlConfigFile(const std::string& path, google::protobuf::Message* message) {
  absl::StatusOr<std::string> text = ReadConfigFile("--config", path, 16 << 20);
  if (!text.ok()) return text.status();
  return Annotate(ParseYamlConfig(*text, message), path);
}

absl::StatusOr<absl::Duration> ParseConfigDuration(absl::string_view field, absl::string_view value,
                                                   absl::Duration default_value) {
  if (value.empty()) return default_value;
  absl::Duration d;
  int64_t days = 0;
  // Whole days ("15d") as well as Go-style durations; at most about 27 years.
  if (absl::string_view n = value;
      absl::ConsumeSuffix(&n, "d") && absl::SimpleAtoi(n, &days) && days >= 0 && days <= 10000) {
    return absl::Hours(24 * days);
  }
  if (!absl::ParseDuration(value, &d) || d < absl::ZeroDuration() ||
      d == absl::InfiniteDuration()) {
    return absl::InvalidArgumentError(absl::StrCat(
        field, ": \"", value,
        "\" is not a duration; write e.g. \"500ms\", \"30s\", \"5m\", \"1h\", \"15d\""));
  }
  return d;
}

absl::StatusOr<uint64_t> ParseConfigBytes(absl::string_view field, absl::string_view value,
                                          uint64_t default_value) {
  if (value.empty()) return default_value;
  static const std::pair<const char*, double> kUnits[] = {
      {"KiB", 1024.0}, {"MiB", 1048576.0}, {"GiB", 1073741824.0}, {"TiB", 1099511627776.0},
      {"kB", 1e3},     {"KB", 1e3},        {"MB", 1e6},           {"GB", 1e9},
      {"TB", 1e12},    {"B", 1.0}};
  absl::string_view number = absl::StripAsciiWhitespace(value);
  double scale = 1;
  for (const auto& [unit, factor] : kUnits) {
    if (absl::ConsumeSuffix(&number, unit)) {
      scale = factor;
      break;
    }
  }
  number = absl::StripTrailingAsciiWhitespace(number);
  double n = 0;
  const bool plain = !number.empty() && absl::ascii_isdigit(number[0]) &&
                     number.find_first_not_of("0123456789.") == absl::string_view::npos;
  if (!plain || !absl::SimpleAtod(number, &n) || !std::isfinite(n * scale) || n * scale > 9.0e18) {
    return absl::InvalidArgumentError(absl::StrCat(
        field, ": \"", value, "\" is not a size; write e.g. \"512MiB\", \"10MB\", \"4096\""));
  }
  return static_cast<uint64_t>(n * scale);
}

namespace {
bool SplitHostPort(absl::string_view hp, absl::string_view* host, int* port) {
  size_t colon = hp.rfind(':');
  if (colon == absl::string_view::npos) return false;
  *host = hp.substr(0, colon);
  if (absl::ConsumePrefix(host, "[") && !absl::ConsumeSuffix(host, "]")) return false;
  return absl::SimpleAtoi(hp.substr(colon + 1), port) && *port >= 0 && *port <= 65535 &&
         !host->empty();
}
}  // namespace

absl::Status ValidateHostPort(absl::string_view field, absl::string_view value) {
  absl::string_view host;
  int port;
  if (!SplitHostPort(value, &host, &port)) {
    return absl::InvalidArgumentError(absl::StrCat(
        field, ": \"", value, "\" is not host:port (e.g. \"127.0.0.1:7400\", \"[::1]:7400\")"));
  }
  return absl::OkStatus();
}

bool IsLoopback(absl::string_view host_port) {
  absl::string_view host;
  int port;
  if (!SplitHostPort(host_port, &host, &port)) return false;
  // An IP literal only: a name ("localhost", "127.attacker.example") may resolve anywhere.
  const std::string h(host);
  in_addr v4;
  if (inet_pton(AF_INET, h.c_str(), &v4) == 1) return (ntohl(v4.s_addr) >> 24) == 127;
  in6_addr v6;
  if (inet_pton(AF_INET6, h.c_str(), &v6) == 1) return IN6_IS_ADDR_LOOPBACK(&v6);
  return false;
}

absl::Status RequireLoopback(absl::string_view field, absl::string_view listen,
                             absl::string_view unless) {
  if (IsLoopback(listen)) return absl::OkStatus();
  return absl::InvalidArgumentError(absl::StrCat(
      field, ": \"", listen, "\" is not a loopback IP address (127.0.0.0/8 or [::1]); ", unless));
}

absl::StatusOr<std::string> ListenAddress(absl::string_view field, const std::string& value,
                                          const std::string& default_value) {
  const std::string& listen = value.empty() ? default_value : value;
  VIGIE_RETURN_IF_ERROR(ValidateHostPort(field, listen));
  return listen;
}

absl::StatusOr<BackoffPolicy> BackoffFromConfig(absl::string_view field, const v1::Backoff& b,
                                                BackoffPolicy p) {
  VIGIE_ASSIGN_OR_RETURN(
      p.initial, ParseConfigDuration(absl::StrCat(field, ".initial"), b.initial(), p.initial));
  VIGIE_ASSIGN_OR_RETURN(p.max, ParseConfigDuration(absl::StrCat(field, ".max"), b.max(), p.max));
  if (b.multiplier() != 0) p.multiplier = b.multiplier();
  if (p.multiplier < 1) {
    return absl::InvalidArgumentError(
        absl::StrCat(field, ".multiplier: must be >= 1, got ", b.multiplier()));
  }
  if (p.initial <= absl::ZeroDuration() || p.max < p.initial) {
    return absl::InvalidArgumentError(absl::StrCat(field, ": need 0 < initial <= max, got initial ",
                                                   absl::FormatDuration(p.initial), " and max ",
                                                   absl::FormatDuration(p.max)));
  }
  return p;
}

absl::Status ValidateConfigName(absl::string_view field, const std::string& value) {
  static const RE2 kName("[A-Za-z0-9._-]{1,128}");
  if (!RE2::FullMatch(value, kName)) {
    return absl::InvalidArgumentError(
        absl::StrCat(field, ": \"", value, "\" must be 1-128 characters of A-Z a-z 0-9 . _ -"));
  }
  return absl::OkStatus();
}

}  // namespace vigie
