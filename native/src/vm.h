// Vm: a KVM VM fd (KVM_CREATE_VM), made by Kvm.createVm. Owns the state its vCPU threads share
// (VmShared): the fast-port table and the console buffer.
#pragma once

#include <napi.h>

#include <atomic>
#include <cstdint>
#include <memory>
#include <mutex>
#include <string>
#include <utility>
#include <vector>

namespace tsvmm {

// Port accesses a vCPU thread answers without a round trip to JavaScript. Immutable once
// published; JS replaces the whole table (Vm.setFastPorts).
struct FastPortTable {
  int console_out = -1;                              // 1-byte OUTs here are console bytes
  std::vector<std::pair<uint16_t, uint8_t>> reads;   // 1-byte INs answered with a constant

  bool Read(uint16_t port, uint8_t* value) const {
    for (const auto& r : reads) {
      if (r.first == port) {
        *value = r.second;
        return true;
      }
    }
    return false;
  }
};

class VmShared;

// A FastPorts object of vmm/native.ts as a table; throws a JS TypeError/RangeError if malformed.
std::shared_ptr<const FastPortTable> ParseFastPorts(Napi::Env env, Napi::Value ports);

// Context of the console ThreadSafeFunction: keeps VmShared alive until the TSFN is finalized.
struct ConsoleContext {
  std::shared_ptr<VmShared> vm;
  uint64_t generation;
};
void CallJsConsole(Napi::Env env, Napi::Function callback, ConsoleContext* context, void* data);
using ConsoleTsfn = Napi::TypedThreadSafeFunction<ConsoleContext, void, CallJsConsole>;

// What a Vm shares with its vCPU threads. Owned jointly (shared_ptr) by the Vm, its Vcpus and
// the console TSFN, so a vCPU thread never outlives it.
class VmShared : public std::enable_shared_from_this<VmShared> {
 public:
  // Takes a dup of the VM fd, for VM ioctls from any thread (the vCPU threads' UART IRQ line);
  // closed with the last owner, so a vCPU thread never uses a closed fd.
  explicit VmShared(int vm_fd);
  ~VmShared();
  VmShared(const VmShared&) = delete;
  VmShared& operator=(const VmShared&) = delete;

  // ---- interrupts (any thread) ----
  // KVM_IRQ_LINE; returns 0 or the errno.
  int IrqLine(uint32_t irq, uint32_t level) const;
  int vm_fd() const { return vm_fd_; }

  // ---- conversions on vCPU threads (the attributes backend) ----
  // JS thread, before the vCPUs run: keep dups of the guest_memfd (private side) and the memfd
  // (shared side), closed with the last owner, so a vCPU thread can discard the side pages left.
  // Returns 0 or the errno of the dup.
  int ShareMemoryFiles(int private_fd, int shared_fd);
  // The dup of one side's file, or -1 before ShareMemoryFiles.
  int memory_file(bool private_side) const {
    return (private_side ? private_fd_ : shared_fd_).load(std::memory_order_acquire);
  }

  // ---- fast ports (any thread) ----
  // The table and its version. A vCPU thread keeps its copy and compares versions on each fast
  // exit: one atomic load on the hot path, the mutex only when the table changed.
  uint64_t fast_ports_version() const { return fast_ports_version_.load(std::memory_order_acquire); }
  std::pair<std::shared_ptr<const FastPortTable>, uint64_t> LoadFastPorts() const;
  void StoreFastPorts(std::shared_ptr<const FastPortTable> table);

  // ---- console ----
  // Delivery (the "pump"): the first byte after an idle period schedules one NonBlockingCall
  // (the buffer went from empty to non-empty and no delivery is under way). The JS side then
  // takes the whole buffer, hands it to the callback, and looks again kConsolePollMs later; it
  // goes idle when it finds the buffer empty. A guest printing continuously thus wakes the JS
  // thread once per poll instead of once per byte: measured here, waking it per byte doubled
  // the cost of a console exit (14-17 us instead of 6.6 us).
  static constexpr int kConsolePollMs = 1;

  // Any thread: append bytes (a vCPU thread's console OUT).
  void AppendConsole(const uint8_t* data, size_t length);
  // JS thread: take everything buffered (drainConsole).
  std::string TakeConsole();
  // JS thread: install a callback and its TSFN (releasing the previous TSFN).
  void SetConsole(Napi::Env env, ConsoleTsfn tsfn, uint64_t generation, Napi::Function callback);
  uint64_t NextConsoleGeneration();
  // JS thread: release the console TSFN and callback (Vm.close, destructor).
  void ReleaseConsole();
  // JS thread: the TSFN of `generation` was finalized (env teardown or after release).
  void ConsoleFinalized(uint64_t generation);
  // JS thread: deliver what is buffered and poll again, or go idle (TSFN call and poll timer).
  void PumpConsole(Napi::Env env);

