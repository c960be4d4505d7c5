// GuestMemfd: a KVM guest_memfd (KVM_CREATE_GUEST_MEMFD on a VM fd), made by Vm.createGuestMemfd.
#pragma once

#include <napi.h>

#include "mapped_file.h"

namespace tsvmm {

class GuestMemfd : public MappedFile<GuestMemfd> {
 public:
  struct InitArgs {
    int fd;  // ownership moves to the object (set to -1 once taken)
    uint64_t size;
    uint64_t flags;
  };

  static Napi::Function DefineClass(Napi::Env env);
  explicit GuestMemfd(const Napi::CallbackInfo& info);
  void Finalize(Napi::Env env) override { FinalizeMapping(env); }

 private:
  Napi::Value GetFlags(const Napi::CallbackInfo& info);

  uint64_t flags_ = 0;
};

}  // namespace tsvmm
