#include "errors.h"

#include <cinttypes>
#include <cmath>
#include <cstdio>
#include <cstring>

namespace tsvmm {

ErrorArg ErrorArg::Num(std::string key, int64_t v, std::string label, bool hex) {
  ErrorArg a;
  a.key = std::move(key);
  a.label = std::move(label);
  a.kind = Kind::kNumber;
  a.hex = hex;
  a.number = v;
  return a;
}

ErrorArg ErrorArg::Big(std::string key, uint64_t v, std::string label) {
  ErrorArg a;
  a.key = std::move(key);
  a.label = std::move(label);
  a.kind = Kind::kBigInt;
  a.hex = true;
  a.bigint = v;
  return a;
}

ErrorArg ErrorArg::Str(std::string key, std::string v, std::string label) {
  ErrorArg a;
  a.key = std::move(key);
  a.label = std::move(label);
  a.kind = Kind::kString;
  a.string = std::move(v);
  return a;
}

std::string ErrnoName(int err) {
  // strerrorname_np (glibc >= 2.32) knows every errno the kernel can return to us.
  const char* name = strerrorname_np(err);
  if (name != nullptr) return name;
  return "ERRNO_" + std::to_string(err);
}

static std::string FormatArg(const ErrorArg& a) {
  char buf[64];
  switch (a.kind) {
    case ErrorArg::Kind::kNumber:
      if (a.hex) {
        std::snprintf(buf, sizeof buf, "0x%" PRIx64, static_cast<uint64_t>(a.number));
      } else {
        std::snprintf(buf, sizeof buf, "%" PRId64, a.number);
      }
      return buf;
    case ErrorArg::Kind::kBigInt:
      std::snprintf(buf, sizeof buf, "0x%" PRIx64, a.bigint);
      return buf;
    case ErrorArg::Kind::kString:
      return a.string;
  }
  return "";
}

std::string SyscallFailure::Message() const {
  std::string m = operation;
  std::string shown;
  for (const ErrorArg& a : args) {
    if (a.label.empty()) continue;
    if (!shown.empty()) shown += ", ";
    shown += a.label + "=" + FormatArg(a);
  }
  // An operation that already names its object ("open /dev/kvm") reads better without "()".
  if (!shown.empty() || operation.find(' ') == std::string::npos) m += "(" + shown + ")";
  m += " failed: " + ErrnoName(err) + " (" + std::strerror(err) + ")";
  return m;
}

Napi::Error ToJsError(Napi::Env env, const SyscallFailure& failure) {
  Napi::Error error = Napi::Error::New(env, failure.Message());
  Napi::Object obj = error.Value();
  obj.Set("syscall", Napi::String::New(env, failure.syscall));
  obj.Set("operation", Napi::String::New(env, failure.operation));
  obj.Set("errno", Napi::Number::New(env, failure.err));
  obj.Set("code", Napi::String::New(env, ErrnoName(failure.err)));
  Napi::Object args = Napi::Object::New(env);
  for (const ErrorArg& a : failure.args) {
    switch (a.kind) {
      case ErrorArg::Kind::kNumber:
        args.Set(a.key, Napi::Number::New(env, static_cast<double>(a.number)));
        break;
      case ErrorArg::Kind::kBigInt:
        args.Set(a.key, Napi::BigInt::New(env, a.bigint));
        break;
      case ErrorArg::Kind::kString:
        args.Set(a.key, Napi::String::New(env, a.string));
        break;
    }
  }
  obj.Set("args", args);
  return error;
}

void ThrowSyscallError(Napi::Env env, std::string syscall, std::string operation, int err,
                       std::vector<ErrorArg> args) {
  SyscallFailure f{std::move(syscall), std::move(operation), err, std::move(args)};
  throw ToJsError(env, f);
}

void ThrowStateError(Napi::Env env, const std::string& code, const std::string& message) {
  Napi::Error error = Napi::Error::New(env, message);
  error.Value().Set("code", Napi::String::New(env, code));
  throw error;
}

void ThrowTypeError(Napi::Env env, const std::string& message) {
  throw Napi::TypeError::New(env, message);
}

void ThrowRangeError(Napi::Env env, const std::string& message) {
  throw Napi::RangeError::New(env, message);
}

Napi::Value ErrnoNameJs(const Napi::CallbackInfo& info) {
  int64_t n = ArgInt(info, 0, "errno");
  return Napi::String::New(info.Env(), ErrnoName(static_cast<int>(n)));
}

uint64_t BigUint64Of(Napi::Env env, Napi::Value v, const char* what) {
  if (v.IsBigInt()) {
    int sign = 0;
    size_t words = 1;
    uint64_t word = 0;
    v.As<Napi::BigInt>().ToWords(&sign, &words, &word);
    if (sign != 0 && word != 0) ThrowRangeError(env, std::string(what) + " must not be negative");
    if (words > 1) ThrowRangeError(env, std::string(what) + " does not fit in 64 bits");
    return word;
  }
  if (v.IsNumber()) {
    double d = v.As<Napi::Number>().DoubleValue();
    if (!(d >= 0) || d != std::floor(d) || d > 9007199254740991.0) {
      ThrowRangeError(env, std::string(what) + " must be a non-negative safe integer");
    }
    return static_cast<uint64_t>(d);
  }
  ThrowTypeError(env, std::string(what) + " must be a bigint");
}

uint64_t ArgBigUint64(const Napi::CallbackInfo& info, size_t i, const char* what) {
  return BigUint64Of(info.Env(), info[i], what);
}

int64_t IntOf(Napi::Env env, Napi::Value v, const char* what) {
  if (v.IsNumber()) {
    double d = v.As<Napi::Number>().DoubleValue();
    if (d != std::floor(d) || std::fabs(d) > 9007199254740991.0) {
      ThrowRangeError(env, std::string(what) + " must be an integer");
    }
    return static_cast<int64_t>(d);
  }
  if (v.IsBigInt()) {
    bool lossless = false;
    int64_t r = v.As<Napi::BigInt>().Int64Value(&lossless);
    if (!lossless) ThrowRangeError(env, std::string(what) + " does not fit in 64 bits");
    return r;
  }
  ThrowTypeError(env, std::string(what) + " must be a number");
}

int64_t ArgInt(const Napi::CallbackInfo& info, size_t i, const char* what) {
  return IntOf(info.Env(), info[i], what);
}

uint32_t ArgUint32(const Napi::CallbackInfo& info, size_t i, const char* what) {
  int64_t v = ArgInt(info, i, what);
  if (v < 0 || v > 0xffffffffLL) ThrowRangeError(info.Env(), std::string(what) + " must be a u32");
  return static_cast<uint32_t>(v);
}

Napi::Buffer<uint8_t> ArgBuffer(const Napi::CallbackInfo& info, size_t i, const char* what) {
  if (!info[i].IsBuffer()) ThrowTypeError(info.Env(), std::string(what) + " must be a Buffer");
  return info[i].As<Napi::Buffer<uint8_t>>();
}

}  // namespace tsvmm
