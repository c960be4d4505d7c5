#include "vm.h"

#include <fcntl.h>
#include <sys/ioctl.h>
#include <sys/mman.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>

#include "addon.h"
#include "errors.h"
#include "guest_memfd.h"
#include "kvm.h"
#include "kvm_uapi.h"
#include "vcpu.h"

namespace tsvmm {

// ============================== VmShared ========================================================

VmShared::VmShared(int vm_fd) : vm_fd_(fcntl(vm_fd, F_DUPFD_CLOEXEC, 0)) {}

VmShared::~VmShared() {
  if (vm_fd_ >= 0) ::close(vm_fd_);
  for (int fd : {private_fd_.load(), shared_fd_.load()}) {
    if (fd >= 0) ::close(fd);
  }
}

int VmShared::ShareMemoryFiles(int private_fd, int shared_fd) {
  int p = fcntl(private_fd, F_DUPFD_CLOEXEC, 0);
  if (p < 0) return errno;
  int s = fcntl(shared_fd, F_DUPFD_CLOEXEC, 0);
  if (s < 0) {
    int err = errno;
    ::close(p);
    return err;
  }
  // Once only (a second call keeps the first files): a vCPU thread may be using them.
  int none = -1;
  if (!private_fd_.compare_exchange_strong(none, p, std::memory_order_acq_rel)) {
    ::close(p);
    ::close(s);
    return EBUSY;
  }
  shared_fd_.store(s, std::memory_order_release);
  return 0;
}

int VmShared::IrqLine(uint32_t irq, uint32_t level) const {
  kvm_irq_level line;
  std::memset(&line, 0, sizeof line);
  line.irq = irq;
  line.level = level;
  return ioctl(vm_fd_, KVM_IRQ_LINE, &line) < 0 ? errno : 0;
}

std::pair<std::shared_ptr<const FastPortTable>, uint64_t> VmShared::LoadFastPorts() const {
  std::lock_guard<std::mutex> lock(ports_mu_);
  return {fast_ports_, fast_ports_version_.load(std::memory_order_relaxed)};
}

void VmShared::StoreFastPorts(std::shared_ptr<const FastPortTable> table) {
  std::lock_guard<std::mutex> lock(ports_mu_);
  fast_ports_ = std::move(table);
  // Release: a vCPU thread that sees the new version and then takes ports_mu_ gets this table.
  fast_ports_version_.fetch_add(1, std::memory_order_release);
}

void VmShared::AppendConsole(const uint8_t* data, size_t length) {
  std::lock_guard<std::mutex> lock(console_mu_);
  console_buf_.append(reinterpret_cast<const char*>(data), length);
  if (!pump_active_ && console_live_) {
    // SAFETY: console_tsfn_ is valid while console_live_ (both guarded by console_mu_; the JS
    // thread clears console_live_ under the same mutex before or when the TSFN goes away).
    // NonBlockingCall with an unbounded queue never blocks, so holding the mutex is fine.
    if (console_tsfn_.NonBlockingCall() == napi_ok) {
      pump_active_ = true;
    } else {
      console_live_ = false;  // napi_closing: the environment is going away
    }
  }
}

std::string VmShared::TakeConsole() {
  std::lock_guard<std::mutex> lock(console_mu_);
  std::string out;
  out.swap(console_buf_);
  return out;
}

uint64_t VmShared::NextConsoleGeneration() {
  std::lock_guard<std::mutex> lock(console_mu_);
  return ++console_generation_;
}

void VmShared::SetConsole(Napi::Env env, ConsoleTsfn tsfn, uint64_t generation, Napi::Function callback) {
  console_callback_ = Napi::Persistent(callback);
  if (pump_tick_.IsEmpty()) {
    // The poll timer's function. Weak: a pending timer must not keep the VM's state alive.
    std::weak_ptr<VmShared> weak = weak_from_this();
    pump_tick_ = Napi::Persistent(Napi::Function::New(
        env,
        [weak](const Napi::CallbackInfo& info) {
          if (auto self = weak.lock()) self->PumpConsole(info.Env());
        },
        "tsvmmConsolePoll"));
  }
  std::lock_guard<std::mutex> lock(console_mu_);
  if (console_live_) console_tsfn_.Release();
  console_tsfn_ = tsfn;
  console_live_ = true;
  console_generation_ = generation;
  // Bytes that arrived before a callback existed are delivered now. (If a pump is already
  // running, its next poll uses the new callback.)
  if (!console_buf_.empty() && !pump_active_) {
    if (console_tsfn_.NonBlockingCall() == napi_ok) {
      pump_active_ = true;
    } else {
      console_live_ = false;
    }
  }
}

void VmShared::ReleaseConsole() {
  {
    std::lock_guard<std::mutex> lock(console_mu_);
    if (console_live_) {
      console_live_ = false;
      console_tsfn_.Release();
    }
  }
  console_callback_.Reset();
}

void VmShared::ConsoleFinalized(uint64_t generation) {
  std::lock_guard<std::mutex> lock(console_mu_);
  if (generation == console_generation_) console_live_ = false;
}

void VmShared::PumpConsole(Napi::Env env) {
  std::string bytes;
  {
    std::lock_guard<std::mutex> lock(console_mu_);
    // Idle when there is nothing to deliver (or nobody to deliver to): the next byte a vCPU
    // appends schedules a new call.
    if (!console_live_ || console_buf_.empty() || console_callback_.IsEmpty()) {
      pump_active_ = false;
      return;
    }
    bytes.swap(console_buf_);
  }
  // Poll again before calling out, so a callback that throws cannot stall the console.
  Napi::Value set_timeout = env.Global().Get("setTimeout");
  if (set_timeout.IsFunction()) {
    Napi::Value timer =
        set_timeout.As<Napi::Function>().Call({pump_tick_.Value(), Napi::Number::New(env, kConsolePollMs)});
    if (timer.IsObject()) {
      Napi::Value unref = timer.As<Napi::Object>().Get("unref");
      // The poll alone must not keep the process alive.
      if (unref.IsFunction()) unref.As<Napi::Function>().Call(timer, {});
    }
  } else {
    std::lock_guard<std::mutex> lock(console_mu_);
    pump_active_ = false;  // no timers (cannot happen in Node): fall back to one call per burst
  }
  console_callback_.Call({Napi::Buffer<uint8_t>::Copy(env, reinterpret_cast<const uint8_t*>(bytes.data()),
                                                      bytes.size())});
}

void CallJsConsole(Napi::Env env, Napi::Function, ConsoleContext* context, void*) {
  if (static_cast<napi_env>(env) == nullptr || context == nullptr) return;  // teardown
  context->vm->PumpConsole(env);
}

// ============================== Vm ==============================================================

Napi::Function Vm::DefineClass(Napi::Env env) {
  return ObjectWrap<Vm>::DefineClass(
      env, "Vm",
      {
          InstanceAccessor("fd", &Vm::GetFd, nullptr),
          InstanceMethod("checkExtension", &Vm::CheckExtension),
          InstanceMethod("enableCap", &Vm::EnableCap),
          InstanceMethod("setTssAddr", &Vm::SetTssAddr),
          InstanceMethod("setIdentityMapAddr", &Vm::SetIdentityMapAddr),
          InstanceMethod("createIrqchip", &Vm::CreateIrqchip),
          InstanceMethod("createPit2", &Vm::CreatePit2),
          InstanceMethod("irqLine", &Vm::IrqLine),
          InstanceMethod("createGuestMemfd", &Vm::CreateGuestMemfd),
          InstanceMethod("setUserMemoryRegion2", &Vm::SetUserMemoryRegion2),
          InstanceMethod("setUserMemoryRegions2", &Vm::SetUserMemoryRegions2),
          InstanceMethod("setUserMemoryRegion", &Vm::SetUserMemoryRegion),
          InstanceMethod("setMemoryAttributes", &Vm::SetMemoryAttributes),
          InstanceMethod("shareMemoryFiles", &Vm::ShareMemoryFiles),
          InstanceMethod("convertMemory", &Vm::ConvertMemory),
          InstanceMethod("createVcpu", &Vm::CreateVcpu),
          InstanceMethod("setFastPorts", &Vm::SetFastPorts),
          InstanceMethod("onConsole", &Vm::OnConsole),
          InstanceMethod("drainConsole", &Vm::DrainConsole),
          InstanceMethod("close", &Vm::Close),
      });
}

Vm::Vm(const Napi::CallbackInfo& info) : ObjectWrap<Vm>(info) {
  InitArgs* args = InternalInit<InitArgs>(info, "Vm", "Kvm.createVm()");
  fd_ = args->fd;
  args->fd = -1;
  vcpu_mmap_size_ = args->vcpu_mmap_size;
  shared_ = std::make_shared<VmShared>(fd_);
}

Vm::~Vm() {
  if (shared_) shared_->ReleaseConsole();
  if (fd_ >= 0) ::close(fd_);
}

int Vm::RequireOpen(Napi::Env env, const char* what) const {
  if (fd_ < 0) ThrowStateError(env, "ERR_TSVMM_CLOSED", std::string("Vm.") + what + "(): the VM is closed");
  return fd_;
}

Napi::Value Vm::GetFd(const Napi::CallbackInfo& info) { return Napi::Number::New(info.Env(), fd_); }

Napi::Value Vm::CheckExtension(const Napi::CallbackInfo& info) {
  return CheckExtensionOn(info, RequireOpen(info.Env(), "checkExtension"), "vm");
}

Napi::Value Vm::EnableCap(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  int fd = RequireOpen(env, "enableCap");
  kvm_enable_cap ec;
  std::memset(&ec, 0, sizeof ec);
  ec.cap = ArgUint32(info, 0, "cap");
  if (info.Length() > 1 && !info[1].IsUndefined()) {
    if (!info[1].IsArray()) ThrowTypeError(env, "enableCap: args must be an array of bigints");
    Napi::Array a = info[1].As<Napi::Array>();
    if (a.Length() > 4) ThrowRangeError(env, "enableCap: at most 4 args");
    for (uint32_t i = 0; i < a.Length(); i++) ec.args[i] = BigUint64Of(env, a.Get(i), "enableCap arg");
  }
  if (ioctl(fd, KVM_ENABLE_CAP, &ec) < 0) {
    ThrowSyscallError(env, "ioctl", "KVM_ENABLE_CAP", errno,
                      {ErrorArg::Num("cap", ec.cap, "cap"), ErrorArg::Num("flags", ec.flags),
                       ErrorArg::Big("arg0", ec.args[0], "arg0"), ErrorArg::Big("arg1", ec.args[1]),
                       ErrorArg::Big("arg2", ec.args[2]), ErrorArg::Big("arg3", ec.args[3])});
  }
  return env.Undefined();
}

Napi::Value Vm::SetTssAddr(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  int fd = RequireOpen(env, "setTssAddr");
  uint64_t addr = ArgBigUint64(info, 0, "addr");
  if (ioctl(fd, KVM_SET_TSS_ADDR, static_cast<unsigned long>(addr)) < 0) {
    ThrowSyscallError(env, "ioctl", "KVM_SET_TSS_ADDR", errno, {ErrorArg::Big("addr", addr, "addr")});
  }
  return env.Undefined();
}

Napi::Value Vm::SetIdentityMapAddr(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  int fd = RequireOpen(env, "setIdentityMapAddr");
  uint64_t addr = ArgBigUint64(info, 0, "addr");
  if (ioctl(fd, KVM_SET_IDENTITY_MAP_ADDR, &addr) < 0) {
    ThrowSyscallError(env, "ioctl", "KVM_SET_IDENTITY_MAP_ADDR", errno,
                      {ErrorArg::Big("addr", addr, "addr")});
  }
  return env.Undefined();
}

Napi::Value Vm::CreateIrqchip(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  if (ioctl(RequireOpen(env, "createIrqchip"), KVM_CREATE_IRQCHIP, 0) < 0) {
    ThrowSyscallError(env, "ioctl", "KVM_CREATE_IRQCHIP", errno, {});
  }
  return env.Undefined();
}

Napi::Value Vm::CreatePit2(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  int fd = RequireOpen(env, "createPit2");
  kvm_pit_config config;
  std::memset(&config, 0, sizeof config);
  config.flags = ArgUint32(info, 0, "flags");
  if (ioctl(fd, KVM_CREATE_PIT2, &config) < 0) {
    ThrowSyscallError(env, "ioctl", "KVM_CREATE_PIT2", errno, {ErrorArg::Num("flags", config.flags, "flags", true)});
  }
  return env.Undefined();
}

void IrqLineOf(const Napi::CallbackInfo& info, const VmShared& vm) {
  uint32_t irq = ArgUint32(info, 0, "irq");
  uint32_t level = ArgUint32(info, 1, "level");
  if (int err = vm.IrqLine(irq, level)) {
    ThrowSyscallError(info.Env(), "ioctl", "KVM_IRQ_LINE", err,
                      {ErrorArg::Num("irq", irq, "irq"), ErrorArg::Num("level", level, "level")});
  }
}

Napi::Value Vm::IrqLine(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  RequireOpen(env, "irqLine");
  IrqLineOf(info, *shared_);
  return env.Undefined();
}

Napi::Value Vm::CreateGuestMemfd(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  int vm_fd = RequireOpen(env, "createGuestMemfd");
  kvm_create_guest_memfd req;
  std::memset(&req, 0, sizeof req);  // reserved[] must be zero for forward compatibility
  req.size = ArgBigUint64(info, 0, "size");
  req.flags = ArgBigUint64(info, 1, "flags");
  int fd = ioctl(vm_fd, KVM_CREATE_GUEST_MEMFD, &req);
  if (fd < 0) {
    ThrowSyscallError(env, "ioctl", "KVM_CREATE_GUEST_MEMFD", errno,
                      {ErrorArg::Big("size", req.size, "size"), ErrorArg::Big("flags", req.flags, "flags")});
  }
  // The kernel creates it without close-on-exec (get_unused_fd_flags(0)).
  if (fcntl(fd, F_SETFD, FD_CLOEXEC) < 0) {
    int err = errno;
    ::close(fd);
    ThrowSyscallError(env, "fcntl", "F_SETFD guest_memfd", err,
                      {ErrorArg::Num("fd", fd, "fd"), ErrorArg::Str("flags", "FD_CLOEXEC")});
  }
  GuestMemfd::InitArgs args{fd, req.size, req.flags};
  try {
    return GetAddonData(env).guest_memfd.New({Napi::External<GuestMemfd::InitArgs>::New(env, &args)});
  } catch (...) {
    if (args.fd >= 0) ::close(args.fd);
    throw;
  }
}

namespace {

struct Region {
  uint32_t slot;
  uint32_t flags;
  uint64_t guest_phys_addr;
  uint64_t memory_size;
  uint64_t userspace_addr;
  int64_t guest_memfd;
  uint64_t guest_memfd_offset;
};

Region ParseRegion(Napi::Env env, Napi::Value v, bool v2) {
  if (!v.IsObject()) ThrowTypeError(env, "region must be an object");
  Napi::Object o = v.As<Napi::Object>();
  Region r{};
  int64_t slot = IntOf(env, o.Get("slot"), "region.slot");
  int64_t flags = IntOf(env, o.Get("flags"), "region.flags");
  if (slot < 0 || slot > 0xffffffffLL) ThrowRangeError(env, "region.slot must be a u32");
  if (flags < 0 || flags > 0xffffffffLL) ThrowRangeError(env, "region.flags must be a u32");
  r.slot = static_cast<uint32_t>(slot);
  r.flags = static_cast<uint32_t>(flags);
  r.guest_phys_addr = BigUint64Of(env, o.Get("guestPhysAddr"), "region.guestPhysAddr");
  r.memory_size = BigUint64Of(env, o.Get("memorySize"), "region.memorySize");
  r.userspace_addr = BigUint64Of(env, o.Get("userspaceAddr"), "region.userspaceAddr");
  r.guest_memfd = -1;
  if (v2) {
    Napi::Value gm = o.Get("guestMemfd");
    if (!gm.IsUndefined()) r.guest_memfd = IntOf(env, gm, "region.guestMemfd");
    Napi::Value off = o.Get("guestMemfdOffset");
    if (!off.IsUndefined()) r.guest_memfd_offset = BigUint64Of(env, off, "region.guestMemfdOffset");
  }
  return r;
}

std::vector<ErrorArg> RegionArgs(const Region& r, bool v2) {
  std::vector<ErrorArg> a{
      ErrorArg::Num("slot", r.slot, "slot"),
      ErrorArg::Num("flags", r.flags, "flags", true),
      ErrorArg::Big("guestPhysAddr", r.guest_phys_addr, "gpa"),
      ErrorArg::Big("memorySize", r.memory_size, "size"),
      ErrorArg::Big("userspaceAddr", r.userspace_addr, "uaddr"),
  };
  if (v2) {
    a.push_back(ErrorArg::Num("guestMemfd", r.guest_memfd, "guest_memfd"));
    a.push_back(ErrorArg::Big("guestMemfdOffset", r.guest_memfd_offset, "offset"));
  }
  return a;
}

// KVM_SET_USER_MEMORY_REGION2; throws the failure with the region's fields
void SetRegion2(Napi::Env env, int vm_fd, const Region& r) {
  kvm_userspace_memory_region2 req;
  std::memset(&req, 0, sizeof req);
  req.slot = r.slot;
  req.flags = r.flags;
  req.guest_phys_addr = r.guest_phys_addr;
  req.memory_size = r.memory_size;
  req.userspace_addr = r.userspace_addr;
  req.guest_memfd_offset = r.guest_memfd_offset;
  // -1 ("no guest_memfd") becomes 0xffffffff: ignored without KVM_MEM_GUEST_MEMFD, EBADF with it.
  req.guest_memfd = static_cast<uint32_t>(r.guest_memfd);
  if (ioctl(vm_fd, KVM_SET_USER_MEMORY_REGION2, &req) < 0)
    ThrowSyscallError(env, "ioctl", "KVM_SET_USER_MEMORY_REGION2", errno, RegionArgs(r, true));
}

}  // namespace

Napi::Value Vm::SetUserMemoryRegion2(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  int fd = RequireOpen(env, "setUserMemoryRegion2");
  SetRegion2(env, fd, ParseRegion(env, info[0], true));
  return env.Undefined();
}

Napi::Value Vm::SetUserMemoryRegions2(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  int vm_fd = RequireOpen(env, "setUserMemoryRegions2");
  if (info.Length() < 1 || !info[0].IsTypedArray() || info[0].As<Napi::TypedArray>().TypedArrayType() != napi_float64_array)
    ThrowTypeError(env, "setUserMemoryRegions2: the records must be a Float64Array");
  Napi::Float64Array records = info[0].As<Napi::Float64Array>();
  const size_t n = records.ElementLength();
  if (n % kRegionRecord) ThrowRangeError(env, "setUserMemoryRegions2: the records' length must be a multiple of 7");
  // Every value is a whole number below 2^53 (exact in a double); guestMemfd may also be -1 (none)
  // or kReleasedGuestMemfd.
  auto whole = [&](size_t i, double min, const char* what) -> double {
    double v = records[i];
    if (!(v >= min && v <= 9007199254740992.0) || v != static_cast<double>(static_cast<int64_t>(v)))
      ThrowRangeError(env, std::string("setUserMemoryRegions2: record ") + std::to_string(i / kRegionRecord) + ": " + what +
                               " must be a whole number in range");
    return v;
  };
  for (size_t i = 0; i < n; i += kRegionRecord) {
    Region r{};
    double slot = whole(i, 0, "slot");
    if (slot > 0xffffffffu) ThrowRangeError(env, "setUserMemoryRegions2: slot must be a u32");
    r.slot = static_cast<uint32_t>(slot);
    r.guest_phys_addr = static_cast<uint64_t>(whole(i + 1, 0, "guestPhysAddr"));
    r.memory_size = static_cast<uint64_t>(whole(i + 2, 0, "memorySize"));
    r.userspace_addr = static_cast<uint64_t>(whole(i + 3, 0, "userspaceAddr"));
    double gmem = whole(i + 4, kReleasedGuestMemfd, "guestMemfd");
    if (gmem > 0x7fffffff) ThrowRangeError(env, "setUserMemoryRegions2: guestMemfd must be an fd");
    r.guest_memfd = static_cast<int64_t>(gmem);
    r.guest_memfd_offset = static_cast<uint64_t>(whole(i + 5, 0, "guestMemfdOffset"));
    uint64_t create_flags = static_cast<uint64_t>(whole(i + 6, 0, "createFlags"));
    int released = -1;
    if (r.guest_memfd == kReleasedGuestMemfd) {
      // A guest_memfd made for this slot alone and closed once bound: KVM keeps its own reference,
      // and every guest access to the slot is a KVM_EXIT_MEMORY_FAULT. Closed here before anything
      // else runs on this thread, so it needs no close-on-exec.
      kvm_create_guest_memfd c;
      std::memset(&c, 0, sizeof c);
      c.size = r.memory_size;
      c.flags = create_flags;
      released = ioctl(vm_fd, KVM_CREATE_GUEST_MEMFD, &c);
      if (released < 0)
        ThrowSyscallError(env, "ioctl", "KVM_CREATE_GUEST_MEMFD", errno,
                          {ErrorArg::Big("size", c.size, "size"), ErrorArg::Big("flags", c.flags, "flags")});
      r.guest_memfd = released;
    }
    r.flags = r.guest_memfd >= 0 ? KVM_MEM_GUEST_MEMFD : 0;
    try {
      SetRegion2(env, vm_fd, r);
    } catch (...) {
      if (released >= 0) ::close(released);
      throw;
    }
    if (released >= 0) ::close(released);
  }
  return env.Undefined();
}

Napi::Value Vm::SetUserMemoryRegion(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  int fd = RequireOpen(env, "setUserMemoryRegion");
  Region r = ParseRegion(env, info[0], false);
  kvm_userspace_memory_region req;
  std::memset(&req, 0, sizeof req);
  req.slot = r.slot;
  req.flags = r.flags;
  req.guest_phys_addr = r.guest_phys_addr;
  req.memory_size = r.memory_size;
  req.userspace_addr = r.userspace_addr;
  if (ioctl(fd, KVM_SET_USER_MEMORY_REGION, &req) < 0) {
    ThrowSyscallError(env, "ioctl", "KVM_SET_USER_MEMORY_REGION", errno, RegionArgs(r, false));
  }
  return env.Undefined();
}

Napi::Value Vm::SetMemoryAttributes(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  int fd = RequireOpen(env, "setMemoryAttributes");
  SetVmMemoryAttributes(env, fd, ArgBigUint64(info, 0, "gpa"), ArgBigUint64(info, 1, "size"), ArgBigUint64(info, 2, "attributes"));
  return env.Undefined();
}

Napi::Value Vm::ConvertMemory(const Napi::CallbackInfo& info) {
  RequireOpen(info.Env(), "convertMemory");
  ConvertMemoryOf(info, *shared_);
  return info.Env().Undefined();
}

Napi::Value Vm::ShareMemoryFiles(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  RequireOpen(env, "shareMemoryFiles");
  int64_t private_fd = ArgInt(info, 0, "privateFd");
  int64_t shared_fd = ArgInt(info, 1, "sharedFd");
  if (int err = shared_->ShareMemoryFiles(static_cast<int>(private_fd), static_cast<int>(shared_fd))) {
    ThrowSyscallError(env, "fcntl", "F_DUPFD_CLOEXEC (shareMemoryFiles)", err,
                      {ErrorArg::Num("privateFd", private_fd, "privateFd"), ErrorArg::Num("sharedFd", shared_fd, "sharedFd")});
  }
  return env.Undefined();
}

void ConvertMemoryOf(const Napi::CallbackInfo& info, const VmShared& vm) {
  Napi::Env env = info.Env();
  auto whole_pages = [&](size_t i, const char* what) {
    int64_t v = ArgInt(info, i, what);
    if (v < 0 || v % 4096 != 0) ThrowRangeError(env, std::string("convertMemory: ") + what + " must be a multiple of 4096");
    return static_cast<uint64_t>(v);
  };
  const uint64_t gpa = whole_pages(0, "gpa");
  const uint64_t offset = whole_pages(1, "offset");
  const uint64_t size = whole_pages(2, "size");
  const bool to_private = info[3].ToBoolean();
  const bool discard = info[4].ToBoolean();
  SetVmMemoryAttributes(env, vm.vm_fd(), gpa, size, to_private ? KVM_MEMORY_ATTRIBUTE_PRIVATE : 0);
  if (!discard) return;
  // The side the pages left: the memfd when they became private, the guest_memfd when shared.
  int fd = vm.memory_file(!to_private);
  if (fd < 0) ThrowStateError(env, "ERR_TSVMM_CLOSED", "convertMemory: this VM shared no memory files (Vm.shareMemoryFiles)");
  FallocateFd(env, fd, to_private ? "memfd" : "guest_memfd", true, offset, size);
}

int SetMemoryAttributesErrno(int fd, uint64_t gpa, uint64_t size, uint64_t attributes) {
  kvm_memory_attributes req;
  std::memset(&req, 0, sizeof req);
  req.address = gpa;
  req.size = size;
  req.attributes = attributes;
  return ioctl(fd, KVM_SET_MEMORY_ATTRIBUTES, &req) < 0 ? errno : 0;
}

void SetVmMemoryAttributes(Napi::Env env, int fd, uint64_t gpa, uint64_t size, uint64_t attributes) {
  if (int err = SetMemoryAttributesErrno(fd, gpa, size, attributes)) {
    ThrowSyscallError(env, "ioctl", "KVM_SET_MEMORY_ATTRIBUTES", err,
                      {ErrorArg::Big("address", gpa, "gpa"), ErrorArg::Big("size", size, "size"),
                       ErrorArg::Big("attributes", attributes, "attributes"), ErrorArg::Big("flags", 0)});
  }
}

Napi::Value Vm::CreateVcpu(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  int vm_fd = RequireOpen(env, "createVcpu");
  int64_t index = ArgInt(info, 0, "index");
  if (index < 0 || index > 0xffffffffLL) ThrowRangeError(env, "vCPU index must be a u32");
  int fd = ioctl(vm_fd, KVM_CREATE_VCPU, static_cast<unsigned long>(index));
  if (fd < 0) {
    ThrowSyscallError(env, "ioctl", "KVM_CREATE_VCPU", errno, {ErrorArg::Num("index", index, "index")});
  }
  // KVM creates vCPU fds with O_CLOEXEC already (anon_inode_getfd(..., O_RDWR | O_CLOEXEC)).
  void* run = mmap(nullptr, vcpu_mmap_size_, PROT_READ | PROT_WRITE, MAP_SHARED, fd, 0);
  if (run == MAP_FAILED) {
    int err = errno;
    ::close(fd);
    ThrowSyscallError(env, "mmap", "mmap kvm_run", err,
                      {ErrorArg::Num("fd", fd, "fd"), ErrorArg::Big("length", vcpu_mmap_size_, "length")});
  }
  // SAFETY: `run` is a fresh mapping of vcpu_mmap_size_ bytes; the Vcpu takes ownership of it
  // and of fd (its core unmaps and closes them when the last Vcpu object of any thread is gone). If construction fails
  // before it took them (args.fd still >= 0), they are released here.
  Vcpu::InitArgs args{fd, static_cast<uint32_t>(index), run, vcpu_mmap_size_, shared_, nullptr};
  try {
    return GetAddonData(env).vcpu.New({Napi::External<Vcpu::InitArgs>::New(env, &args)});
  } catch (...) {
    if (args.fd >= 0) {
      munmap(run, vcpu_mmap_size_);
      ::close(args.fd);
    }
    throw;
  }
}

std::shared_ptr<const FastPortTable> ParseFastPorts(Napi::Env env, Napi::Value ports) {
  if (!ports.IsObject()) ThrowTypeError(env, "setFastPorts: ports must be an object");
  Napi::Object o = ports.As<Napi::Object>();
  auto table = std::make_shared<FastPortTable>();
  int64_t console = IntOf(env, o.Get("consoleOut"), "consoleOut");
  if (console < -1 || console > 0xffff) ThrowRangeError(env, "consoleOut must be a port (0..65535) or -1");
  table->console_out = static_cast<int>(console);
  Napi::Value reads = o.Get("reads");
  if (!reads.IsUndefined()) {
    if (!reads.IsArray()) ThrowTypeError(env, "setFastPorts: reads must be an array");
    Napi::Array a = reads.As<Napi::Array>();
    for (uint32_t i = 0; i < a.Length(); i++) {
      Napi::Value e = a.Get(i);
      if (!e.IsObject()) ThrowTypeError(env, "setFastPorts: reads[] must be {port, value}");
      int64_t port = IntOf(env, e.As<Napi::Object>().Get("port"), "reads[].port");
      int64_t value = IntOf(env, e.As<Napi::Object>().Get("value"), "reads[].value");
      if (port < 0 || port > 0xffff) ThrowRangeError(env, "reads[].port must be 0..65535");
      if (value < 0 || value > 0xff) ThrowRangeError(env, "reads[].value must be a byte");
      table->reads.emplace_back(static_cast<uint16_t>(port), static_cast<uint8_t>(value));
    }
  }
  return table;
}

Napi::Value Vm::SetFastPorts(const Napi::CallbackInfo& info) {
  shared_->StoreFastPorts(ParseFastPorts(info.Env(), info[0]));
  return info.Env().Undefined();
}

Napi::Value Vm::OnConsole(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  if (!info[0].IsFunction()) ThrowTypeError(env, "onConsole: callback must be a function");
  uint64_t generation = shared_->NextConsoleGeneration();
  auto* context = new ConsoleContext{shared_, generation};
  ConsoleTsfn tsfn;
  try {
    tsfn = ConsoleTsfn::New(
        env, info[0].As<Napi::Function>(), "tsvmm.console", 0 /* unbounded queue */, 1, context,
        [](Napi::Env, void*, ConsoleContext* ctx) {
          ctx->vm->ConsoleFinalized(ctx->generation);
          delete ctx;
        },
        static_cast<void*>(nullptr));
  } catch (...) {
    delete context;
    throw;
  }
  // Console output alone must not keep the process alive; running vCPUs do (their own TSFNs).
  tsfn.Unref(env);
  shared_->SetConsole(env, tsfn, generation, info[0].As<Napi::Function>());
  return env.Undefined();
}

Napi::Value Vm::DrainConsole(const Napi::CallbackInfo& info) {
  std::string bytes = shared_->TakeConsole();
  return Napi::Buffer<uint8_t>::Copy(info.Env(), reinterpret_cast<const uint8_t*>(bytes.data()),
                                     bytes.size());
}

Napi::Value Vm::Close(const Napi::CallbackInfo& info) {
  shared_->ReleaseConsole();
  if (fd_ >= 0) {
    ::close(fd_);
    fd_ = -1;
  }
  return info.Env().Undefined();
}

}  // namespace tsvmm
