// Vcpu: a KVM vCPU fd, its kvm_run mapping, and the std::thread that runs KVM_RUN.
//
// Thread protocol (the vCPU thread "T" and the JS thread "J"):
//   - T loops on KVM_RUN. Console OUTs and constant INs on the fast ports are answered in T.
//   - Any other exit, a honoured kick ("paused") or a failure ("error") becomes an event: T marks
//     itself parked, queues the event on its ThreadSafeFunction and waits on a condition variable.
//     While parked T does not touch kvm_run; J may read and write `run` and issue vCPU ioctls.
//   - resume() wakes T, which re-enters KVM_RUN; stop() wakes or kicks T and joins it.
//   - kick() makes a T that is inside KVM_RUN leave it: pause flag + immediate_exit + a signal.
#pragma once

#include <napi.h>
#include <pthread.h>

#include <atomic>
#include <condition_variable>
#include <cstdint>
#include <memory>
#include <mutex>
#include <thread>

#include "errors.h"
#include "kvm_uapi.h"
#include "mapped_file.h"
#include "vm.h"

namespace tsvmm {

// An event on its way from a vCPU thread to JavaScript.
struct VcpuEvent {
  enum class Kind { kExit, kPaused, kError };
  Kind kind = Kind::kExit;
  int err = 0;              // kExit: 0, or EFAULT/EHWPOISON for KVM_EXIT_MEMORY_FAULT
  SyscallFailure failure;   // kError
};

class Vcpu;

// One start()..stop() of a vCPU thread: the context of its ThreadSafeFunction. JS thread only.
struct VcpuSession {
  bool stopped = false;     // set by stop(): events still queued are dropped
  Vcpu* vcpu = nullptr;     // valid while !stopped (stop() runs before the Vcpu goes away)
};

void CallJsVcpuEvent(Napi::Env env, Napi::Function callback, VcpuSession* session, VcpuEvent* event);
using VcpuEventTsfn = Napi::TypedThreadSafeFunction<VcpuSession, VcpuEvent, CallJsVcpuEvent>;

class Vcpu : public Napi::ObjectWrap<Vcpu> {
 public:
  struct InitArgs {
    int fd;  // ownership of fd and run moves to the object (fd set to -1 once taken)
    uint32_t index;
    void* run;
    size_t run_size;
    std::shared_ptr<VmShared> vm;
  };

  static Napi::Function DefineClass(Napi::Env env);
  explicit Vcpu(const Napi::CallbackInfo& info);
  ~Vcpu() override;
  void Finalize(Napi::Env env) override;

  // The kick signal (a real-time signal; see vcpu.cc). Installs its handler once per process.
  static int KickSignal();

  // JS thread, from CallJsVcpuEvent: an event reached JavaScript; resume() may answer it.
  void EventDelivered() { awaiting_resume_ = true; }

 private:
  // ---- JS methods ----
  Napi::Value GetIndex(const Napi::CallbackInfo& info);
  Napi::Value GetFd(const Napi::CallbackInfo& info);
  Napi::Value GetRun(const Napi::CallbackInfo& info);
  Napi::Value GetRegs(const Napi::CallbackInfo& info);
  Napi::Value SetRegs(const Napi::CallbackInfo& info);
  Napi::Value GetSregs(const Napi::CallbackInfo& info);
  Napi::Value SetSregs(const Napi::CallbackInfo& info);
  Napi::Value SetCpuid(const Napi::CallbackInfo& info);
  Napi::Value SetGuestDebug(const Napi::CallbackInfo& info);
  Napi::Value SetSyncRegs(const Napi::CallbackInfo& info);
  Napi::Value GetMpState(const Napi::CallbackInfo& info);
  Napi::Value SetMpState(const Napi::CallbackInfo& info);
  Napi::Value SetMsrs(const Napi::CallbackInfo& info);
  Napi::Value Start(const Napi::CallbackInfo& info);
  Napi::Value Resume(const Napi::CallbackInfo& info);
  Napi::Value Kick(const Napi::CallbackInfo& info);
  Napi::Value Stop(const Napi::CallbackInfo& info);
  Napi::Value Stats(const Napi::CallbackInfo& info);
  Napi::Value Close(const Napi::CallbackInfo& info);

  // vCPU ioctls from J block while T is inside KVM_RUN; refuse them unless T is parked or absent.
  void RequireStill(Napi::Env env, const char* what);
  Napi::Value GetStruct(Napi::Env env, unsigned long request, const char* name, size_t size);
  void SetStruct(const Napi::CallbackInfo& info, unsigned long request, const char* name, size_t size);

  // ---- thread ----
  void ThreadMain();
  bool HandleFastIo(const FastPortTable& ports);
  // Called by T with mu_ held: publish the event and wait for resume() (true) or stop() (false).
  bool Park(std::unique_lock<std::mutex>& lock, VcpuEvent* event);
  void SetImmediateExit(uint8_t value);
  void StopThread();  // J: end and join T, release the TSFN; idempotent, never throws
  static void CleanupHook(void* arg);

  napi_env env_;
  int fd_ = -1;
  uint32_t index_ = 0;
  kvm_run* run_ = nullptr;
  size_t run_size_ = 0;
  std::shared_ptr<VmShared> vm_;
  ExternalBuffer run_buffer_;

  std::thread thread_;
  pthread_t thread_handle_{};
  VcpuEventTsfn tsfn_;               // J: valid while thread_ is joinable
  VcpuSession* session_ = nullptr;   // J: owned by tsfn_ (deleted by its finalizer)
  bool cleanup_hook_ = false;        // J
  bool awaiting_resume_ = false;     // J: an event was delivered and resume() has not answered it

  std::mutex mu_;
  std::condition_variable cv_;
  // Guarded by mu_:
  bool parked_ = false;            // T waits in Park(); it does not touch kvm_run
  bool resume_requested_ = false;
  bool pause_requested_ = false;   // a kick is pending; immediate_exit is 1
  std::atomic<bool> stop_requested_{false};  // written under mu_, also read by T without it

  std::atomic<uint64_t> sync_regs_{0};
  std::atomic<uint64_t> runs_{0};
  std::atomic<uint64_t> native_exits_{0};
  std::atomic<uint64_t> events_{0};
};

}  // namespace tsvmm
