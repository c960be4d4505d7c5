/*
 * Private/shared conversion requests: KVM_HC_MAP_GPA_RANGE sent the way boot_info.convert_method
 * says (vmcall, vmmcall, or a 32-bit `out` to convert_port with the same registers).
 * RAX = 12, RBX = gpa, RCX = 4 KiB pages, RDX = attrs (TSVMM_MAP_GPA_* in abi.h).
 * Returns the VMM's RAX: 0 or a positive errno; TSVMM_ENOSYS if there is no method.
 *
 * Never call this on a host whose KVM does not deliver hypercalls to userspace (the PVM
 * development machines): there a vmcall/vmmcall spins in the kernel forever. tsvmm offers no
 * private memory there (backend shared, convert_method NONE), and the guests that convert
 * (convert, smp-convert) skip themselves when it does not.
 */
#ifndef TSVMM_CONVERT_H
#define TSVMM_CONVERT_H

#include <stdint.h>

#define TSVMM_ENOSYS 38

long tsvmm_map_gpa_range(uint64_t gpa, uint64_t pages, uint64_t attrs);

#endif
