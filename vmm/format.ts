// Numbers as the run log and error messages show them.

/** 0x-prefixed lower-case hex, as the kernel and abi.h write addresses */
export const hex = (v: bigint | number): string => "0x" + v.toString(16);
