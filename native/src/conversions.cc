#include "conversions.h"

#include <linux/futex.h>
#include <sys/syscall.h>
#include <time.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>
#include <string>

#include "errors.h"
#include "mapped_file.h"

namespace tsvmm {

namespace {

// The page-state map's header (vmm/memory/pageState.ts): Int32 words, then a byte per page.
constexpr size_t kHeaderBytes = 8;
// The lock word's values there: JavaScript's three, and kNativeWaiters: held, and a run loop
// sleeps in futex_wait for it (JavaScript's lock() and unlock() treat it as held).
constexpr int32_t kFree = 0, kHeld = 1, kContended = 2, kNativeWaiters = 3;
// A run loop that finds the lock held sleeps at most kWaitSliceNs at a time (a JavaScript unlock()
// wakes Atomics.wait's waiters only) and gives the exit to JavaScript after kWaitLimitNs.
constexpr int64_t kWaitSliceNs = 200 * 1000, kWaitLimitNs = 20 * 1000 * 1000;
constexpr uint64_t kPage = 4096;
// KVM_HC_MAP_GPA_RANGE's attributes: bits 3:0 the page size (0 4K, 1 2M, 2 1G), bit 4 encrypted.
constexpr uint64_t kHcMapGpaRange = 12;
constexpr uint64_t kValidAttrs = 0x1f, kEncrypted = 0x10;
// Index of each tally cell in the plan's `cells`
enum Cell { kHypercallToPrivate, kHypercallToShared, kDoorbellToPrivate, kDoorbellToShared, kConversions, kDiscarded, kOnVcpuThread };

template <typename T>
T* TypedData(Napi::Env env, Napi::Object plan, const char* key, napi_typedarray_type type, size_t* length,
             Napi::ObjectReference* keep) {
  Napi::Value v = plan.Get(key);
  if (!v.IsTypedArray() || v.As<Napi::TypedArray>().TypedArrayType() != type)
    ThrowTypeError(env, std::string("answerConversions: plan.") + key + " has the wrong type");
  // napi_get_typedarray_info, not Napi::TypedArray::ArrayBuffer(): N-API's ArrayBuffer calls
  // refuse a SharedArrayBuffer (EINVAL), while the typed array's own data pointer is its memory.
  void* data = nullptr;
  if (napi_get_typedarray_info(env, v, nullptr, length, &data, nullptr, nullptr) != napi_ok || data == nullptr)
    ThrowTypeError(env, std::string("answerConversions: plan.") + key + " has no memory");
  *keep = Napi::Persistent(v.As<Napi::Object>());
  // SAFETY: the array's buffer is a SharedArrayBuffer, never detached or resized; `keep` holds it
  // (and so its memory) for as long as this object lives.
  return static_cast<T*>(data);
}

uint64_t WholeNumber(Napi::Env env, Napi::Object plan, const char* key) {
  int64_t v = IntOf(env, plan.Get(key), key);
  if (v < 0) ThrowRangeError(env, std::string("answerConversions: plan.") + key + " must not be negative");
  return static_cast<uint64_t>(v);
}

}  // namespace

QuietConversions::QuietConversions(Napi::Env env, Napi::Object plan) {
  size_t map_bytes = 0, allowed_len = 0, tally_len = 0, cells_len = 0;
  Napi::ObjectReference cells_ref;
  auto* map = TypedData<uint8_t>(env, plan, "map", napi_uint8_array, &map_bytes, &map_ref_);
  allowed_ = TypedData<int32_t>(env, plan, "allowed", napi_int32_array, &allowed_len, &allowed_ref_);
  tally_ = TypedData<double>(env, plan, "tally", napi_float64_array, &tally_len, &tally_ref_);
  const int32_t* cells = TypedData<int32_t>(env, plan, "cells", napi_int32_array, &cells_len, &cells_ref);
  if (map_bytes <= kHeaderBytes || reinterpret_cast<uintptr_t>(map) % 4 != 0)
    ThrowRangeError(env, "answerConversions: plan.map must be a whole page-state map (PageStateMap.buffer)");
  if (allowed_len < 1) ThrowRangeError(env, "answerConversions: plan.allowed is empty");
  if (cells_len != 7) ThrowRangeError(env, "answerConversions: plan.cells must name 7 tally cells");
  for (size_t i = 0; i < 7; i++) {
    if (cells[i] < 0 || static_cast<size_t>(cells[i]) >= tally_len) ThrowRangeError(env, "answerConversions: plan.cells names a cell outside plan.tally");
    cells_[i] = static_cast<uint32_t>(cells[i]);
  }
  lock_word_ = reinterpret_cast<int32_t*>(map);
  private_count_ = reinterpret_cast<int32_t*>(map) + 1;
  pages_ = map + kHeaderBytes;
  page_count_ = map_bytes - kHeaderBytes;
  base_ = WholeNumber(env, plan, "base");
  shared_limit_ = WholeNumber(env, plan, "sharedLimit");
  doorbell_port_ = static_cast<uint16_t>(WholeNumber(env, plan, "doorbellPort"));
  discard_ = plan.Get("discard").ToBoolean();
}

QuietConversions::Outcome QuietConversions::Answer(kvm_run* run, const VmShared& vm) {
  // The machine clears it whenever someone listens (JavaScript's Atomics.store: seq_cst).
  if (__atomic_load_n(allowed_, __ATOMIC_SEQ_CST) == 0) return Outcome::kNotOurs;
  uint64_t nr, gpa, pages, attrs;
  const bool doorbell = run->exit_reason == KVM_EXIT_IO;
  if (run->exit_reason == KVM_EXIT_HYPERCALL) {
    nr = run->hypercall.nr;
    gpa = run->hypercall.args[0];
    pages = run->hypercall.args[1];
    attrs = run->hypercall.args[2];
  } else if (doorbell && run->io.direction == KVM_EXIT_IO_OUT && run->io.port == doorbell_port_ && run->io.size == 4 &&
             run->io.count == 1 && (run->kvm_valid_regs & KVM_SYNC_X86_REGS)) {
    const kvm_regs& r = run->s.regs.regs;
    nr = r.rax;
    gpa = r.rbx;
    pages = r.rcx;
    attrs = r.rdx;
  } else {
    return Outcome::kNotOurs;
  }
  // firstPageOf and checkRequest (vmm/memory): a request they would refuse goes to JavaScript,
  // which refuses it with its reason.
  const uint64_t end = base_ + page_count_ * kPage;
  if (nr != kHcMapGpaRange || attrs > kValidAttrs || (attrs & 0xf) > 2 || pages == 0 || gpa % kPage != 0 || gpa < base_ ||
      gpa >= end || pages > (end - gpa) / kPage)
    return Outcome::kNotOurs;
  const bool to_private = (attrs & kEncrypted) != 0;
  if (to_private && gpa < shared_limit_) return Outcome::kNotOurs;

  if (!Lock(run)) return Outcome::kNotOurs;
  uint64_t changed = 0;
  const bool ok = Convert((gpa - base_) / kPage, pages, to_private, vm, &changed);
  const bool wake = Unlock();
  if (!ok) return Outcome::kNotOurs;
  // Only this thread writes its tally row (counters.ts): JavaScript and this code take turns.
  tally_[cells_[doorbell ? (to_private ? kDoorbellToPrivate : kDoorbellToShared)
                         : (to_private ? kHypercallToPrivate : kHypercallToShared)]] += 1;
  if (changed) {
    tally_[cells_[kConversions]] += 1;
    if (discard_) tally_[cells_[kDiscarded]] += static_cast<double>(changed * kPage);
  }
  tally_[cells_[kOnVcpuThread]] += 1;
  if (doorbell) {
    run->s.regs.regs.rax = 0;
    run->kvm_dirty_regs |= KVM_SYNC_X86_REGS;
  } else {
    run->hypercall.ret = 0;
  }
  return wake ? Outcome::kAnsweredWake : Outcome::kAnswered;
}

// PageStateMap.set and the backend's apply (vmm/memory/attributes.ts) for each run of pages that
// changes: the attribute over the run, and (discard) a punch of the file the pages left. The map is
// written once every run is applied; after a failure it stays as it was (KVM keeps the runs it was
// told, as when JavaScript's apply fails; JavaScript then converts again and reports the failure).
bool QuietConversions::Convert(uint64_t first, uint64_t count, bool to_private, const VmShared& vm, uint64_t* changed) {
  const uint8_t want = to_private ? 1 : 0;
  uint8_t* const from = pages_ + first;
  uint8_t* const to = from + count;
  const int leaving = vm.memory_file(!to_private);
  for (uint8_t* p = from; p < to;) {
    if (*p == want) {
      p++;
      continue;
    }
    uint8_t* run_end = p;
    while (run_end < to && *run_end != want) run_end++;
    const uint64_t offset = (p - pages_) * kPage;
    const uint64_t size = (run_end - p) * kPage;
    int err = SetMemoryAttributesErrno(vm.vm_fd(), base_ + offset, size, to_private ? KVM_MEMORY_ATTRIBUTE_PRIVATE : 0);
    if (!err && discard_) err = leaving < 0 ? EBADF : FallocateErrno(leaving, true, offset, size);
    if (err) return false;
    *changed += run_end - p;
    p = run_end;
  }
  if (*changed) {
    std::memset(from, want, count);
    const int64_t delta = to_private ? static_cast<int64_t>(*changed) : -static_cast<int64_t>(*changed);
    __atomic_fetch_add(private_count_, static_cast<int32_t>(delta), __ATOMIC_SEQ_CST);
  }
  return true;
}

namespace {

int64_t MonotonicNs() {
  timespec t;
  clock_gettime(CLOCK_MONOTONIC, &t);
  return t.tv_sec * 1000000000LL + t.tv_nsec;
}

}  // namespace

// The map's lock, shared with JavaScript's PageStateMap.lock()/unlock() (Atomics on the same word).
// A held lock is waited for here, in futex_wait slices, while nothing asks the vCPU out of KVM_RUN:
// a pause or stop (immediate_exit, and the kick signal ends the futex_wait) or a long wait gives the
// exit to JavaScript, which waits in Atomics.wait outside KVM_RUN as before.
bool QuietConversions::Lock(kvm_run* run) {
  int32_t c = kFree;
  if (__atomic_compare_exchange_n(lock_word_, &c, kHeld, false, __ATOMIC_SEQ_CST, __ATOMIC_SEQ_CST)) return true;
  const int64_t give_up = MonotonicNs() + kWaitLimitNs;
  for (;;) {
    if (__atomic_load_n(&run->immediate_exit, __ATOMIC_SEQ_CST)) return false;
    c = __atomic_load_n(lock_word_, __ATOMIC_SEQ_CST);
    if (c == kFree) {
      // Taken as kNativeWaiters: other run loops may be asleep on it, and the release wakes one.
      if (__atomic_compare_exchange_n(lock_word_, &c, kNativeWaiters, false, __ATOMIC_SEQ_CST, __ATOMIC_SEQ_CST)) return true;
      continue;
    }
    // Mark it (kContended, JavaScript's mark, stays: its waiters must be woken too).
    if (c == kHeld) {
      if (!__atomic_compare_exchange_n(lock_word_, &c, kNativeWaiters, false, __ATOMIC_SEQ_CST, __ATOMIC_SEQ_CST)) continue;
      c = kNativeWaiters;
    }
    timespec slice{0, kWaitSliceNs};
    syscall(SYS_futex, lock_word_, FUTEX_WAIT_PRIVATE, c, &slice, nullptr, 0);  // EAGAIN, EINTR, ETIMEDOUT: look again
    if (MonotonicNs() > give_up) return false;
  }
}

// Returns whether a JavaScript thread waits in Atomics.wait: native code cannot wake it, so the
// run loop returns kRunAnsweredWake for the vCPU thread to call Atomics.notify (after a failure,
// the exit goes to JavaScript, which wakes one waiter before it converts again).
bool QuietConversions::Unlock() {
  const int32_t was = __atomic_exchange_n(lock_word_, kFree, __ATOMIC_SEQ_CST);
  if (was == kNativeWaiters || was == kContended) syscall(SYS_futex, lock_word_, FUTEX_WAKE_PRIVATE, 1, nullptr, nullptr, 0);
  return was == kContended;
}

}  // namespace tsvmm
