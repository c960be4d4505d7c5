// tsvmm native addon: registration. The JS surface is declared in vmm/native.ts.
#include <napi.h>

#include "addon.h"
#include "errors.h"
#include "guest_memfd.h"
#include "kvm.h"
#include "memfd.h"
#include "vcpu.h"
#include "vm.h"

namespace tsvmm {

AddonData& GetAddonData(Napi::Env env) { return *env.GetInstanceData<AddonData>(); }

Napi::Object Init(Napi::Env env, Napi::Object exports) {
  auto* data = new AddonData();
  env.SetInstanceData<AddonData>(data);  // deleted by node-addon-api at environment teardown

  data->vm = Napi::Persistent(Vm::DefineClass(env));
  data->vcpu = Napi::Persistent(Vcpu::DefineClass(env));
  data->guest_memfd = Napi::Persistent(GuestMemfd::DefineClass(env));

  exports.Set("Kvm", Kvm::DefineClass(env));
  exports.Set("Memfd", Memfd::DefineClass(env));
  exports.Set("openVcpu", Napi::Function::New(env, Vcpu::Open, "openVcpu"));
  exports.Set("stopAllVcpus", Napi::Function::New(env, Vcpu::StopAll, "stopAllVcpus"));
  exports.Set("errnoName", Napi::Function::New(env, ErrnoNameJs, "errnoName"));
  return exports;
}

}  // namespace tsvmm

static Napi::Object InitTsvmm(Napi::Env env, Napi::Object exports) { return tsvmm::Init(env, exports); }

NODE_API_MODULE(tsvmm, InitTsvmm)
