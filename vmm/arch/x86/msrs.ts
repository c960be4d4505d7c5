// MSR values a PC guest expects from its firmware: fast string operations enabled, and MTRRs
// enabled with write-back as the default type (with MTRRs off a guest treats all RAM as uncached).
export const MSR_IA32_MISC_ENABLE = 0x1a0;
export const MSR_MTRR_DEF_TYPE = 0x2ff;
const MISC_ENABLE_FAST_STRING = 1n;
const MTRR_ENABLE = 1n << 11n;
const MTRR_TYPE_WRBACK = 6n;

export function pcMsrDefaults(): Array<{ index: number; value: bigint }> {
  return [
    { index: MSR_IA32_MISC_ENABLE, value: MISC_ENABLE_FAST_STRING },
    { index: MSR_MTRR_DEF_TYPE, value: MTRR_ENABLE | MTRR_TYPE_WRBACK },
  ];
}
