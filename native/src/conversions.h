// Conversions answered inside the run loop (the attributes backend, nobody listening): the guest's
// KVM_HC_MAP_GPA_RANGE, by hypercall or by the port doorbell, converted with no return to
// JavaScript. TypeScript sets the policy (Vcpu.answerConversions: which RAM, the always-shared
// limit, discard, a flag it clears whenever someone listens) and owns the state this writes: the
// page-state map and the tally row are its SharedArrayBuffers (vmm/memory/pageState.ts,
// counters.ts). Anything but a plain accepted request goes back to JavaScript untouched, which
// answers it as before (refusals and their reasons, failures, a lock held past a pause or 20 ms).
#pragma once

#include <napi.h>

#include <cstdint>

#include "kvm_uapi.h"
#include "vm.h"

namespace tsvmm {

class QuietConversions {
 public:
  // What Answer did with an exit
  enum class Outcome {
    kNotOurs,      // not a request this path answers: JavaScript gets the exit as it is
    kAnswered,     // converted (or nothing to change) and answered: re-enter the guest
    kAnsweredWake, // the same, and a JavaScript thread waits for the map's lock: wake it first
  };

  // From the plan object of vmm/native.ts (NativeConversionPlan); throws a JS error if malformed.
  QuietConversions(Napi::Env env, Napi::Object plan);

  // R (the runner), right after KVM_RUN returned an exit, nothing else touching kvm_run.
  Outcome Answer(kvm_run* run, const VmShared& vm);

 private:
  bool Lock(kvm_run* run);
  bool Unlock();  // true: a JavaScript thread waits for the lock
  bool Convert(uint64_t first, uint64_t count, bool to_private, const VmShared& vm, uint64_t* changed);

  // References keep the SharedArrayBuffers (and so the pointers below) alive.
  Napi::ObjectReference map_ref_, allowed_ref_, tally_ref_;
  int32_t* lock_word_ = nullptr;
  int32_t* private_count_ = nullptr;
  uint8_t* pages_ = nullptr;
  uint64_t page_count_ = 0;
  const int32_t* allowed_ = nullptr;
  double* tally_ = nullptr;
  uint32_t cells_[7] = {};
  uint64_t base_ = 0, shared_limit_ = 0;
  uint16_t doorbell_port_ = 0;
  bool discard_ = false;
};

}  // namespace tsvmm
