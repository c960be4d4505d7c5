// Kvm: an open /dev/kvm (system-scope ioctls). `new Kvm(devicePath)` from JS.
#pragma once

#include <napi.h>

namespace tsvmm {

// KVM_CHECK_EXTENSION on /dev/kvm (scope "system") or a VM fd (scope "vm"); throws on failure.
Napi::Value CheckExtensionOn(const Napi::CallbackInfo& info, int fd, const char* scope);

class Kvm : public Napi::ObjectWrap<Kvm> {
 public:
  static Napi::Function DefineClass(Napi::Env env);
  explicit Kvm(const Napi::CallbackInfo& info);
  ~Kvm() override;

 private:
  int RequireOpen(Napi::Env env, const char* what) const;
  int VcpuMmapSizeOrThrow(Napi::Env env);

  Napi::Value GetFd(const Napi::CallbackInfo& info);
  Napi::Value ApiVersion(const Napi::CallbackInfo& info);
  Napi::Value CheckExtension(const Napi::CallbackInfo& info);
  Napi::Value VcpuMmapSize(const Napi::CallbackInfo& info);
  Napi::Value SupportedCpuid(const Napi::CallbackInfo& info);
  Napi::Value CreateVm(const Napi::CallbackInfo& info);
  Napi::Value Close(const Napi::CallbackInfo& info);

  int fd_ = -1;
};

}  // namespace tsvmm
