#include "guest_memfd.h"

#include "addon.h"

namespace tsvmm {

Napi::Function GuestMemfd::DefineClass(Napi::Env env) {
  std::vector<Descriptor> props = MappedFileProperties();
  props.push_back(InstanceAccessor("flags", &GuestMemfd::GetFlags, nullptr));
  return ObjectWrap<GuestMemfd>::DefineClass(env, "GuestMemfd", props);
}

GuestMemfd::GuestMemfd(const Napi::CallbackInfo& info) : MappedFile<GuestMemfd>(info) {
  InitArgs* args = InternalInit<InitArgs>(info, "GuestMemfd", "Vm.createGuestMemfd()");
  Init(info.Env(), args->fd, args->size, "guest_memfd");
  args->fd = -1;
  flags_ = args->flags;
}

Napi::Value GuestMemfd::GetFlags(const Napi::CallbackInfo& info) {
  return Napi::BigInt::New(info.Env(), flags_);
}

}  // namespace tsvmm
