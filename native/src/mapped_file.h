// A file descriptor plus at most one shared mapping of the whole file, handed to JavaScript as an
// external ArrayBuffer. GuestMemfd and Memfd (JS-visible classes) are both a MappedFile.
#pragma once

#include <napi.h>

#include <cstdint>
#include <memory>
#include <string>
#include <vector>

#include "errors.h"

namespace tsvmm {

// An external ArrayBuffer over memory this addon owns (a file mapping, a kvm_run page).
// The memory must outlive every JS view of it, so whoever unmaps the memory calls Detach() first:
// after that every ArrayBuffer handed out has byteLength 0 and JS can no longer reach the memory.
class ExternalBuffer {
 public:
  ExternalBuffer() = default;
  ExternalBuffer(const ExternalBuffer&) = delete;
  ExternalBuffer& operator=(const ExternalBuffer&) = delete;

  // The ArrayBuffer over [data, data + length): created on first use, the same object afterwards.
  Napi::ArrayBuffer Get(Napi::Env env, void* data, size_t length);

  // Detaches the ArrayBuffer (if one was handed out) and forgets it. Never throws, so it can run
  // in destructors and finalizers.
  void Detach(Napi::Env env);

 private:
  // Strong: the ArrayBuffer stays alive (and detachable) as long as the memory is mapped.
  Napi::Reference<Napi::ArrayBuffer> ref_;
};

// fallocate(KEEP_SIZE), or with `punch` fallocate(PUNCH_HOLE|KEEP_SIZE), retried on EINTR;
// throws a syscall error naming `kind` ("guest_memfd", "memfd"). Any thread with a JS env.
// FallocateErrno: the same from any thread, returning 0 or the errno.
int FallocateErrno(int fd, bool punch, uint64_t offset, uint64_t length);
void FallocateFd(Napi::Env env, int fd, const std::string& kind, bool punch, uint64_t offset,
                 uint64_t length);

// The non-JS part of a mapped file: fd, size, mapping. JS thread only.
class MappedFileCore {
 public:
  // kind names the file in error messages ("guest_memfd", "memfd"). Takes ownership of fd.
  MappedFileCore(int fd, uint64_t size, std::string kind);
  ~MappedFileCore();  // munmap + close; the owner detaches first (see MappedFile::Finalize)
  MappedFileCore(const MappedFileCore&) = delete;
  MappedFileCore& operator=(const MappedFileCore&) = delete;

  int fd() const { return fd_; }
  uint64_t size() const { return size_; }
  uint64_t address() const { return reinterpret_cast<uintptr_t>(addr_); }

  Napi::ArrayBuffer Map(Napi::Env env);
  void Unmap(Napi::Env env);
  void Fallocate(Napi::Env env, const std::string& mode, uint64_t offset, uint64_t length);
  uint64_t AllocatedBytes(Napi::Env env);
  void Close(Napi::Env env);
  // Detach only; for finalizers (the destructor then unmaps).
  void DetachForFinalize(Napi::Env env) { buffer_.Detach(env); }

 private:
  void RequireOpen(Napi::Env env, const char* what) const;

  int fd_;
  uint64_t size_;
  std::string kind_;
  void* addr_ = nullptr;
  ExternalBuffer buffer_;
};

// JS glue shared by GuestMemfd and Memfd (CRTP: T is the JS class).
template <typename T>
class MappedFile : public Napi::ObjectWrap<T> {
 public:
  using Wrap = Napi::ObjectWrap<T>;
  using Descriptor = typename Wrap::PropertyDescriptor;

  explicit MappedFile(const Napi::CallbackInfo& info) : Wrap(info) {}

  // The NativeMappedFile surface of vmm/native.ts.
  static std::vector<Descriptor> MappedFileProperties() {
    using Getter = Napi::Value (T::*)(const Napi::CallbackInfo&);
    using Method = Napi::Value (T::*)(const Napi::CallbackInfo&);
    return {
        Wrap::InstanceAccessor("fd", static_cast<Getter>(&MappedFile::GetFd), nullptr),
        Wrap::InstanceAccessor("size", static_cast<Getter>(&MappedFile::GetSize), nullptr),
        Wrap::InstanceAccessor("address", static_cast<Getter>(&MappedFile::GetAddress), nullptr),
        Wrap::InstanceMethod("map", static_cast<Method>(&MappedFile::MapJs)),
        Wrap::InstanceMethod("unmap", static_cast<Method>(&MappedFile::UnmapJs)),
        Wrap::InstanceMethod("fallocate", static_cast<Method>(&MappedFile::FallocateJs)),
        Wrap::InstanceMethod("allocatedBytes", static_cast<Method>(&MappedFile::AllocatedBytesJs)),
        Wrap::InstanceMethod("close", static_cast<Method>(&MappedFile::CloseJs)),
    };
  }

  // Call from T's GC finalizer (`void Finalize(Napi::Env) override`; node-addon-api only detects
  // a Finalize declared in T itself): detaches the ArrayBuffer so a view that outlives this object
  // cannot reach the memory the destructor unmaps.
  void FinalizeMapping(Napi::Env env) {
    if (core_) core_->DetachForFinalize(env);
  }

 protected:
  void Init(Napi::Env env, int fd, uint64_t size, const char* kind) {
    (void)env;
    core_.reset(new MappedFileCore(fd, size, kind));
  }
  MappedFileCore& core() { return *core_; }

 private:
  Napi::Value GetFd(const Napi::CallbackInfo& info) {
    return Napi::Number::New(info.Env(), core_ ? core_->fd() : -1);
  }
  Napi::Value GetSize(const Napi::CallbackInfo& info) {
    return Napi::BigInt::New(info.Env(), core_ ? core_->size() : 0);
  }
  Napi::Value GetAddress(const Napi::CallbackInfo& info) {
    return Napi::BigInt::New(info.Env(), core_ ? core_->address() : 0);
  }
  Napi::Value MapJs(const Napi::CallbackInfo& info) { return core_->Map(info.Env()); }
  Napi::Value UnmapJs(const Napi::CallbackInfo& info) {
    core_->Unmap(info.Env());
    return info.Env().Undefined();
  }
  Napi::Value FallocateJs(const Napi::CallbackInfo& info) {
    Napi::Env env = info.Env();
    if (!info[0].IsString()) ThrowTypeError(env, "mode must be \"allocate\" or \"punch\"");
    core_->Fallocate(env, info[0].As<Napi::String>().Utf8Value(),
                     ArgBigUint64(info, 1, "offset"), ArgBigUint64(info, 2, "length"));
    return env.Undefined();
  }
  Napi::Value AllocatedBytesJs(const Napi::CallbackInfo& info) {
    return Napi::BigInt::New(info.Env(), core_->AllocatedBytes(info.Env()));
  }
  Napi::Value CloseJs(const Napi::CallbackInfo& info) {
    core_->Close(info.Env());
    return info.Env().Undefined();
  }

  std::unique_ptr<MappedFileCore> core_;
};

}  // namespace tsvmm
