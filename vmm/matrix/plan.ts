// A test matrix: every combination of guest, memory backend, vCPU count and command line, each
// repeated, as a list of entries in a fixed order (guest outermost, repetition innermost). Pure.
import { UsageError } from "../errors";
import type { PrivateRequest } from "../memory/policy";

/** How an entry's RAM is made: `default` is what `tsvmm run GUEST` does for that guest (private
 *  memory for guests that convert), `shared` has no private memory, `attributes` and `memslots`
 *  make RAM private with that backend. */
export const MATRIX_BACKENDS = ["default", "shared", "attributes", "memslots"] as const;
export type MatrixBackend = (typeof MATRIX_BACKENDS)[number];

export interface MatrixAxes {
  guests: string[];
  backends: MatrixBackend[];
  cpus: number[];
  cmdlines: string[];
  repeat: number;
}

export interface MatrixEntry {
  /** Position in the matrix, from 0 */
  index: number;
  /** Unique, readable: the guest, then every axis the user chose ("smp cpus=2"), "rep=3" when repeated */
  name: string;
  guest: string;
  backend: MatrixBackend;
  cpus: number;
  cmdline: string;
  /** 1..repeat */
  rep: number;
}

export const DEFAULT_AXES: Omit<MatrixAxes, "guests"> = { backends: ["default"], cpus: [1], cmdlines: [""], repeat: 1 };

/** Every combination, in order. Axes the user did not set (their default alone) stay out of the names. */
export function expandMatrix(axes: MatrixAxes): MatrixEntry[] {
  // a name must say which entry it is
  for (const [what, list] of [["guest list", axes.guests], ["command-line list", axes.cmdlines]] as const) {
    const twice = list.find((v, i) => list.indexOf(v) !== i);
    if (twice !== undefined)
      throw new UsageError(`the ${what} names ${JSON.stringify(twice)} twice`, `name each once; to boot every entry several times, add --repeat N`);
  }
  const named = {
    backend: !sameList(axes.backends, DEFAULT_AXES.backends),
    cpus: !sameList(axes.cpus, DEFAULT_AXES.cpus),
    cmdline: !sameList(axes.cmdlines, DEFAULT_AXES.cmdlines),
  };
  const entries: MatrixEntry[] = [];
  for (const guest of axes.guests)
    for (const backend of axes.backends)
      for (const cpus of axes.cpus)
        for (const cmdline of axes.cmdlines)
          for (let rep = 1; rep <= axes.repeat; rep++) {
            const parts = [guest];
            if (named.backend) parts.push(`backend=${backend}`);
            if (named.cpus) parts.push(`cpus=${cpus}`);
            if (named.cmdline) parts.push(`cmdline=${/^[^\s"]*$/.test(cmdline) && cmdline ? cmdline : JSON.stringify(cmdline)}`);
            if (axes.repeat > 1) parts.push(`rep=${rep}`);
            entries.push({ index: entries.length, name: parts.join(" "), guest, backend, cpus, cmdline, rep });
          }
  return entries;
}

const sameList = <T>(a: readonly T[], b: readonly T[]) => a.length === b.length && a.every((v, i) => v === b[i]);

/** The private-memory request that runs an entry with its backend */
export function privateRequestFor(backend: MatrixBackend): PrivateRequest {
  switch (backend) {
    case "default":
      return {};
    case "shared":
      return { private: "none" };
    case "attributes":
    case "memslots":
      return { backend };
  }
}

/** "1,2,4" or "1-4" or "1,3-4" -> [1, 2, 4] / [1, 2, 3, 4] / [1, 3, 4], each in [min, max], no repeats */
export function parseCountList(option: string, text: string, min: number, max: number): number[] {
  const out: number[] = [];
  const bad = (why: string) =>
    new UsageError(`${option} ${JSON.stringify(text)} ${why}`, `write whole numbers from ${min} to ${max} and ranges, comma-separated, e.g. ${option} 1,2,4 or ${option} 1-4`);
  for (const part of String(text).split(",")) {
    const m = /^\s*(\d+)\s*(?:-\s*(\d+)\s*)?$/.exec(part);
    if (!m) throw bad(`is not a list of counts (at ${JSON.stringify(part)})`);
    const from = Number(m[1]);
    const to = m[2] === undefined ? from : Number(m[2]);
    if (to < from) throw bad(`has a range that runs backwards (${part.trim()})`);
    if (from < min || to > max) throw bad(`is out of range (${part.trim()})`);
    for (let n = from; n <= to; n++) {
      if (out.includes(n)) throw bad(`names ${n} twice`);
      out.push(n);
    }
  }
  return out;
}

/** "attributes,memslots" -> ["attributes", "memslots"] */
export function parseBackendList(option: string, text: string): MatrixBackend[] {
  const out: MatrixBackend[] = [];
  for (const part of String(text).split(",")) {
    const b = part.trim().toLowerCase() as MatrixBackend;
    if (!MATRIX_BACKENDS.includes(b))
      throw new UsageError(`${option} ${JSON.stringify(text)}: ${JSON.stringify(part.trim())} is not a backend`, `use ${MATRIX_BACKENDS.join(", ")}, comma-separated, e.g. ${option} attributes,memslots`);
    if (out.includes(b)) throw new UsageError(`${option} ${JSON.stringify(text)} names ${b} twice`, `name each backend once`);
    out.push(b);
  }
  return out;
}
