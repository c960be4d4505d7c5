#include "mapped_file.h"

#include <fcntl.h>
#include <linux/falloc.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <vector>
#include <unistd.h>

#include <cerrno>

namespace tsvmm {

Napi::ArrayBuffer ExternalBuffer::Get(Napi::Env env, void* data, size_t length) {
  if (!ref_.IsEmpty()) return ref_.Value();
  // SAFETY: `data` is a mapping owned by our caller, which calls Detach() before unmapping it
  // (explicitly, on close, and in its GC finalizer). Until then the memory stays mapped, so the
  // external ArrayBuffer never outlives it; no finalizer is attached because the ArrayBuffer
  // does not own the memory. The strong reference keeps the ArrayBuffer reachable for Detach().
  Napi::ArrayBuffer ab = Napi::ArrayBuffer::New(env, data, length);
  ref_ = Napi::Persistent(ab);
  return ab;
}

void ExternalBuffer::Detach(Napi::Env env) {
  if (ref_.IsEmpty()) return;
  // Plain napi calls (no C++ exceptions): this runs in destructors and finalizers too.
  napi_value value = nullptr;
  if (napi_get_reference_value(env, ref_, &value) == napi_ok && value != nullptr) {
    bool detached = false;
    if (napi_is_detached_arraybuffer(env, value, &detached) == napi_ok && !detached) {
      napi_detach_arraybuffer(env, value);
    }
  }
  ref_.Reset();
}

MappedFileCore::MappedFileCore(int fd, uint64_t size, std::string kind)
    : fd_(fd), size_(size), kind_(std::move(kind)) {}

MappedFileCore::~MappedFileCore() {
  // The JS owner detached the ArrayBuffer in its finalizer (MappedFile::FinalizeMapping) or in
  // close()/unmap(); nothing in JS can reach the mapping any more.
  if (addr_ != nullptr) munmap(addr_, size_);
  // close() errors are ignored: on Linux the descriptor is released even when close fails.
  if (fd_ >= 0) ::close(fd_);
}

void MappedFileCore::RequireOpen(Napi::Env env, const char* what) const {
  if (fd_ < 0) ThrowStateError(env, "ERR_TSVMM_CLOSED", kind_ + "." + what + "(): the file is closed");
}

Napi::ArrayBuffer MappedFileCore::Map(Napi::Env env) {
  RequireOpen(env, "map");
  if (addr_ == nullptr) {
    void* p = mmap(nullptr, size_, PROT_READ | PROT_WRITE, MAP_SHARED, fd_, 0);
    if (p == MAP_FAILED) {
      ThrowSyscallError(env, "mmap", "mmap " + kind_, errno,
                        {ErrorArg::Num("fd", fd_, "fd"), ErrorArg::Big("length", size_, "length"),
                         ErrorArg::Str("prot", "PROT_READ|PROT_WRITE"),
                         ErrorArg::Str("flags", "MAP_SHARED")});
    }
    addr_ = p;
  }
  // SAFETY: addr_ maps exactly size_ bytes until Unmap()/Close()/the destructor, each of which
  // detaches the buffer first (see ExternalBuffer).
  return buffer_.Get(env, addr_, size_);
}

void MappedFileCore::Unmap(Napi::Env env) {
  // Detach before munmap: after this line no JS view can reach the pages.
  buffer_.Detach(env);
  if (addr_ == nullptr) return;
  void* p = addr_;
  addr_ = nullptr;
  if (munmap(p, size_) != 0) {
    ThrowSyscallError(env, "munmap", "munmap " + kind_, errno,
                      {ErrorArg::Big("address", reinterpret_cast<uintptr_t>(p), "address"),
                       ErrorArg::Big("length", size_, "length")});
  }
}

void MappedFileCore::Fallocate(Napi::Env env, const std::string& mode, uint64_t offset,
                               uint64_t length) {
  if (mode != "allocate" && mode != "punch") {
    ThrowTypeError(env, "fallocate mode must be \"allocate\" or \"punch\", not \"" + mode + "\"");
  }
  RequireOpen(env, "fallocate");
  FallocateFd(env, fd_, kind_, mode == "punch", offset, length);
}

int FallocateErrno(int fd, bool punch, uint64_t offset, uint64_t length) {
  const int flags = punch ? FALLOC_FL_PUNCH_HOLE | FALLOC_FL_KEEP_SIZE : FALLOC_FL_KEEP_SIZE;
  int rc;
  // guest_memfd returns EINTR when a signal is pending while it allocates; QEMU once treated that
  // as fatal. Retry instead.
  do {
    rc = ::fallocate(fd, flags, static_cast<off_t>(offset), static_cast<off_t>(length));
  } while (rc != 0 && errno == EINTR);
  return rc == 0 ? 0 : errno;
}

void FallocateFd(Napi::Env env, int fd, const std::string& kind, bool punch, uint64_t offset,
                 uint64_t length) {
  if (int err = FallocateErrno(fd, punch, offset, length)) {
    ThrowSyscallError(env, "fallocate", "fallocate " + kind, err,
                      {ErrorArg::Num("fd", fd, "fd"), ErrorArg::Str("mode", punch ? "punch" : "allocate"),
                       ErrorArg::Str("flags", punch ? "PUNCH_HOLE|KEEP_SIZE" : "KEEP_SIZE", "mode"),
                       ErrorArg::Big("offset", offset, "offset"),
                       ErrorArg::Big("length", length, "length")});
  }
}

uint64_t MappedFileCore::AllocatedBytes(Napi::Env env) {
  RequireOpen(env, "allocatedBytes");
  if (addr_ != nullptr) {
    // guest_memfd keeps no st_blocks, but mincore() of a file mapping asks the page cache for
    // every page, mapped into this process or not, so it counts what the guest populated too.
    const uint64_t pages = size_ / 4096;
    std::vector<unsigned char> vec(pages);
    // SAFETY: addr_ is our live mapping of size_ bytes (JS thread only, unmapped only by Unmap).
    if (mincore(addr_, size_, vec.data()) != 0) {
      ThrowSyscallError(env, "mincore", "mincore " + kind_, errno,
                        {ErrorArg::Num("fd", fd_, "fd"), ErrorArg::Big("length", size_, "length")});
    }
    uint64_t resident = 0;
    for (unsigned char v : vec) resident += v & 1;
    return resident * 4096;
  }
  struct stat st;
  if (fstat(fd_, &st) != 0) {
    ThrowSyscallError(env, "fstat", "fstat " + kind_, errno, {ErrorArg::Num("fd", fd_, "fd")});
  }
  return static_cast<uint64_t>(st.st_blocks) * 512;
}

void MappedFileCore::Close(Napi::Env env) {
  Unmap(env);
  if (fd_ >= 0) {
    ::close(fd_);
    fd_ = -1;
  }
}

}  // namespace tsvmm
