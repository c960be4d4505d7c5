// GDB remote serial protocol framing: `$payload#cs` packets, acknowledgements, Ctrl-C.
// Pure byte handling, no sockets. Received packets are unescaped (`}` xor 0x20) and run-length
// expanded (`*n`), so callers see the payload gdb meant; sent packets escape `$ # } *`.

export type FrameItem =
  | { kind: "packet"; payload: Buffer }
  /** a packet whose checksum did not match: answer with a NAK ("-") and gdb retransmits */
  | { kind: "bad-checksum"; payload: Buffer; expected: number; got: string }
  | { kind: "ack" }
  | { kind: "nak" }
  /** Ctrl-C (0x03) outside a packet: pause the target */
  | { kind: "interrupt" };

export function checksum(bytes: Uint8Array): number {
  let sum = 0;
  for (const b of bytes) sum = (sum + b) & 0xff;
  return sum;
}

const ESCAPE = 0x7d; // }
const RLE = 0x2a; // *
const MUST_ESCAPE = new Set([0x23 /* # */, 0x24 /* $ */, ESCAPE, RLE]);

/** `$payload#cs` with the protocol's escaping. */
export function encodePacket(payload: string | Uint8Array): Buffer {
  const raw = typeof payload === "string" ? Buffer.from(payload, "latin1") : payload;
  const body: number[] = [];
  for (const b of raw) {
    if (MUST_ESCAPE.has(b)) body.push(ESCAPE, b ^ 0x20);
    else body.push(b);
  }
  const bytes = Buffer.from(body);
  return Buffer.concat([Buffer.from("$"), bytes, Buffer.from("#" + checksum(bytes).toString(16).padStart(2, "0"))]);
}

/** Undo `}` escaping and expand `X*n` run-length encoding (n = byte - 29 more copies). */
export function decodePayload(raw: Uint8Array): Buffer {
  const out: number[] = [];
  for (let i = 0; i < raw.length; i++) {
    const b = raw[i];
    if (b === ESCAPE && i + 1 < raw.length) out.push(raw[++i] ^ 0x20);
    else if (b === RLE && out.length > 0 && i + 1 < raw.length) {
      const repeat = raw[++i] - 29;
      const last = out[out.length - 1];
      for (let k = 0; k < repeat; k++) out.push(last);
    } else out.push(b);
  }
  return Buffer.from(out);
}

/** Incremental reader: feed() whatever the socket delivered, get the complete items back. */
export class PacketReader {
  private state: "idle" | "body" | "sum1" | "sum2" = "idle";
  private body: number[] = [];
  private sum = "";
  /** Longest payload accepted; a longer one is dropped as garbage (and NAKed). */
  constructor(private readonly maxPayload = 1 << 20) {}

  feed(chunk: Uint8Array): FrameItem[] {
    const items: FrameItem[] = [];
    for (const b of chunk) {
      switch (this.state) {
        case "idle":
          if (b === 0x24) {
            this.state = "body";
            this.body = [];
          } else if (b === 0x2b) items.push({ kind: "ack" });
          else if (b === 0x2d) items.push({ kind: "nak" });
          else if (b === 0x03) items.push({ kind: "interrupt" });
          // anything else between packets is line noise: ignored, as gdbserver does
          break;
        case "body":
          if (b === 0x23) this.state = "sum1";
          else if (b === 0x24) this.body = []; // a new start: the previous packet was cut off
          else if (this.body.length >= this.maxPayload) {
            this.state = "idle";
            items.push({ kind: "bad-checksum", payload: Buffer.alloc(0), expected: -1, got: "(packet too long)" });
          } else this.body.push(b);
          break;
        case "sum1":
          this.sum = String.fromCharCode(b);
          this.state = "sum2";
          break;
        case "sum2": {
          this.sum += String.fromCharCode(b);
          this.state = "idle";
          const raw = Buffer.from(this.body);
          const expected = checksum(raw);
          const got = /^[0-9a-fA-F]{2}$/.test(this.sum) ? parseInt(this.sum, 16) : -1;
          if (got === expected) items.push({ kind: "packet", payload: decodePayload(raw) });
          else items.push({ kind: "bad-checksum", payload: raw, expected, got: this.sum });
          break;
        }
      }
    }
    return items;
  }
}

export const toHex = (bytes: Uint8Array): string => Buffer.from(bytes).toString("hex");

/** Hex digits to bytes; undefined for odd length or a non-hex character. */
export function fromHex(text: string): Buffer | undefined {
  if (text.length % 2 !== 0 || !/^[0-9a-fA-F]*$/.test(text)) return undefined;
  return Buffer.from(text, "hex");
}
