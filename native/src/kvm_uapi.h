// The KVM uAPI tsvmm uses. <linux/kvm.h> on the build machines is Linux 6.1; everything added
// since (guest_memfd, memslots v2, memory attributes, the memory-fault exit, new caps) is defined
// here, with the numbers and layouts of the kernel's include/uapi/linux/kvm.h in 7.3. Every definition is guarded so newer system headers win, and
// every layout is pinned with static_asserts so a mismatch fails the build, not the guest.
#pragma once

#include <linux/kvm.h>

#include <cerrno>
#include <cstddef>
#include <cstdint>

// ---- capabilities (KVM_CHECK_EXTENSION) --------------------------------------------------------
#ifndef KVM_CAP_USER_MEMORY2
#define KVM_CAP_USER_MEMORY2 231
#endif
#ifndef KVM_CAP_MEMORY_FAULT_INFO
#define KVM_CAP_MEMORY_FAULT_INFO 232
#endif
#ifndef KVM_CAP_MEMORY_ATTRIBUTES
#define KVM_CAP_MEMORY_ATTRIBUTES 233
#endif
#ifndef KVM_CAP_GUEST_MEMFD
#define KVM_CAP_GUEST_MEMFD 234
#endif
#ifndef KVM_CAP_VM_TYPES
#define KVM_CAP_VM_TYPES 235
#endif
#ifndef KVM_CAP_PRE_FAULT_MEMORY
#define KVM_CAP_PRE_FAULT_MEMORY 236
#endif
#ifndef KVM_CAP_GUEST_MEMFD_FLAGS
#define KVM_CAP_GUEST_MEMFD_FLAGS 244
#endif

// ---- KVM_PRE_FAULT_MEMORY (vCPU ioctl, 6.11+; KVM_CAP_PRE_FAULT_MEMORY) ---------------------------
#ifndef KVM_PRE_FAULT_MEMORY
struct kvm_pre_fault_memory {
  __u64 gpa;
  __u64 size;
  __u64 flags;
  __u64 padding[5];
};
#define KVM_PRE_FAULT_MEMORY _IOWR(KVMIO, 0xd5, struct kvm_pre_fault_memory)
#endif

// ---- VM types (KVM_CREATE_VM argument on x86) ------------------------------------------------
#ifndef KVM_X86_DEFAULT_VM
#define KVM_X86_DEFAULT_VM 0
#define KVM_X86_SW_PROTECTED_VM 1
#define KVM_X86_SEV_VM 2
#define KVM_X86_SEV_ES_VM 3
#define KVM_X86_SNP_VM 4
#define KVM_X86_TDX_VM 5
#endif

// ---- guest_memfd ------------------------------------------------------------------------------
#ifndef KVM_CREATE_GUEST_MEMFD
struct kvm_create_guest_memfd {
  __u64 size;
  __u64 flags;
  __u64 reserved[6];
};
#define KVM_CREATE_GUEST_MEMFD _IOWR(KVMIO, 0xd4, struct kvm_create_guest_memfd)
#endif
#ifndef GUEST_MEMFD_FLAG_MMAP
#define GUEST_MEMFD_FLAG_MMAP (1ULL << 0)
#endif
#ifndef GUEST_MEMFD_FLAG_INIT_SHARED
#define GUEST_MEMFD_FLAG_INIT_SHARED (1ULL << 1)
#endif

// ---- memslots v2 ------------------------------------------------------------------------------
#ifndef KVM_SET_USER_MEMORY_REGION2
struct kvm_userspace_memory_region2 {
  __u32 slot;
  __u32 flags;
  __u64 guest_phys_addr;
  __u64 memory_size;
  __u64 userspace_addr;
  __u64 guest_memfd_offset;
  __u32 guest_memfd;
  __u32 pad1;
  __u64 pad2[14];
};
#define KVM_SET_USER_MEMORY_REGION2 _IOW(KVMIO, 0x49, struct kvm_userspace_memory_region2)
#endif
#ifndef KVM_MEM_GUEST_MEMFD
#define KVM_MEM_GUEST_MEMFD (1UL << 2)
#endif

// ---- memory attributes ------------------------------------------------------------------------
#ifndef KVM_SET_MEMORY_ATTRIBUTES
struct kvm_memory_attributes {
  __u64 address;
  __u64 size;
  __u64 attributes;
  __u64 flags;
};
#define KVM_SET_MEMORY_ATTRIBUTES _IOW(KVMIO, 0xd2, struct kvm_memory_attributes)
#endif
#ifndef KVM_MEMORY_ATTRIBUTE_PRIVATE
#define KVM_MEMORY_ATTRIBUTE_PRIVATE (1ULL << 3)
#endif

// ---- KVM_EXIT_MEMORY_FAULT --------------------------------------------------------------------
// The only exit that comes with KVM_RUN == -1: valid iff errno is EFAULT or EHWPOISON and
// exit_reason == KVM_EXIT_MEMORY_FAULT. The 6.1 struct kvm_run has no `memory_fault` member, so
// this is its layout inside the exit union (kvm_run offset 32); JavaScript reads it from `run`.
#ifndef KVM_EXIT_MEMORY_FAULT
#define KVM_EXIT_MEMORY_FAULT 39
#endif
#ifndef KVM_MEMORY_EXIT_FLAG_PRIVATE
#define KVM_MEMORY_EXIT_FLAG_PRIVATE (1ULL << 3)
#endif
struct tsvmm_kvm_memory_fault_exit {
  __u64 flags;
  __u64 gpa;
  __u64 size;
};

#ifndef EHWPOISON
#define EHWPOISON 133
#endif

