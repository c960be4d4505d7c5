// Vcpu: a KVM vCPU fd and its kvm_run mapping, run by whichever thread calls runUntilExit().
//
// Run protocol (the "runner" R is the thread that calls runUntilExit(), a worker_thread in tsvmm; any
// other thread "O" may pause, stop and inspect):
//   - R calls runUntilExit(): KVM_RUN in R itself, re-entered after every exit answered natively (console
//     OUTs, constant INs of the fast ports); it returns the first exit that needs policy. While R
//     handles that exit in JavaScript it is outside KVM_RUN; its next call re-enters.
//   - pause() (O): R leaves KVM_RUN (immediate_exit + signal) if it is inside, and does not enter
//     it again until every pause() is undone by unpause(). pause() returns once R is outside
//     KVM_RUN; a paused vCPU's registers may be read and written from O.
//   - stop() (any thread): runUntilExit() returns kRunStopped now (kicking R out of KVM_RUN) and ever
//     after; like pause() it waits for R to be outside KVM_RUN.
//   - One VcpuCore is shared by the Vcpu objects of every thread that opened it (Vm.createVcpu
//     in one, addon.openVcpu(handle) in the others); the mapping and fd go with the last one.
#pragma once

#include <napi.h>
#include <pthread.h>

#include <atomic>
#include <condition_variable>
#include <cstdint>
#include <memory>
#include <mutex>

#include "conversions.h"
#include "kvm_uapi.h"
#include "mapped_file.h"
#include "vm.h"

namespace tsvmm {

// What run() returns besides an exit (an exit returns 0, or EFAULT/EHWPOISON for a
// KVM_EXIT_MEMORY_FAULT that came with -1).
constexpr int kRunStopped = -1;      // stop() was called
constexpr int kRunInterrupted = -2;  // KVM_RUN returned EINTR for JS's own immediate_exit
constexpr int kRunAnsweredWake = -3; // a conversion was answered here and a JS thread waits for the
                                     // page-state map's lock: wake it, then call run() again

// The thread-independent part of a vCPU: fd, kvm_run, and the state of the run protocol.
class VcpuCore {
 public:
  VcpuCore(int fd, uint32_t index, void* run, size_t run_size, std::shared_ptr<VmShared> vm);
  ~VcpuCore();  // munmap + close: every Vcpu object (and its `run` view) is gone by then
  VcpuCore(const VcpuCore&) = delete;
  VcpuCore& operator=(const VcpuCore&) = delete;

  int fd() const { return fd_; }
  uint32_t index() const { return index_; }
  kvm_run* run() const { return run_; }
  size_t run_size() const { return run_size_; }
  VmShared& vm() const { return *vm_; }
  uint64_t handle() const { return handle_; }

  // R: KVM_RUN until an exit needs policy. Returns 0/EFAULT/EHWPOISON (an exit),
  // kRunStopped, kRunInterrupted or kRunAnsweredWake; any other KVM_RUN failure is returned as
  // *failure_errno. `conversions` (R's own, or null) answers conversion requests in the loop.
  int Run(int* failure_errno, QuietConversions* conversions);
  // O: see the protocol above. Pause waits at most timeout_ms for R to leave KVM_RUN (false: it
  // has not yet; the pause still counts and must be undone).
  bool Pause(int64_t timeout_ms);
  void Unpause();
  // Like Pause, but for good: R's run() returns kRunStopped from now on.
  bool Stop(int64_t timeout_ms);
  // Whether a vCPU ioctl from the calling thread would wait for KVM_RUN (or race with R's next).
  bool MayBeRunning();

  std::atomic<uint64_t> sync_regs{0};
  std::atomic<uint64_t> runs{0};
  std::atomic<uint64_t> native_exits{0};
  std::atomic<uint64_t> exits{0};
  std::atomic<uint64_t> native_conversions{0};

