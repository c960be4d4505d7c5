#include "kvm.h"

#include <fcntl.h>
#include <sys/ioctl.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>
#include <vector>

#include "addon.h"
#include "errors.h"
#include "kvm_uapi.h"
#include "vm.h"

namespace tsvmm {

Napi::Function Kvm::DefineClass(Napi::Env env) {
  return ObjectWrap<Kvm>::DefineClass(
      env, "Kvm",
      {
          InstanceAccessor("fd", &Kvm::GetFd, nullptr),
          InstanceMethod("apiVersion", &Kvm::ApiVersion),
          InstanceMethod("checkExtension", &Kvm::CheckExtension),
          InstanceMethod("vcpuMmapSize", &Kvm::VcpuMmapSize),
          InstanceMethod("supportedCpuid", &Kvm::SupportedCpuid),
          InstanceMethod("createVm", &Kvm::CreateVm),
          InstanceMethod("close", &Kvm::Close),
      });
}

Kvm::Kvm(const Napi::CallbackInfo& info) : ObjectWrap<Kvm>(info) {
  Napi::Env env = info.Env();
  if (!info.IsConstructCall()) ThrowTypeError(env, "Kvm must be called with new");
  std::string path = "/dev/kvm";
  if (info.Length() > 0 && !info[0].IsUndefined()) {
    if (!info[0].IsString()) ThrowTypeError(env, "Kvm: devicePath must be a string");
    path = info[0].As<Napi::String>().Utf8Value();
  }
  int fd;
  do {
    fd = ::open(path.c_str(), O_RDWR | O_CLOEXEC);
  } while (fd < 0 && errno == EINTR);
  if (fd < 0) {
    ThrowSyscallError(env, "open", "open " + path, errno,
                      {ErrorArg::Str("path", path), ErrorArg::Str("flags", "O_RDWR|O_CLOEXEC")});
  }
  fd_ = fd;
}

Kvm::~Kvm() {
  if (fd_ >= 0) ::close(fd_);
}

int Kvm::RequireOpen(Napi::Env env, const char* what) const {
  if (fd_ < 0) ThrowStateError(env, "ERR_TSVMM_CLOSED", std::string("Kvm.") + what + "(): /dev/kvm is closed");
  return fd_;
}

Napi::Value Kvm::GetFd(const Napi::CallbackInfo& info) { return Napi::Number::New(info.Env(), fd_); }

Napi::Value Kvm::ApiVersion(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  int rc = ioctl(RequireOpen(env, "apiVersion"), KVM_GET_API_VERSION, 0);
  if (rc < 0) ThrowSyscallError(env, "ioctl", "KVM_GET_API_VERSION", errno, {});
  return Napi::Number::New(env, rc);
}

Napi::Value CheckExtensionOn(const Napi::CallbackInfo& info, int fd, const char* scope) {
  Napi::Env env = info.Env();
  int64_t cap = ArgInt(info, 0, "cap");
  int rc = ioctl(fd, KVM_CHECK_EXTENSION, static_cast<unsigned long>(cap));
  if (rc < 0) {
    ThrowSyscallError(env, "ioctl", "KVM_CHECK_EXTENSION", errno,
                      {ErrorArg::Num("cap", cap, "cap"), ErrorArg::Str("scope", scope)});
  }
  return Napi::Number::New(env, rc);
}

Napi::Value Kvm::CheckExtension(const Napi::CallbackInfo& info) {
  return CheckExtensionOn(info, RequireOpen(info.Env(), "checkExtension"), "system");
}

int Kvm::VcpuMmapSizeOrThrow(Napi::Env env) {
  int rc = ioctl(RequireOpen(env, "vcpuMmapSize"), KVM_GET_VCPU_MMAP_SIZE, 0);
  if (rc < 0) ThrowSyscallError(env, "ioctl", "KVM_GET_VCPU_MMAP_SIZE", errno, {});
  return rc;
}

Napi::Value Kvm::VcpuMmapSize(const Napi::CallbackInfo& info) {
  return Napi::Number::New(info.Env(), VcpuMmapSizeOrThrow(info.Env()));
}

Napi::Value Kvm::SupportedCpuid(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  int fd = RequireOpen(env, "supportedCpuid");
  // The kernel answers E2BIG until nent is large enough; grow and retry (QEMU does the same).
  for (uint32_t nent = 64; nent <= 65536; nent *= 2) {
    // struct kvm_cpuid2 as raw bytes: u32 nent, u32 padding, entries at byte 8 (see kvm_uapi.h).
    std::vector<uint64_t> storage((kCpuid2HeaderSize + nent * sizeof(kvm_cpuid_entry2) + 7) / 8);
    auto* bytes = reinterpret_cast<uint8_t*>(storage.data());
    std::memcpy(bytes, &nent, sizeof nent);
    if (ioctl(fd, kKvmGetSupportedCpuid, bytes) == 0) {
      uint32_t got;
      std::memcpy(&got, bytes, sizeof got);
      if (got > nent) got = nent;  // the kernel only ever lowers it
      // SAFETY: storage holds nent entries after the header, and got <= nent.
      return Napi::Buffer<uint8_t>::Copy(env, bytes + kCpuid2HeaderSize, got * sizeof(kvm_cpuid_entry2));
    }
    if (errno != E2BIG) {
      ThrowSyscallError(env, "ioctl", "KVM_GET_SUPPORTED_CPUID", errno, {ErrorArg::Num("nent", nent, "nent")});
    }
  }
  ThrowSyscallError(env, "ioctl", "KVM_GET_SUPPORTED_CPUID", E2BIG, {ErrorArg::Num("nent", 65536, "nent")});
}

Napi::Value Kvm::CreateVm(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  int kvm_fd = RequireOpen(env, "createVm");
  int64_t type = info.Length() > 0 && !info[0].IsUndefined() ? ArgInt(info, 0, "type") : 0;
  size_t mmap_size = static_cast<size_t>(VcpuMmapSizeOrThrow(env));
  int fd;
  // KVM_CREATE_VM can fail with EINTR when a signal arrives during setup; QEMU retries too.
  do {
    fd = ioctl(kvm_fd, KVM_CREATE_VM, static_cast<unsigned long>(type));
  } while (fd < 0 && errno == EINTR);
  if (fd < 0) ThrowSyscallError(env, "ioctl", "KVM_CREATE_VM", errno, {ErrorArg::Num("type", type, "type")});
  // KVM creates VM fds with O_CLOEXEC (anon_inode_getfile(..., O_RDWR) + get_unused_fd_flags(O_CLOEXEC)).
  Vm::InitArgs args{fd, mmap_size};
  try {
    return GetAddonData(env).vm.New({Napi::External<Vm::InitArgs>::New(env, &args)});
  } catch (...) {
    if (args.fd >= 0) ::close(args.fd);
    throw;
  }
}

Napi::Value Kvm::Close(const Napi::CallbackInfo& info) {
  if (fd_ >= 0) {
    ::close(fd_);
    fd_ = -1;
  }
  return info.Env().Undefined();
}

}  // namespace tsvmm
