#include "memfd.h"

#include <sys/mman.h>
#include <unistd.h>

#include <cerrno>

namespace tsvmm {

Napi::Function Memfd::DefineClass(Napi::Env env) {
  return ObjectWrap<Memfd>::DefineClass(env, "Memfd", MappedFileProperties());
}

Memfd::Memfd(const Napi::CallbackInfo& info) : MappedFile<Memfd>(info) {
  Napi::Env env = info.Env();
  if (!info.IsConstructCall()) ThrowTypeError(env, "Memfd must be called with new");
  if (!info[0].IsString()) ThrowTypeError(env, "Memfd: name must be a string");
  std::string name = info[0].As<Napi::String>().Utf8Value();
  uint64_t size = ArgBigUint64(info, 1, "size");

  int fd = memfd_create(name.c_str(), MFD_CLOEXEC);
  if (fd < 0) {
    ThrowSyscallError(env, "memfd_create", "memfd_create", errno,
                      {ErrorArg::Str("name", name, "name"), ErrorArg::Str("flags", "MFD_CLOEXEC")});
  }
  if (ftruncate(fd, static_cast<off_t>(size)) != 0) {
    int err = errno;
    ::close(fd);
    ThrowSyscallError(env, "ftruncate", "ftruncate memfd", err,
                      {ErrorArg::Num("fd", fd, "fd"), ErrorArg::Big("length", size, "length")});
  }
  Init(env, fd, size, "memfd");
}

}  // namespace tsvmm