  // The core of an open handle, or null (addon.openVcpu).
  static std::shared_ptr<VcpuCore> Find(uint64_t handle);
  static void Register(const std::shared_ptr<VcpuCore>& core);
  // Stop every vCPU of the process without waiting (process exit: Node joins worker threads,
  // which must not be inside KVM_RUN then).
  static void StopAll();

 private:
  bool HandleFastIo();
  void Kick();  // with mu_ held, R inside KVM_RUN

  const int fd_;
  const uint32_t index_;
  kvm_run* const run_;
  const size_t run_size_;
  const std::shared_ptr<VmShared> vm_;
  uint64_t handle_ = 0;

  // R only: its copy of the fast-port table
  std::shared_ptr<const FastPortTable> ports_;
  uint64_t ports_version_ = 0;  // versions start at 1: the first fast exit loads the table

  std::mutex mu_;
  std::condition_variable cv_;
  // Guarded by mu_:
  bool in_kvm_run_ = false;  // R is inside KVM_RUN (or about to enter it)
  bool has_runner_ = false;  // some thread has called run() and not seen kRunStopped
  pthread_t runner_{};       // valid while has_runner_
  uint32_t pauses_ = 0;
  bool kicked_ = false;      // immediate_exit was set by a pause/stop, not by JS
  bool stopped_ = false;
};

class Vcpu : public Napi::ObjectWrap<Vcpu> {
 public:
  // Vm.createVcpu: a new core (ownership of fd and run moves to it; fd set to -1 once taken).
  // addon.openVcpu: an existing core.
  struct InitArgs {
    int fd;
    uint32_t index;
    void* run;
    size_t run_size;
    std::shared_ptr<VmShared> vm;
    std::shared_ptr<VcpuCore> core;
  };

  static Napi::Function DefineClass(Napi::Env env);
  explicit Vcpu(const Napi::CallbackInfo& info);
  void Finalize(Napi::Env env) override;

  // The kick signal (a real-time signal; see vcpu.cc). Installs its handler once per process.
  static int KickSignal();

  // addon.openVcpu(handle)
  static Napi::Value Open(const Napi::CallbackInfo& info);
  // addon.stopAllVcpus()
  static Napi::Value StopAll(const Napi::CallbackInfo& info);

 private:
  Napi::Value GetIndex(const Napi::CallbackInfo& info);
  Napi::Value GetFd(const Napi::CallbackInfo& info);
  Napi::Value GetHandle(const Napi::CallbackInfo& info);
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
  Napi::Value PreFaultMemory(const Napi::CallbackInfo& info);
  Napi::Value SetMsrs(const Napi::CallbackInfo& info);
  Napi::Value SetFastPorts(const Napi::CallbackInfo& info);
  Napi::Value IrqLine(const Napi::CallbackInfo& info);
  Napi::Value ConvertMemory(const Napi::CallbackInfo& info);
  Napi::Value AnswerConversions(const Napi::CallbackInfo& info);
  Napi::Value Console(const Napi::CallbackInfo& info);
  Napi::Value Run(const Napi::CallbackInfo& info);
  Napi::Value Pause(const Napi::CallbackInfo& info);
  Napi::Value Unpause(const Napi::CallbackInfo& info);
  Napi::Value Stop(const Napi::CallbackInfo& info);
  Napi::Value Stats(const Napi::CallbackInfo& info);
  Napi::Value Close(const Napi::CallbackInfo& info);

  VcpuCore& Require(Napi::Env env, const char* what);
  // vCPU ioctls block while the vCPU is inside KVM_RUN; refuse them unless it cannot be.
  VcpuCore& RequireStill(Napi::Env env, const char* what);
  Napi::Value GetStruct(Napi::Env env, unsigned long request, const char* name, size_t size);
  void SetStruct(const Napi::CallbackInfo& info, unsigned long request, const char* name, size_t size);

  std::shared_ptr<VcpuCore> core_;  // null once closed
  // This object's thread answers conversions in its run loop with it (answerConversions)
  std::unique_ptr<QuietConversions> conversions_;
  ExternalBuffer run_buffer_;
};

}  // namespace tsvmm
