#include "vcpu.h"

#include <signal.h>
#include <sys/ioctl.h>
#include <sys/mman.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>
#include <vector>

#include "addon.h"

namespace tsvmm {

// ============================== kick signal =====================================================

// SIGRTMIN+4: a real-time signal nothing else in the process uses. Node uses SIGUSR1 (inspector)
// and leaves SIGUSR2 to applications; glibc reserves the signals below SIGRTMIN for NPTL;
// Firecracker/crosvm-style code and some libraries pick SIGRTMIN or SIGRTMIN+1 for their own
// kicks. Its default action would kill the process, so the no-op handler is installed before any
// vCPU thread can receive it.
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

// ============================== JS event delivery ===============================================

void CallJsVcpuEvent(Napi::Env env, Napi::Function callback, VcpuSession* session, VcpuEvent* event) {
  std::unique_ptr<VcpuEvent> owned(event);
  // env is null when the TSFN is torn down with events queued; a stopped session drops them.
  if (static_cast<napi_env>(env) == nullptr || session == nullptr || session->stopped || !event) return;
  // SAFETY: session->vcpu is alive while !session->stopped: every path that destroys a Vcpu runs
  // StopThread() first, which sets `stopped`. The thread parked before queueing this event and
  // stays parked until resume() or stop().
  session->vcpu->EventDelivered();
  Napi::Object o = Napi::Object::New(env);
  switch (event->kind) {
    case VcpuEvent::Kind::kExit:
      o.Set("kind", "exit");
      o.Set("errno", Napi::Number::New(env, event->err));
      break;
    case VcpuEvent::Kind::kPaused:
      o.Set("kind", "paused");
      break;
    case VcpuEvent::Kind::kError:
      o.Set("kind", "error");
      o.Set("error", ToJsError(env, event->failure).Value());
      break;
  }
  callback.Call({o});
}

// ============================== Vcpu ============================================================

Napi::Function Vcpu::DefineClass(Napi::Env env) {
  return ObjectWrap<Vcpu>::DefineClass(
      env, "Vcpu",
      {
          InstanceAccessor("index", &Vcpu::GetIndex, nullptr),
          InstanceAccessor("fd", &Vcpu::GetFd, nullptr),
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
          InstanceMethod("setMsrs", &Vcpu::SetMsrs),
          InstanceMethod("start", &Vcpu::Start),
          InstanceMethod("resume", &Vcpu::Resume),
          InstanceMethod("kick", &Vcpu::Kick),
          InstanceMethod("stop", &Vcpu::Stop),
          InstanceMethod("stats", &Vcpu::Stats),
          InstanceMethod("close", &Vcpu::Close),
      });
}

Vcpu::Vcpu(const Napi::CallbackInfo& info) : ObjectWrap<Vcpu>(info), env_(info.Env()) {
  InitArgs* args = InternalInit<InitArgs>(info, "Vcpu", "Vm.createVcpu()");
  fd_ = args->fd;
  args->fd = -1;
  index_ = args->index;
  // SAFETY: `run` is a MAP_SHARED mapping of run_size bytes of the vCPU fd, now owned by this
  // object; it is unmapped only in Close()/~Vcpu(), after the thread is joined and the JS view
  // detached.
  run_ = static_cast<kvm_run*>(args->run);
  run_size_ = args->run_size;
  vm_ = std::move(args->vm);
}

Vcpu::~Vcpu() {
  // Normally Finalize() (or close()) already did all of this.
  StopThread();
  if (run_ != nullptr) munmap(run_, run_size_);
  if (fd_ >= 0) ::close(fd_);
}

void Vcpu::Finalize(Napi::Env env) {
  // GC finalizer (JS thread). An unreachable Vcpu may still have a thread: end it before the
  // destructor unmaps kvm_run under it, and detach `run` in case a view of it is still alive.
  StopThread();
  run_buffer_.Detach(env);
}

// ---- accessors and plain ioctls ---------------------------------------------------------------

Napi::Value Vcpu::GetIndex(const Napi::CallbackInfo& info) { return Napi::Number::New(info.Env(), index_); }
Napi::Value Vcpu::GetFd(const Napi::CallbackInfo& info) { return Napi::Number::New(info.Env(), fd_); }

Napi::Value Vcpu::GetRun(const Napi::CallbackInfo& info) {
  if (run_ == nullptr) return Napi::ArrayBuffer::New(info.Env(), 0);  // closed
  // SAFETY: run_ stays mapped until Close()/~Vcpu(), which detach this buffer first. Concurrent
  // access is by protocol: JS touches it only while the thread is parked or not running.
  return run_buffer_.Get(info.Env(), run_, run_size_);
}

void Vcpu::RequireStill(Napi::Env env, const char* what) {
  if (fd_ < 0) ThrowStateError(env, "ERR_TSVMM_CLOSED", std::string("Vcpu.") + what + "(): the vCPU is closed");
  std::lock_guard<std::mutex> lock(mu_);
  if (thread_.joinable() && (!parked_ || resume_requested_)) {
    ThrowStateError(env, "ERR_TSVMM_VCPU_RUNNING",
                    std::string("Vcpu.") + what +
                        "(): the vCPU is running (a vCPU ioctl would block until KVM_RUN returns); "
                        "call it before start(), from an event, or after kick() reports paused");
  }
}

Napi::Value Vcpu::GetStruct(Napi::Env env, unsigned long request, const char* name, size_t size) {
  std::vector<uint8_t> buf(size);
  if (ioctl(fd_, request, buf.data()) < 0) {
    ThrowSyscallError(env, "ioctl", name, errno, {ErrorArg::Num("vcpu", index_, "vcpu")});
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
  if (ioctl(fd_, request, buf.data()) < 0) {
    ThrowSyscallError(env, "ioctl", name, errno, {ErrorArg::Num("vcpu", index_, "vcpu")});
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
  RequireStill(env, "setCpuid");
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
  if (ioctl(fd_, kKvmSetCpuid2, bytes) < 0) {
    ThrowSyscallError(env, "ioctl", "KVM_SET_CPUID2", errno,
                      {ErrorArg::Num("vcpu", index_, "vcpu"), ErrorArg::Num("nent", nent, "nent")});
  }
  return env.Undefined();
}

Napi::Value Vcpu::SetGuestDebug(const Napi::CallbackInfo& info) {
  RequireStill(info.Env(), "setGuestDebug");
  SetStruct(info, KVM_SET_GUEST_DEBUG, "KVM_SET_GUEST_DEBUG", sizeof(kvm_guest_debug));
  return info.Env().Undefined();
}

Napi::Value Vcpu::SetSyncRegs(const Napi::CallbackInfo& info) {
  int64_t mask = ArgInt(info, 0, "mask");
  if (mask < 0) ThrowRangeError(info.Env(), "setSyncRegs: mask must not be negative");
  sync_regs_.store(static_cast<uint64_t>(mask), std::memory_order_relaxed);
  return info.Env().Undefined();
}

Napi::Value Vcpu::GetMpState(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  RequireStill(env, "getMpState");
  kvm_mp_state state{};
  if (ioctl(fd_, KVM_GET_MP_STATE, &state) < 0) {
    ThrowSyscallError(env, "ioctl", "KVM_GET_MP_STATE", errno, {ErrorArg::Num("vcpu", index_, "vcpu")});
  }
  return Napi::Number::New(env, state.mp_state);
}

Napi::Value Vcpu::SetMpState(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  RequireStill(env, "setMpState");
  kvm_mp_state state{ArgUint32(info, 0, "state")};
  if (ioctl(fd_, KVM_SET_MP_STATE, &state) < 0) {
    ThrowSyscallError(env, "ioctl", "KVM_SET_MP_STATE", errno,
                      {ErrorArg::Num("vcpu", index_, "vcpu"), ErrorArg::Num("state", state.mp_state, "state")});
  }
  return env.Undefined();
}

Napi::Value Vcpu::SetMsrs(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  RequireStill(env, "setMsrs");
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
  int rc = ioctl(fd_, kKvmSetMsrs, bytes);
  if (rc < 0) {
    ThrowSyscallError(env, "ioctl", "KVM_SET_MSRS", errno,
                      {ErrorArg::Num("vcpu", index_, "vcpu"), ErrorArg::Num("nmsrs", nmsrs, "nmsrs")});
  }
  return Napi::Number::New(env, rc);
}

Napi::Value Vcpu::Stats(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  Napi::Object o = Napi::Object::New(env);
  o.Set("runs", Napi::Number::New(env, static_cast<double>(runs_.load(std::memory_order_relaxed))));
  o.Set("nativeExits",
        Napi::Number::New(env, static_cast<double>(native_exits_.load(std::memory_order_relaxed))));
  o.Set("events", Napi::Number::New(env, static_cast<double>(events_.load(std::memory_order_relaxed))));
  return o;
}

// ---- thread control (JS thread) ---------------------------------------------------------------

void Vcpu::SetImmediateExit(uint8_t value) {
  // SAFETY: run_ is mapped for the object's lifetime (see constructor). immediate_exit is the one
  // kvm_run byte written while the thread may be inside KVM_RUN: that is its purpose (the kernel
  // reads it on entry), and the atomic store keeps the compiler from tearing or deferring it.
  __atomic_store_n(&run_->immediate_exit, value, __ATOMIC_SEQ_CST);
}

Napi::Value Vcpu::Start(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  if (fd_ < 0) ThrowStateError(env, "ERR_TSVMM_CLOSED", "Vcpu.start(): the vCPU is closed");
  if (thread_.joinable()) ThrowStateError(env, "ERR_TSVMM_VCPU_STARTED", "Vcpu.start(): already started");
  if (!info[0].IsFunction()) ThrowTypeError(env, "Vcpu.start(onEvent): onEvent must be a function");

  auto* session = new VcpuSession();
  session->vcpu = this;
  try {
    tsfn_ = VcpuEventTsfn::New(
        env, info[0].As<Napi::Function>(), "tsvmm.vcpu", 0 /* unbounded: never blocks T */, 1,
        session, [](Napi::Env, void*, VcpuSession* s) { delete s; }, static_cast<void*>(nullptr));
  } catch (...) {
    delete session;
    throw;
  }
  session_ = session;

  {
    std::lock_guard<std::mutex> lock(mu_);
    parked_ = false;
    resume_requested_ = false;
    pause_requested_ = false;
    stop_requested_.store(false);
  }
  // A previous stop() left immediate_exit set; JS may also have written the byte.
  SetImmediateExit(0);

  KickSignal();  // the handler must exist before the thread can be kicked
  // The thread starts with every signal blocked (process signals belong to the JS thread and would
  // only cause spurious EINTRs) and unblocks the kick signal itself.
  sigset_t all, old;
  sigfillset(&all);
  pthread_sigmask(SIG_SETMASK, &all, &old);
  try {
    // SAFETY: the thread uses `this`; every path that destroys the object (close(), stop(), the
    // finalizer, the destructor, the environment cleanup hook) joins it first.
    thread_ = std::thread(&Vcpu::ThreadMain, this);
  } catch (...) {
    pthread_sigmask(SIG_SETMASK, &old, nullptr);
    tsfn_.Release();
    session_ = nullptr;
    throw;
  }
  pthread_sigmask(SIG_SETMASK, &old, nullptr);
  thread_handle_ = thread_.native_handle();

  // Registered after the TSFN, so at environment teardown it runs before the TSFN's own cleanup
  // (hooks run in reverse order): the thread is joined while the TSFN still exists.
  napi_add_env_cleanup_hook(env_, CleanupHook, this);
  cleanup_hook_ = true;
  return env.Undefined();
}

Napi::Value Vcpu::Resume(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  // resume() answers exactly one event that JavaScript has seen. (Checking only `parked_` would
  // let a second resume() answer the next event before it is delivered.)
  if (!awaiting_resume_) {
    ThrowStateError(env, "ERR_TSVMM_VCPU_NOT_PARKED",
                    "Vcpu.resume(): no event is waiting for an answer (resume() answers exactly one "
                    "delivered event)");
  }
  awaiting_resume_ = false;
  {
    std::lock_guard<std::mutex> lock(mu_);
    resume_requested_ = true;  // the thread is parked: it parked before queueing the event
  }
  cv_.notify_all();
  return env.Undefined();
}

Napi::Value Vcpu::Kick(const Napi::CallbackInfo& info) {
  std::lock_guard<std::mutex> lock(mu_);
  // Only a thread that is in KVM_RUN or about to enter it is kicked (a resumed thread that has not
  // left Park() yet counts as about to enter). Kicking a parked, stopped or already kicked vCPU
  // is a no-op.
  if (!thread_.joinable() || stop_requested_.load() || pause_requested_) return info.Env().Undefined();
  if (parked_ && !resume_requested_) return info.Env().Undefined();
  pause_requested_ = true;
  // immediate_exit covers the window where T is between its checks and the ioctl; the signal
  // gets it out of a guest that is running (or spinning) inside KVM_RUN.
  SetImmediateExit(1);
  pthread_kill(thread_handle_, KickSignal());
  return info.Env().Undefined();
}

void Vcpu::StopThread() {
  if (!thread_.joinable()) return;
  {
    std::lock_guard<std::mutex> lock(mu_);
    stop_requested_.store(true);
    if (run_ != nullptr) SetImmediateExit(1);
    // SAFETY: the thread is joinable (not yet joined), so its pthread_t is valid even if it has
    // already returned; glibc's pthread_kill handles an exited, unjoined thread.
    if (!parked_) pthread_kill(thread_handle_, KickSignal());
  }
  cv_.notify_all();
  // T never blocks on J: NonBlockingCall with an unbounded queue, and Park() waits on cv_ only.
  thread_.join();
  // Events still queued belong to this session and are dropped by CallJsVcpuEvent.
  if (session_ != nullptr) session_->stopped = true;
  awaiting_resume_ = false;
  session_ = nullptr;
  tsfn_.Release();  // the TSFN (and so the process's event loop) can go now
  if (cleanup_hook_) {
    cleanup_hook_ = false;
    napi_remove_env_cleanup_hook(env_, CleanupHook, this);
  }
}

void Vcpu::CleanupHook(void* arg) {
  // Environment teardown (e.g. a worker terminated with vCPUs running): the hook is being removed
  // by its caller, so do not remove it again.
  auto* self = static_cast<Vcpu*>(arg);
  self->cleanup_hook_ = false;
  self->StopThread();
}

Napi::Value Vcpu::Stop(const Napi::CallbackInfo& info) {
  StopThread();
  return info.Env().Undefined();
}

Napi::Value Vcpu::Close(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  StopThread();
  run_buffer_.Detach(env);  // before munmap: no JS view can reach the page afterwards
  if (run_ != nullptr) {
    munmap(run_, run_size_);
    run_ = nullptr;
  }
  if (fd_ >= 0) {
    ::close(fd_);
    fd_ = -1;
  }
  return env.Undefined();
}

// ---- the vCPU thread --------------------------------------------------------------------------

bool Vcpu::HandleFastIo(const FastPortTable& ports) {
  const auto& io = run_->io;
  // SAFETY: the kernel puts the data inside the vCPU mapping (data_offset is a page of it); the
  // bounds check keeps a bogus offset from sending us outside the mapping anyway.
  if (io.data_offset > run_size_ || io.count > run_size_ - io.data_offset) return false;
  uint8_t* data = reinterpret_cast<uint8_t*>(run_) + io.data_offset;
  if (io.direction == KVM_EXIT_IO_OUT) {
    if (ports.console_out >= 0 && io.port == ports.console_out) {
      vm_->AppendConsole(data, io.count);
      return true;
    }
    return false;
  }
  uint8_t value;
  if (io.direction == KVM_EXIT_IO_IN && ports.Read(io.port, &value)) {
    std::memset(data, value, io.count);
    return true;
  }
  return false;
}

bool Vcpu::Park(std::unique_lock<std::mutex>& lock, VcpuEvent* event) {
  parked_ = true;
  resume_requested_ = false;
  // SAFETY: tsfn_ is valid while the thread runs: J releases it only after join. NonBlockingCall
  // on an unbounded queue never blocks, so holding mu_ here cannot deadlock with J.
  events_.fetch_add(1, std::memory_order_relaxed);  // before the call: JS may look at once
  napi_status status = tsfn_.NonBlockingCall(event);
  if (status != napi_ok) {
    // napi_closing: the environment is being torn down. Nobody will resume us; end the thread.
    events_.fetch_sub(1, std::memory_order_relaxed);
    delete event;
    parked_ = false;
    return false;
  }
  cv_.wait(lock, [this] { return resume_requested_ || stop_requested_.load(); });
  parked_ = false;
  resume_requested_ = false;
  return !stop_requested_.load();
}

void Vcpu::ThreadMain() {
  // Only the kick signal reaches this thread (it was created with all signals blocked), plus the
  // synchronous fault signals, so a crash here is reported like anywhere else.
  sigset_t unblock;
  sigemptyset(&unblock);
  sigaddset(&unblock, KickSignal());
  for (int s : {SIGSEGV, SIGBUS, SIGFPE, SIGILL, SIGABRT}) sigaddset(&unblock, s);
  pthread_sigmask(SIG_UNBLOCK, &unblock, nullptr);

  std::shared_ptr<const FastPortTable> ports;
  uint64_t ports_version = 0;  // versions start at 1: the first fast exit loads the table

  for (;;) {
    if (stop_requested_.load(std::memory_order_acquire)) return;
    // SAFETY (this whole loop): run_ is mapped until after join; only this thread touches kvm_run
    // outside immediate_exit, except while parked, when only JS does.
    run_->kvm_valid_regs = sync_regs_.load(std::memory_order_relaxed);
    int rc = ioctl(fd_, KVM_RUN, 0);
    int err = rc < 0 ? errno : 0;
    runs_.fetch_add(1, std::memory_order_relaxed);

    // A vCPU waiting for INIT/SIPI (KVM_MP_STATE_UNINITIALIZED, in-kernel APIC) blocks inside
    // KVM_RUN and returns EAGAIN once an APIC event woke it: enter again.
    if (rc < 0 && err == EAGAIN) continue;
    if (rc < 0 && err == EINTR) {
      std::unique_lock<std::mutex> lock(mu_);
      if (stop_requested_.load()) return;
      // Neither a kick nor JS's own immediate_exit (set while parked, e.g. to complete an exit
      // without running the guest): a stray signal, or a kick an exit already answered. Retry.
      if (!pause_requested_ && __atomic_load_n(&run_->immediate_exit, __ATOMIC_SEQ_CST) == 0) continue;
      pause_requested_ = false;
      SetImmediateExit(0);
      if (!Park(lock, new VcpuEvent{VcpuEvent::Kind::kPaused, 0, {}})) return;
      continue;
    }

    auto* event = new VcpuEvent();
    if (rc < 0) {
      if ((err == EFAULT || err == EHWPOISON) && run_->exit_reason == KVM_EXIT_MEMORY_FAULT) {
        // The one exit that comes with -1 (KVM_CAP_MEMORY_FAULT_INFO): run->memory_fault is valid.
        event->kind = VcpuEvent::Kind::kExit;
        event->err = err;
      } else {
        // Any other errno: exit_reason is stale.
        event->kind = VcpuEvent::Kind::kError;
        event->failure = SyscallFailure{"ioctl", "KVM_RUN", err, {ErrorArg::Num("vcpu", index_, "vcpu")}};
      }
    } else {
      if (run_->exit_reason == KVM_EXIT_IO && run_->io.size == 1) {
        if (vm_->fast_ports_version() != ports_version) {
          auto loaded = vm_->LoadFastPorts();
          ports = std::move(loaded.first);
          ports_version = loaded.second;
        }
        if (HandleFastIo(*ports)) {
          native_exits_.fetch_add(1, std::memory_order_relaxed);
          delete event;
          continue;
        }
      }
      event->kind = VcpuEvent::Kind::kExit;
      event->err = 0;
    }

    std::unique_lock<std::mutex> lock(mu_);
    if (stop_requested_.load()) {
      delete event;
      return;
    }
    // A kick that raced with this exit is answered by the exit: the vCPU is outside KVM_RUN and
    // parked either way. Its signal, if still pending, only causes one retried EINTR later.
    pause_requested_ = false;
    SetImmediateExit(0);
    if (!Park(lock, event)) return;
  }
}

}  // namespace tsvmm
