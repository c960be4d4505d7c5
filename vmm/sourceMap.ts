// Stack traces of the bundled CLI (dist/bundle/, scripts/bundle.js) point into the bundle. Node
// maps them back to vmm/*.ts only with source maps on for the whole process, and that costs more
// than the bundle saves (each loaded file's map is read and parsed as it loads). So source maps
// stay off (`node --enable-source-maps bin/tsvmm.js` turns them on), and a stack that tsvmm prints
// itself is mapped here, once, when it is printed.
import * as fs from "node:fs";
import * as path from "node:path";
import { SourceMap } from "node:module";

/** `err.stack` with every position in a file that has a source map beside it (FILE.js.map) given
 *  as its place in the source instead */
export function sourceMappedStack(err: unknown): string {
  const stack = (err as Error)?.stack ?? String(err);
  if (process.sourceMapsEnabled) return stack; // Node has mapped it already
  const maps = new Map<string, SourceMap | undefined>();
  return stack.replace(/(\/[^\s():]+\.js):(\d+):(\d+)/g, (position: string, file: string, line: string, column: string) => {
    if (!maps.has(file)) maps.set(file, readMap(file));
    const entry = maps.get(file)?.findEntry(Number(line) - 1, Number(column) - 1);
    if (!entry || !("originalSource" in entry)) return position;
    return `${path.resolve(path.dirname(file), entry.originalSource)}:${entry.originalLine + 1}:${entry.originalColumn + 1}`;
  });
}

function readMap(file: string): SourceMap | undefined {
  try {
    return new SourceMap(JSON.parse(fs.readFileSync(`${file}.map`, "utf8")));
  } catch {
    return undefined; // no map (or an unreadable one): the position stays as it is
  }
}
