// The Intel MultiProcessor Specification (1.4) table: how a guest without ACPI (Linux booted
// by tsvmm) learns its processors, the ISA bus, the IOAPIC and how ISA IRQs reach it. Written at
// MP_TABLE_GPA in the BIOS area, which the memory map marks reserved.
export const MP_TABLE_GPA = 0xf0000;
const LOCAL_APIC_ADDRESS = 0xfee00000;
const IOAPIC_ADDRESS = 0xfec00000;
const APIC_VERSION = 0x14;
const IOAPIC_VERSION = 0x11;
const ISA_IRQS = 16;

const enum Entry {
  PROCESSOR = 0,
  BUS = 1,
  IOAPIC = 2,
  IO_INTERRUPT = 3,
  LOCAL_INTERRUPT = 4,
}
const INT = 0;
const NMI = 1;
const EXTINT = 3;

function checksum(b: Buffer): number {
  return (0x100 - (b.reduce((s, x) => s + x, 0) & 0xff)) & 0xff;
}

/** The floating pointer and the configuration table for `cpus` processors (APIC ids 0..cpus-1).
 *  The processor entries leave the CPU signature and feature flags 0: guests read CPUID. */
export function mpTable(cpus: number): { gpa: number; data: Buffer } {
  const ioapicId = cpus;
  const entries: Buffer[] = [];
  for (let i = 0; i < cpus; i++) {
    const e = Buffer.alloc(20);
    e[0] = Entry.PROCESSOR;
    e[1] = i;
    e[2] = APIC_VERSION;
    e[3] = 0x01 | (i === 0 ? 0x02 : 0); // enabled, boot processor
    entries.push(e);
  }
  const bus = Buffer.alloc(8);
  bus[0] = Entry.BUS;
  bus.write("ISA   ", 2, "latin1");
  entries.push(bus);
  const ioapic = Buffer.alloc(8);
  ioapic[0] = Entry.IOAPIC;
  ioapic[1] = ioapicId;
  ioapic[2] = IOAPIC_VERSION;
  ioapic[3] = 0x01;
  ioapic.writeUInt32LE(IOAPIC_ADDRESS, 4);
  entries.push(ioapic);
  // ISA IRQ n reaches IOAPIC pin n (KVM's default routing); polarity and trigger as the bus says.
  for (let irq = 0; irq < ISA_IRQS; irq++) entries.push(Buffer.from([Entry.IO_INTERRUPT, INT, 0, 0, 0, irq, ioapicId, irq]));
  entries.push(Buffer.from([Entry.LOCAL_INTERRUPT, EXTINT, 0, 0, 0, 0, 0xff, 0])); // the PIC on LINT0
  entries.push(Buffer.from([Entry.LOCAL_INTERRUPT, NMI, 0, 0, 0, 0, 0xff, 1]));

  const body = Buffer.concat(entries);
  const header = Buffer.alloc(44);
  header.write("PCMP", 0, "latin1");
  header.writeUInt16LE(44 + body.length, 4);
  header[6] = 4; // spec revision 1.4
  header.write("TSVMM   ", 8, "latin1");
  header.write("PC PLATFORM ", 16, "latin1");
  header.writeUInt16LE(entries.length, 34);
  header.writeUInt32LE(LOCAL_APIC_ADDRESS, 36);
  const table = Buffer.concat([header, body]);
  table[7] = checksum(table);

  const pointer = Buffer.alloc(16);
  pointer.write("_MP_", 0, "latin1");
  pointer.writeUInt32LE(MP_TABLE_GPA + 16, 4);
  pointer[8] = 1; // length in 16-byte units
  pointer[9] = 4;
  pointer[10] = checksum(pointer);
  return { gpa: MP_TABLE_GPA, data: Buffer.concat([pointer, table]) };
}