 private:
  const int vm_fd_;  // a dup, or -1 if dup failed (IrqLine then returns EBADF)
  std::atomic<int> private_fd_{-1};
  std::atomic<int> shared_fd_{-1};
  mutable std::mutex ports_mu_;
  std::shared_ptr<const FastPortTable> fast_ports_ = std::make_shared<FastPortTable>();
  std::atomic<uint64_t> fast_ports_version_{1};

  std::mutex console_mu_;
  std::string console_buf_;      // guarded by console_mu_
  ConsoleTsfn console_tsfn_;     // guarded by console_mu_; valid iff console_live_
  bool console_live_ = false;    // guarded by console_mu_
  bool pump_active_ = false;     // guarded by console_mu_: a delivery is scheduled or polling
  uint64_t console_generation_ = 0;  // guarded by console_mu_
  Napi::FunctionReference console_callback_;  // JS thread only
  Napi::FunctionReference pump_tick_;         // JS thread only: the poll timer's function
};

// Vm.irqLine and Vcpu.irqLine: KVM_IRQ_LINE(irq, level) from the JS arguments; throws on failure.
void IrqLineOf(const Napi::CallbackInfo& info, const VmShared& vm);
// KVM_SET_MEMORY_ATTRIBUTES on `vm_fd`; returns 0 or the errno (any thread), or throws on failure.
int SetMemoryAttributesErrno(int vm_fd, uint64_t gpa, uint64_t size, uint64_t attributes);
void SetVmMemoryAttributes(Napi::Env env, int vm_fd, uint64_t gpa, uint64_t size, uint64_t attributes);
// Vm.convertMemory and Vcpu.convertMemory(gpa, offset, size, toPrivate, discard), numbers: the
// attribute, then (discard) a punch of [offset, offset + size) of the side's file the pages left
// (VmShared::ShareMemoryFiles); throws on failure.
void ConvertMemoryOf(const Napi::CallbackInfo& info, const VmShared& vm);

class Vm : public Napi::ObjectWrap<Vm> {
 public:
  struct InitArgs {
    int fd;  // ownership moves to the object (set to -1 once taken)
    size_t vcpu_mmap_size;
  };

  static Napi::Function DefineClass(Napi::Env env);
  explicit Vm(const Napi::CallbackInfo& info);
  ~Vm() override;

 private:
  int RequireOpen(Napi::Env env, const char* what) const;

  Napi::Value GetFd(const Napi::CallbackInfo& info);
  Napi::Value CheckExtension(const Napi::CallbackInfo& info);
  Napi::Value EnableCap(const Napi::CallbackInfo& info);
  Napi::Value SetTssAddr(const Napi::CallbackInfo& info);
  Napi::Value SetIdentityMapAddr(const Napi::CallbackInfo& info);
  Napi::Value CreateIrqchip(const Napi::CallbackInfo& info);
  Napi::Value CreatePit2(const Napi::CallbackInfo& info);
  Napi::Value IrqLine(const Napi::CallbackInfo& info);
  Napi::Value CreateGuestMemfd(const Napi::CallbackInfo& info);
  Napi::Value SetUserMemoryRegion2(const Napi::CallbackInfo& info);
  // Several KVM_SET_USER_MEMORY_REGION2 in one call, in order (the memslots backend's re-layout):
  // records of kRegionRecord numbers [slot, guestPhysAddr, memorySize, userspaceAddr, guestMemfd,
  // guestMemfdOffset, createFlags]; guestMemfd -1 = none (a delete when memorySize is 0),
  // kReleasedGuestMemfd = a guest_memfd of memorySize created with createFlags, bound, and closed.
  // Stops at the first failure (the records before it are applied) and throws it.
  Napi::Value SetUserMemoryRegions2(const Napi::CallbackInfo& info);
  static constexpr size_t kRegionRecord = 7;
  static constexpr int kReleasedGuestMemfd = -2;
  Napi::Value SetUserMemoryRegion(const Napi::CallbackInfo& info);
  Napi::Value SetMemoryAttributes(const Napi::CallbackInfo& info);
  Napi::Value ShareMemoryFiles(const Napi::CallbackInfo& info);
  Napi::Value ConvertMemory(const Napi::CallbackInfo& info);
  Napi::Value CreateVcpu(const Napi::CallbackInfo& info);
  Napi::Value SetFastPorts(const Napi::CallbackInfo& info);
  Napi::Value OnConsole(const Napi::CallbackInfo& info);
  Napi::Value DrainConsole(const Napi::CallbackInfo& info);
  Napi::Value Close(const Napi::CallbackInfo& info);

  int fd_ = -1;
  size_t vcpu_mmap_size_ = 0;
  std::shared_ptr<VmShared> shared_;
};

}  // namespace tsvmm