namespace tsvmm {

// The ioctl numbers the reference gives, so a wrong struct above cannot go unnoticed.
static_assert(KVM_CREATE_GUEST_MEMFD == 0xc040aed4UL, "KVM_CREATE_GUEST_MEMFD");
static_assert(KVM_SET_USER_MEMORY_REGION2 == 0x40a0ae49UL, "KVM_SET_USER_MEMORY_REGION2");
static_assert(KVM_SET_USER_MEMORY_REGION == 0x4020ae46UL, "KVM_SET_USER_MEMORY_REGION");
static_assert(KVM_SET_MEMORY_ATTRIBUTES == 0x4020aed2UL, "KVM_SET_MEMORY_ATTRIBUTES");
static_assert(KVM_PRE_FAULT_MEMORY == 0xc040aed5UL, "KVM_PRE_FAULT_MEMORY");
static_assert(sizeof(kvm_pre_fault_memory) == 64, "kvm_pre_fault_memory");

static_assert(sizeof(kvm_create_guest_memfd) == 64, "kvm_create_guest_memfd");
static_assert(sizeof(kvm_userspace_memory_region2) == 160, "kvm_userspace_memory_region2");
static_assert(offsetof(kvm_userspace_memory_region2, guest_memfd) == 40, "region2.guest_memfd");
static_assert(sizeof(kvm_memory_attributes) == 32, "kvm_memory_attributes");

// The layouts JavaScript relies on (vmm/native.ts: structs cross as raw bytes).
static_assert(sizeof(kvm_regs) == 144, "kvm_regs");
static_assert(sizeof(kvm_sregs) == 312, "kvm_sregs");
static_assert(sizeof(kvm_cpuid_entry2) == 40, "kvm_cpuid_entry2");
// struct kvm_cpuid2 { __u32 nent; __u32 padding; struct kvm_cpuid_entry2 entries[]; }: the
// entries start at byte 8. Do NOT use kvm_cpuid2::entries from C++: the 6.1 header declares it
// with __DECLARE_FLEX_ARRAY, whose empty struct has size 1 in C++, which moves `entries` to
// offset 12. tsvmm builds the struct as raw bytes (Cpuid2Buffer).
constexpr size_t kCpuid2HeaderSize = 8;
// The same C++ quirk changes the size encoded in ioctl numbers built from sizeof(kvm_cpuid2)
// (12 instead of 8), so <linux/kvm.h>'s KVM_GET_SUPPORTED_CPUID and KVM_SET_CPUID2 are wrong in
// C++ (the kernel answers EINVAL). These are the C values.
constexpr unsigned long kKvmGetSupportedCpuid = 0xc008ae05UL;  // _IOWR(KVMIO, 0x05, 8 bytes)
constexpr unsigned long kKvmSetCpuid2 = 0x4008ae90UL;          // _IOW(KVMIO, 0x90, 8 bytes)
static_assert(kKvmGetSupportedCpuid == _IOC(_IOC_READ | _IOC_WRITE, KVMIO, 0x05, kCpuid2HeaderSize), "");
static_assert(kKvmSetCpuid2 == _IOC(_IOC_WRITE, KVMIO, 0x90, kCpuid2HeaderSize), "");
// struct kvm_msrs has the same flexible array (entries of 16 bytes after an 8-byte header).
constexpr unsigned long kKvmSetMsrs = 0x4008ae89UL;  // _IOW(KVMIO, 0x89, 8 bytes)
static_assert(kKvmSetMsrs == _IOC(_IOC_WRITE, KVMIO, 0x89, 8), "");
static_assert(sizeof(kvm_msr_entry) == 16, "kvm_msr_entry");

// Every other ioctl tsvmm issues, against the numbers a C compiler produces.
static_assert(KVM_GET_API_VERSION == 0xae00UL, "");
static_assert(KVM_CREATE_VM == 0xae01UL, "");
static_assert(KVM_CHECK_EXTENSION == 0xae03UL, "");
static_assert(KVM_GET_VCPU_MMAP_SIZE == 0xae04UL, "");
static_assert(KVM_CREATE_VCPU == 0xae41UL, "");
static_assert(KVM_SET_TSS_ADDR == 0xae47UL, "");
static_assert(KVM_SET_IDENTITY_MAP_ADDR == 0x4008ae48UL, "");
static_assert(KVM_RUN == 0xae80UL, "");
static_assert(KVM_CREATE_IRQCHIP == 0xae60UL, "");
static_assert(KVM_IRQ_LINE == 0x4008ae61UL, "");
static_assert(KVM_CREATE_PIT2 == 0x4040ae77UL, "");
static_assert(KVM_GET_MP_STATE == 0x8004ae98UL, "");
static_assert(KVM_SET_MP_STATE == 0x4004ae99UL, "");
static_assert(KVM_GET_REGS == 0x8090ae81UL, "");
static_assert(KVM_SET_REGS == 0x4090ae82UL, "");
static_assert(KVM_GET_SREGS == 0x8138ae83UL, "");
static_assert(KVM_SET_SREGS == 0x4138ae84UL, "");
static_assert(KVM_ENABLE_CAP == 0x4068aea3UL, "");
static_assert(sizeof(kvm_enable_cap) == 104, "kvm_enable_cap");
static_assert(offsetof(kvm_run, immediate_exit) == 1, "kvm_run.immediate_exit");
static_assert(offsetof(kvm_run, exit_reason) == 8, "kvm_run.exit_reason");
static_assert(offsetof(kvm_run, io) == 32, "kvm_run exit union");
static_assert(offsetof(kvm_run, io.data_offset) == 40, "kvm_run.io.data_offset");
static_assert(offsetof(kvm_run, kvm_valid_regs) == 288, "kvm_run.kvm_valid_regs");
static_assert(sizeof(kvm_run) == 2352, "kvm_run (x86)");

}  // namespace tsvmm
