#include "vcpu.h"

#include <signal.h>
#include <sys/ioctl.h>
#include <sys/mman.h>
#include <unistd.h>

#include <cerrno>
#include <chrono>
#include <cstring>
#include <map>
#include <vector>

#include "addon.h"
#include "errors.h"

namespace tsvmm {

// ============================== kick signal =====================================================

// SIGRTMIN+4: a real-time signal nothing else in the process uses. Node uses SIGUSR1 (inspector)
// and leaves SIGUSR2 to applications; glibc reserves the signals below SIGRTMIN for NPTL;
// Firecracker/crosvm-style code and some libraries pick SIGRTMIN or SIGRTMIN+1 for their own
// kicks. Its default action would kill the process, so the no-op handler is installed before any
// runner can receive it.
int Vcpu::KickSignal() {
  static const int sig = [] {
    int s = SIGRTMIN + 4;
    struct sigaction sa;
    std::memset(&sa, 0, sizeof sa);
    // The handler only has to exist: its delivery makes KVM_RUN return -1/EINTR. No SA_RESTART,
    // so no syscall is silently restarted (the kernel never restarts KVM_RUN anyway).
    sa.sa_handler = [](int) {};
    sigemptyset(&sa.sa_mask);
    sa.sa_flags = 0;
    sigaction(s, &sa, nullptr);
    return s;
  }();  // C++11 magic static: installed exactly once per process, thread-safe
  return sig;
}

// ============================== VcpuCore ========================================================

namespace {
std::mutex registry_mu;
std::map<uint64_t, std::weak_ptr<VcpuCore>> registry;  // guarded by registry_mu
uint64_t next_handle = 1;                               // guarded by registry_mu
}  // namespace

VcpuCore::VcpuCore(int fd, uint32_t index, void* run, size_t run_size, std::shared_ptr<VmShared> vm)
    : fd_(fd), index_(index), run_(static_cast<kvm_run*>(run)), run_size_(run_size), vm_(std::move(vm)) {}

VcpuCore::~VcpuCore() {
  {
    std::lock_guard<std::mutex> lock(registry_mu);
    registry.erase(handle_);
  }
  // SAFETY: the last owner is gone: no Vcpu object, no `run` view and no runner is left (a runner
  // holds its Vcpu object, and so this core, for the whole of run()).
  munmap(run_, run_size_);
  ::close(fd_);
}

void VcpuCore::Register(const std::shared_ptr<VcpuCore>& core) {
  std::lock_guard<std::mutex> lock(registry_mu);
  core->handle_ = next_handle++;
  registry[core->handle_] = core;
}

std::shared_ptr<VcpuCore> VcpuCore::Find(uint64_t handle) {
  std::lock_guard<std::mutex> lock(registry_mu);
  auto it = registry.find(handle);
  return it == registry.end() ? nullptr : it->second.lock();
}

void VcpuCore::StopAll() {
  std::vector<std::shared_ptr<VcpuCore>> cores;
  {
    std::lock_guard<std::mutex> lock(registry_mu);
    for (auto& entry : registry)
      if (auto core = entry.second.lock()) cores.push_back(std::move(core));
  }
  for (auto& core : cores) core->Stop(0);
}

Napi::Value Vcpu::StopAll(const Napi::CallbackInfo& info) {
  VcpuCore::StopAll();
  return info.Env().Undefined();
}

void VcpuCore::Kick() {
  if (kicked_) return;
  kicked_ = true;
  // immediate_exit covers the window where R has set in_kvm_run_ but not yet entered the ioctl;
  // the signal gets it out of a guest that is running (or spinning) inside KVM_RUN.
  // SAFETY: immediate_exit is the one kvm_run byte written while R may be inside KVM_RUN: that
  // is its purpose (the kernel reads it on entry); the atomic store keeps it from being torn.
  __atomic_store_n(&run_->immediate_exit, 1, __ATOMIC_SEQ_CST);
  // SAFETY: runner_ is valid: it is inside run(), which holds the thread alive.
  pthread_kill(runner_, Vcpu::KickSignal());
}

bool VcpuCore::HandleFastIo() {
  if (vm_->fast_ports_version() != ports_version_) {
    auto loaded = vm_->LoadFastPorts();
    ports_ = std::move(loaded.first);
    ports_version_ = loaded.second;
  }
  const auto& io = run_->io;
  // SAFETY: the kernel puts the data inside the vCPU mapping (data_offset is a page of it); the
  // bounds check keeps a bogus offset from sending us outside the mapping anyway.
  if (io.data_offset > run_size_ || io.count > run_size_ - io.data_offset) return false;
  uint8_t* data = reinterpret_cast<uint8_t*>(run_) + io.data_offset;
  if (io.direction == KVM_EXIT_IO_OUT) {
    if (ports_->console_out >= 0 && io.port == ports_->console_out) {
      vm_->AppendConsole(data, io.count);
      return true;
    }
    return false;
  }
  uint8_t value;
  if (io.direction == KVM_EXIT_IO_IN && ports_->Read(io.port, &value)) {
    std::memset(data, value, io.count);
    return true;
  }
  return false;
}

int VcpuCore::Run(int* failure_errno, QuietConversions* conversions) {
  // Worker threads may start with the kick signal blocked; R must receive it.
  thread_local bool unblocked = false;
  if (!unblocked) {
    sigset_t set;
    sigemptyset(&set);
    sigaddset(&set, Vcpu::KickSignal());
    pthread_sigmask(SIG_UNBLOCK, &set, nullptr);
    unblocked = true;
  }
  for (;;) {
    {
      std::unique_lock<std::mutex> lock(mu_);
      has_runner_ = true;
      runner_ = pthread_self();
      cv_.wait(lock, [this] { return pauses_ == 0 || stopped_; });
      if (stopped_) {
        has_runner_ = false;
        return kRunStopped;
      }
      if (kicked_) {  // a pause that is over, or one answered by the last exit
        kicked_ = false;
        __atomic_store_n(&run_->immediate_exit, 0, __ATOMIC_SEQ_CST);
      }
      in_kvm_run_ = true;
    }
    // SAFETY (from here to the return): run_ is mapped while this core lives, and R's Vcpu object
    // holds it. Only R touches kvm_run (other than immediate_exit) while it is not paused.
    // Exits the fast ports answer re-enter without taking mu_: in_kvm_run_ stays true, and a
    // kick in between finds immediate_exit set on the next entry.
    int rc, err;
    bool wake = false;
    for (;;) {
      run_->kvm_valid_regs = sync_regs.load(std::memory_order_relaxed);
      rc = ioctl(fd_, KVM_RUN, 0);
      err = rc < 0 ? errno : 0;
      runs.fetch_add(1, std::memory_order_relaxed);
      if (rc != 0) break;
      if (run_->exit_reason == KVM_EXIT_IO && run_->io.size == 1 && HandleFastIo()) {
        native_exits.fetch_add(1, std::memory_order_relaxed);
        continue;
      }
      if (!conversions) break;
      auto outcome = conversions->Answer(run_, *vm_);
      if (outcome == QuietConversions::Outcome::kNotOurs) break;
      native_exits.fetch_add(1, std::memory_order_relaxed);
      native_conversions.fetch_add(1, std::memory_order_relaxed);
      if (outcome == QuietConversions::Outcome::kAnsweredWake) {
        wake = true;
        break;
      }
    }
    bool kicked;
    {
      std::lock_guard<std::mutex> lock(mu_);
      in_kvm_run_ = false;
      kicked = kicked_;
      if (pauses_ > 0 || stopped_) cv_.notify_all();  // a pause() or stop() waits for this
    }

    if (wake) return kRunAnsweredWake;
    // A vCPU waiting for INIT/SIPI (KVM_MP_STATE_UNINITIALIZED, in-kernel APIC) blocks inside
    // KVM_RUN and returns EAGAIN once an APIC event woke it: enter again (through the top, so a
    // pause or stop that came meanwhile is honoured).
    if (rc < 0 && err == EAGAIN) continue;
    if (rc < 0 && err == EINTR) {
      // Our kick (loop: park or stop at the top), a stray signal (retry), or JS's own
      // immediate_exit (report it: JS wanted the pending exit completed without running).
      if (kicked || __atomic_load_n(&run_->immediate_exit, __ATOMIC_SEQ_CST) == 0) continue;
      return kRunInterrupted;
    }
    if (rc < 0) {
      // The one exit that comes with -1 (KVM_CAP_MEMORY_FAULT_INFO): run->memory_fault is valid.
      if ((err == EFAULT || err == EHWPOISON) && run_->exit_reason == KVM_EXIT_MEMORY_FAULT) {
        exits.fetch_add(1, std::memory_order_relaxed);
        return err;
      }
      *failure_errno = err;  // any other errno: exit_reason is stale
      return 0;
    }
    exits.fetch_add(1, std::memory_order_relaxed);
    return 0;
  }
}

bool VcpuCore::Pause(int64_t timeout_ms) {
  std::unique_lock<std::mutex> lock(mu_);
  pauses_++;
  if (!in_kvm_run_) return true;
  Kick();
  return cv_.wait_for(lock, std::chrono::milliseconds(timeout_ms), [this] { return !in_kvm_run_; });
}

void VcpuCore::Unpause() {
  {
    std::lock_guard<std::mutex> lock(mu_);
    if (pauses_ > 0) pauses_--;
    // Only the last unpause lets the runner go: waking it earlier (a quiesce inside an exit's own
    // pause) costs a context switch for nothing.
    if (pauses_ > 0) return;
  }
  cv_.notify_all();
}

bool VcpuCore::Stop(int64_t timeout_ms) {
  std::unique_lock<std::mutex> lock(mu_);
  stopped_ = true;
  cv_.notify_all();  // a runner waiting out a pause
  if (!in_kvm_run_) return true;
  Kick();
  return cv_.wait_for(lock, std::chrono::milliseconds(timeout_ms), [this] { return !in_kvm_run_; });
}

bool VcpuCore::MayBeRunning() {
  std::lock_guard<std::mutex> lock(mu_);
  if (in_kvm_run_) return true;
  // Outside KVM_RUN, but R may enter it any moment unless it is paused or stopped, or is us.
  return has_runner_ && pauses_ == 0 && !stopped_ && !pthread_equal(runner_, pthread_self());
}

// ============================== Vcpu ============================================================

Napi::Function Vcpu::DefineClass(Napi::Env env) {
  return ObjectWrap<Vcpu>::DefineClass(
      env, "Vcpu",
      {
          InstanceAccessor("index", &Vcpu::GetIndex, nullptr),
          InstanceAccessor("fd", &Vcpu::GetFd, nullptr),
          InstanceAccessor("handle", &Vcpu::GetHandle, nullptr),
          InstanceAccessor("run", &Vcpu::GetRun, nullptr),
          InstanceMethod("getRegs", &Vcpu::GetRegs),
          InstanceMethod("setRegs", &Vcpu::SetRegs),
          InstanceMethod("getSregs", &Vcpu::GetSregs),
          InstanceMethod("setSregs", &Vcpu::SetSregs),
          InstanceMethod("setCpuid", &Vcpu::SetCpuid),
          InstanceMethod("setGuestDebug", &Vcpu::SetGuestDebug),
          InstanceMethod("setSyncRegs", &Vcpu::SetSyncRegs),
          InstanceMethod("getMpState", &Vcpu::GetMpState),
          InstanceMethod("setMpState", &Vcpu::SetMpState),
          InstanceMethod("preFaultMemory", &Vcpu::PreFaultMemory),
          InstanceMethod("setMsrs", &Vcpu::SetMsrs),
          InstanceMethod("setFastPorts", &Vcpu::SetFastPorts),
          InstanceMethod("irqLine", &Vcpu::IrqLine),
          InstanceMethod("convertMemory", &Vcpu::ConvertMemory),
          InstanceMethod("answerConversions", &Vcpu::AnswerConversions),
          InstanceMethod("console", &Vcpu::Console),
          InstanceMethod("runUntilExit", &Vcpu::Run),
          InstanceMethod("pause", &Vcpu::Pause),
          InstanceMethod("unpause", &Vcpu::Unpause),
          InstanceMethod("stop", &Vcpu::Stop),
          InstanceMethod("stats", &Vcpu::Stats),
          InstanceMethod("close", &Vcpu::Close),
      });
}

Vcpu::Vcpu(const Napi::CallbackInfo& info) : ObjectWrap<Vcpu>(info) {
  InitArgs* args = InternalInit<InitArgs>(info, "Vcpu", "Vm.createVcpu() or openVcpu()");
  if (args->core) {
    core_ = args->core;
    return;
  }
  // SAFETY: `run` is a MAP_SHARED mapping of run_size bytes of the vCPU fd; the core owns both
  // from here and releases them when the last Vcpu object of any thread is gone.
  core_ = std::make_shared<VcpuCore>(args->fd, args->index, args->run, args->run_size, std::move(args->vm));
  args->fd = -1;
  VcpuCore::Register(core_);
}

Napi::Value Vcpu::Open(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  int64_t handle = ArgInt(info, 0, "handle");
  std::shared_ptr<VcpuCore> core = handle > 0 ? VcpuCore::Find(static_cast<uint64_t>(handle)) : nullptr;
  if (!core) {
    ThrowStateError(env, "ERR_TSVMM_CLOSED",
                    "openVcpu(" + std::to_string(handle) + "): no open vCPU has this handle (closed, or never created)");
  }
  InitArgs args{-1, core->index(), nullptr, 0, nullptr, core};
  return GetAddonData(env).vcpu.New({Napi::External<InitArgs>::New(env, &args)});
}

void Vcpu::Finalize(Napi::Env env) {
  // GC finalizer or environment teardown: no view of kvm_run may outlive our share of the core.
  run_buffer_.Detach(env);
  conversions_.reset();
  core_.reset();
}

VcpuCore& Vcpu::Require(Napi::Env env, const char* what) {
  if (!core_) ThrowStateError(env, "ERR_TSVMM_CLOSED", std::string("Vcpu.") + what + "(): the vCPU is closed");
  return *core_;
}

Napi::Value Vcpu::GetIndex(const Napi::CallbackInfo& info) {
  return Napi::Number::New(info.Env(), Require(info.Env(), "index").index());
}
Napi::Value Vcpu::GetFd(const Napi::CallbackInfo& info) {
  return Napi::Number::New(info.Env(), core_ ? core_->fd() : -1);
}
Napi::Value Vcpu::GetHandle(const Napi::CallbackInfo& info) {
  return Napi::Number::New(info.Env(), static_cast<double>(Require(info.Env(), "handle").handle()));
}

Napi::Value Vcpu::GetRun(const Napi::CallbackInfo& info) {
  if (!core_) return Napi::ArrayBuffer::New(info.Env(), 0);  // closed
  // SAFETY: the mapping lives as long as core_, which this object holds until close() or its
  // finalizer, both of which detach the buffer first. Concurrent access is by protocol: the
  // runner touches kvm_run, others only while it is paused.
  return run_buffer_.Get(info.Env(), core_->run(), core_->run_size());
}

VcpuCore& Vcpu::RequireStill(Napi::Env env, const char* what) {
  VcpuCore& core = Require(env, what);
  if (core.MayBeRunning()) {
    ThrowStateError(env, "ERR_TSVMM_VCPU_RUNNING",
                    std::string("Vcpu.") + what +
                        "(): the vCPU may be inside KVM_RUN (a vCPU ioctl would block until it returns); "
                        "call it before run(), from the thread that runs it, or after pause()");
  }
  return core;
}

Napi::Value Vcpu::GetStruct(Napi::Env env, unsigned long request, const char* name, size_t size) {
  std::vector<uint8_t> buf(size);
  if (ioctl(core_->fd(), request, buf.data()) < 0) {
    ThrowSyscallError(env, "ioctl", name, errno, {ErrorArg::Num("vcpu", core_->index(), "vcpu")});
  }
  return Napi::Buffer<uint8_t>::Copy(env, buf.data(), buf.size());
}

void Vcpu::SetStruct(const Napi::CallbackInfo& info, unsigned long request, const char* name, size_t size) {
  Napi::Env env = info.Env();
  Napi::Buffer<uint8_t> b = ArgBuffer(info, 0, name);
  if (b.Length() != size) {
    ThrowRangeError(env, std::string(name) + ": expected " + std::to_string(size) + " bytes, got " +
                             std::to_string(b.Length()));
  }
  std::vector<uint8_t> buf(b.Data(), b.Data() + size);  // aligned copy for the kernel struct
  if (ioctl(core_->fd(), request, buf.data()) < 0) {
    ThrowSyscallError(env, "ioctl", name, errno, {ErrorArg::Num("vcpu", core_->index(), "vcpu")});
  }
}

Napi::Value Vcpu::GetRegs(const Napi::CallbackInfo& info) {
  RequireStill(info.Env(), "getRegs");
  return GetStruct(info.Env(), KVM_GET_REGS, "KVM_GET_REGS", sizeof(kvm_regs));
}

Napi::Value Vcpu::SetRegs(const Napi::CallbackInfo& info) {
  RequireStill(info.Env(), "setRegs");
  SetStruct(info, KVM_SET_REGS, "KVM_SET_REGS", sizeof(kvm_regs));
  return info.Env().Undefined();
}

Napi::Value Vcpu::GetSregs(const Napi::CallbackInfo& info) {
  RequireStill(info.Env(), "getSregs");
  return GetStruct(info.Env(), KVM_GET_SREGS, "KVM_GET_SREGS", sizeof(kvm_sregs));
}

Napi::Value Vcpu::SetSregs(const Napi::CallbackInfo& info) {
  RequireStill(info.Env(), "setSregs");
  SetStruct(info, KVM_SET_SREGS, "KVM_SET_SREGS", sizeof(kvm_sregs));
  return info.Env().Undefined();
}

Napi::Value Vcpu::SetCpuid(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  VcpuCore& core = RequireStill(env, "setCpuid");
  Napi::Buffer<uint8_t> entries = ArgBuffer(info, 0, "entries");
  if (entries.Length() % sizeof(kvm_cpuid_entry2) != 0) {
    ThrowRangeError(env, "setCpuid: entries must be a multiple of 40 bytes (kvm_cpuid_entry2)");
  }
  uint32_t nent = static_cast<uint32_t>(entries.Length() / sizeof(kvm_cpuid_entry2));
  // struct kvm_cpuid2 as raw bytes: u32 nent, u32 padding, entries at byte 8 (see kvm_uapi.h).
  std::vector<uint64_t> storage((kCpuid2HeaderSize + entries.Length() + 7) / 8);  // zeroed, 8-aligned
  auto* bytes = reinterpret_cast<uint8_t*>(storage.data());
  std::memcpy(bytes, &nent, sizeof nent);
  // SAFETY: storage holds the 8-byte header plus exactly entries.Length() bytes of entries.
  std::memcpy(bytes + kCpuid2HeaderSize, entries.Data(), entries.Length());
  if (ioctl(core.fd(), kKvmSetCpuid2, bytes) < 0) {
    ThrowSyscallError(env, "ioctl", "KVM_SET_CPUID2", errno,
                      {ErrorArg::Num("vcpu", core.index(), "vcpu"), ErrorArg::Num("nent", nent, "nent")});
  }
  return env.Undefined();
}

Napi::Value Vcpu::SetGuestDebug(const Napi::CallbackInfo& info) {
  RequireStill(info.Env(), "setGuestDebug");
  SetStruct(info, KVM_SET_GUEST_DEBUG, "KVM_SET_GUEST_DEBUG", sizeof(kvm_guest_debug));
  return info.Env().Undefined();
}

Napi::Value Vcpu::GetMpState(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  VcpuCore& core = RequireStill(env, "getMpState");
  kvm_mp_state state{};
  if (ioctl(core.fd(), KVM_GET_MP_STATE, &state) < 0) {
    ThrowSyscallError(env, "ioctl", "KVM_GET_MP_STATE", errno, {ErrorArg::Num("vcpu", core.index(), "vcpu")});
  }
  return Napi::Number::New(env, state.mp_state);
}

Napi::Value Vcpu::PreFaultMemory(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  VcpuCore& core = RequireStill(env, "preFaultMemory");
  kvm_pre_fault_memory range{};
  range.gpa = ArgBigUint64(info, 0, "gpa");
  range.size = ArgBigUint64(info, 1, "size");
  // KVM maps part of the range per call and advances gpa/size; EINTR and EAGAIN mean "call again".
  while (range.size) {
    if (ioctl(core.fd(), KVM_PRE_FAULT_MEMORY, &range) == 0) continue;
    if (errno == EINTR || errno == EAGAIN) continue;
    ThrowSyscallError(env, "ioctl", "KVM_PRE_FAULT_MEMORY", errno,
                      {ErrorArg::Num("vcpu", core.index(), "vcpu"), ErrorArg::Big("gpa", range.gpa, "gpa"),
                       ErrorArg::Big("size", range.size, "size")});
  }
  return env.Undefined();
}

Napi::Value Vcpu::SetMpState(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  VcpuCore& core = RequireStill(env, "setMpState");
  kvm_mp_state state{ArgUint32(info, 0, "state")};
  if (ioctl(core.fd(), KVM_SET_MP_STATE, &state) < 0) {
    ThrowSyscallError(env, "ioctl", "KVM_SET_MP_STATE", errno,
                      {ErrorArg::Num("vcpu", core.index(), "vcpu"), ErrorArg::Num("state", state.mp_state, "state")});
  }
  return env.Undefined();
}

Napi::Value Vcpu::SetMsrs(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  VcpuCore& core = RequireStill(env, "setMsrs");
  if (!info[0].IsArray()) ThrowTypeError(env, "setMsrs: msrs must be an array of {index, value}");
  Napi::Array a = info[0].As<Napi::Array>();
  // struct kvm_msrs as raw bytes (u32 nmsrs, u32 pad, then 16-byte kvm_msr_entry), for the same
  // flexible-array reason as KVM_SET_CPUID2 (kvm_uapi.h).
  std::vector<uint64_t> storage(1 + 2 * a.Length());  // zeroed, 8-aligned
  auto* bytes = reinterpret_cast<uint8_t*>(storage.data());
  uint32_t nmsrs = a.Length();
  std::memcpy(bytes, &nmsrs, sizeof nmsrs);
  for (uint32_t i = 0; i < nmsrs; i++) {
    Napi::Value e = a.Get(i);
    if (!e.IsObject()) ThrowTypeError(env, "setMsrs: msrs[] must be {index, value}");
    int64_t index = IntOf(env, e.As<Napi::Object>().Get("index"), "msrs[].index");
    if (index < 0 || index > 0xffffffffLL) ThrowRangeError(env, "msrs[].index must be a u32");
    storage[1 + 2 * i] = static_cast<uint32_t>(index);  // index, then a zero u32 (reserved)
    storage[2 + 2 * i] = BigUint64Of(env, e.As<Napi::Object>().Get("value"), "msrs[].value");
  }
  // KVM_SET_MSRS returns how many entries it set; it stops at the first it refuses.
  int rc = ioctl(core.fd(), kKvmSetMsrs, bytes);
  if (rc < 0) {
    ThrowSyscallError(env, "ioctl", "KVM_SET_MSRS", errno,
                      {ErrorArg::Num("vcpu", core.index(), "vcpu"), ErrorArg::Num("nmsrs", nmsrs, "nmsrs")});
  }
  return Napi::Number::New(env, rc);
}

Napi::Value Vcpu::SetSyncRegs(const Napi::CallbackInfo& info) {
  VcpuCore& core = Require(info.Env(), "setSyncRegs");
  int64_t mask = ArgInt(info, 0, "mask");
  if (mask < 0) ThrowRangeError(info.Env(), "setSyncRegs: mask must not be negative");
  core.sync_regs.store(static_cast<uint64_t>(mask), std::memory_order_relaxed);
  return info.Env().Undefined();
}

Napi::Value Vcpu::SetFastPorts(const Napi::CallbackInfo& info) {
  Require(info.Env(), "setFastPorts").vm().StoreFastPorts(ParseFastPorts(info.Env(), info[0]));
  return info.Env().Undefined();
}

Napi::Value Vcpu::IrqLine(const Napi::CallbackInfo& info) {
  IrqLineOf(info, Require(info.Env(), "irqLine").vm());
  return info.Env().Undefined();
}

Napi::Value Vcpu::ConvertMemory(const Napi::CallbackInfo& info) {
  ConvertMemoryOf(info, Require(info.Env(), "convertMemory").vm());
  return info.Env().Undefined();
}

Napi::Value Vcpu::AnswerConversions(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  Require(env, "answerConversions");
  if (info.Length() < 1 || info[0].IsNull() || info[0].IsUndefined()) {
    conversions_.reset();
  } else {
    if (!info[0].IsObject()) ThrowTypeError(env, "answerConversions: the plan must be an object or null");
    conversions_ = std::make_unique<QuietConversions>(env, info[0].As<Napi::Object>());
  }
  return env.Undefined();
}

Napi::Value Vcpu::Console(const Napi::CallbackInfo& info) {
  Napi::Buffer<uint8_t> bytes = ArgBuffer(info, 0, "bytes");
  Require(info.Env(), "console").vm().AppendConsole(bytes.Data(), bytes.Length());
  return info.Env().Undefined();
}

Napi::Value Vcpu::Stats(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  VcpuCore& core = Require(env, "stats");
  Napi::Object o = Napi::Object::New(env);
  o.Set("runs", Napi::Number::New(env, static_cast<double>(core.runs.load(std::memory_order_relaxed))));
  o.Set("nativeExits", Napi::Number::New(env, static_cast<double>(core.native_exits.load(std::memory_order_relaxed))));
  o.Set("exits", Napi::Number::New(env, static_cast<double>(core.exits.load(std::memory_order_relaxed))));
  o.Set("conversions", Napi::Number::New(env, static_cast<double>(core.native_conversions.load(std::memory_order_relaxed))));
  return o;
}

// ---- the run protocol -------------------------------------------------------------------------

Napi::Value Vcpu::Run(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  // The runner keeps the core alive for the whole call, even if another thread closes its Vcpu.
  std::shared_ptr<VcpuCore> core = core_;
  if (!core) ThrowStateError(env, "ERR_TSVMM_CLOSED", "Vcpu.run(): the vCPU is closed");
  int failure = 0;
  int rc = core->Run(&failure, conversions_.get());
  if (failure != 0) {
    ThrowSyscallError(env, "ioctl", "KVM_RUN", failure, {ErrorArg::Num("vcpu", core->index(), "vcpu")});
  }
  return Napi::Number::New(env, rc);
}

static int64_t TimeoutArg(const Napi::CallbackInfo& info, const char* what) {
  if (info.Length() == 0 || info[0].IsUndefined()) return 1000;
  int64_t ms = ArgInt(info, 0, "timeoutMs");
  if (ms < 0) ThrowRangeError(info.Env(), std::string(what) + ": timeoutMs must not be negative");
  return ms;
}

Napi::Value Vcpu::Pause(const Napi::CallbackInfo& info) {
  VcpuCore& core = Require(info.Env(), "pause");
  return Napi::Boolean::New(info.Env(), core.Pause(TimeoutArg(info, "pause")));
}

Napi::Value Vcpu::Unpause(const Napi::CallbackInfo& info) {
  Require(info.Env(), "unpause").Unpause();
  return info.Env().Undefined();
}

Napi::Value Vcpu::Stop(const Napi::CallbackInfo& info) {
  int64_t timeout_ms = TimeoutArg(info, "stop");
  return Napi::Boolean::New(info.Env(), core_ ? core_->Stop(timeout_ms) : true);
}

Napi::Value Vcpu::Close(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  if (core_) core_->Stop(1000);
  run_buffer_.Detach(env);  // no JS view of this thread can reach the page afterwards
  conversions_.reset();
  core_.reset();            // the last owner unmaps and closes
  return env.Undefined();
}

}  // namespace tsvmm
