// Per-environment state of the addon: constructors of the classes that JavaScript cannot
// construct directly (a Vm comes from Kvm.createVm, a Vcpu from Vm.createVcpu, ...).
#pragma once

#include <napi.h>

#include <string>

namespace tsvmm {

struct AddonData {
  Napi::FunctionReference vm;
  Napi::FunctionReference vcpu;
  Napi::FunctionReference guest_memfd;
};

AddonData& GetAddonData(Napi::Env env);

// Internal constructors take one argument: an External of their Init struct. An object built
// any other way (e.g. `new (vm.constructor)()` from JS) is refused with a TypeError.
template <typename InitT>
InitT* InternalInit(const Napi::CallbackInfo& info, const char* class_name, const char* made_by) {
  if (info.Length() != 1 || !info[0].IsExternal()) {
    throw Napi::TypeError::New(info.Env(), std::string(class_name) +
                                               " cannot be constructed from JavaScript; use " +
                                               made_by);
  }
  // SAFETY: only this addon creates Externals of InitT, always pointing at a caller's stack
  // object that outlives the synchronous constructor call (Kvm.createVm, Vm.createVcpu, ...).
  return info[0].As<Napi::External<InitT>>().Data();
}

}  // namespace tsvmm
