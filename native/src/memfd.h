// Memfd: memfd_create(name, MFD_CLOEXEC) + ftruncate(size); `new Memfd(name, size)` from JS.
// Shared (non-guest_memfd) backing: the attributes backend's shared half, or plain RAM on kernels
// without guest_memfd mmap.
#pragma once

#include <napi.h>

#include "mapped_file.h"

namespace tsvmm {

class Memfd : public MappedFile<Memfd> {
 public:
  static Napi::Function DefineClass(Napi::Env env);
  explicit Memfd(const Napi::CallbackInfo& info);
  void Finalize(Napi::Env env) override { FinalizeMapping(env); }
};

}  // namespace tsvmm
