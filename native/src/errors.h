// Syscall failures as JavaScript errors.
//
// Every failed syscall becomes an Error with { syscall, operation, errno, code, args } and a
// message "KVM_CREATE_VM(type=1) failed: EINVAL (Invalid argument)". A SyscallFailure is plain
// C++ (no napi) so a vCPU thread can build one and hand it to the JS thread.
#pragma once

#include <napi.h>

#include <cstdint>
#include <string>
#include <utility>
#include <vector>

namespace tsvmm {

// One argument of a failed call: a property of `error.args` and, when `label` is set, a
// `label=value` item in the message.
struct ErrorArg {
  enum class Kind { kNumber, kBigInt, kString };

  std::string key;    // property name in error.args (camelCase)
  std::string label;  // name in the message; empty = not shown there
  Kind kind = Kind::kNumber;
  bool hex = false;   // message shows 0x...
  int64_t number = 0;
  uint64_t bigint = 0;
  std::string string;

  // A JS number (fds, slots, small flags).
  static ErrorArg Num(std::string key, int64_t v, std::string label = "", bool hex = false);
  // A JS bigint (addresses, sizes, 64-bit flags); shown in hex.
  static ErrorArg Big(std::string key, uint64_t v, std::string label = "");
  static ErrorArg Str(std::string key, std::string v, std::string label = "");
};

struct SyscallFailure {
  std::string syscall;    // "ioctl", "mmap", "open", ...
  std::string operation;  // "KVM_RUN", "open /dev/kvm", ...
  int err = 0;            // errno
  std::vector<ErrorArg> args;

  std::string Message() const;
};

// "EINVAL" for 22; "ERRNO_<n>" for numbers the C library has no name for.
std::string ErrnoName(int err);

// The JS Error for a failure (JS thread only).
Napi::Error ToJsError(Napi::Env env, const SyscallFailure& failure);

// Throws ToJsError(...) as a C++ exception (NAPI_CPP_EXCEPTIONS); JS thread only.
[[noreturn]] void ThrowSyscallError(Napi::Env env, std::string syscall, std::string operation,
                                    int err, std::vector<ErrorArg> args);

// Errors that are not syscalls: wrong use of an object (closed, running, bad argument).
// code is e.g. "ERR_TSVMM_CLOSED".
[[noreturn]] void ThrowStateError(Napi::Env env, const std::string& code, const std::string& message);
[[noreturn]] void ThrowTypeError(Napi::Env env, const std::string& message);
[[noreturn]] void ThrowRangeError(Napi::Env env, const std::string& message);

// JS `errnoName(n)`.
Napi::Value ErrnoNameJs(const Napi::CallbackInfo& info);

// Argument helpers shared by the classes: they throw TypeError/RangeError on bad input.
uint64_t ArgBigUint64(const Napi::CallbackInfo& info, size_t i, const char* what);
uint64_t BigUint64Of(Napi::Env env, Napi::Value v, const char* what);
int64_t ArgInt(const Napi::CallbackInfo& info, size_t i, const char* what);
int64_t IntOf(Napi::Env env, Napi::Value v, const char* what);
uint32_t ArgUint32(const Napi::CallbackInfo& info, size_t i, const char* what);
Napi::Buffer<uint8_t> ArgBuffer(const Napi::CallbackInfo& info, size_t i, const char* what);

}  // namespace tsvmm
