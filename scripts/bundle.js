#!/usr/bin/env node
// Bundles the CLI (vmm/cli/entry.ts) and the vCPU worker (vmm/machine/vcpuThread.ts) into one
// file each under dist/bundle/, with source maps: a process that loads one file instead of ~150
// starts tens of milliseconds sooner (docs/startup.md). Part of `npm run build:ts`, after tsc
// (which type-checks; esbuild only strips the types). The files keep the layout the code expects:
// dist/bundle/ sits two levels below the checkout, as dist/vmm/*.js do, and the worker is next to
// the CLI (vmm/machine/threads.ts starts `vcpuThread.js` beside itself).
const crypto = require("node:crypto");
const fs = require("node:fs");
const path = require("node:path");
const esbuild = require("esbuild");

const root = path.resolve(__dirname, "..");

// tsc turns our `import`s into require() calls, so Node loads a package's CommonJS build; esbuild
// would pick the ESM build of a dual package (yargs' wraps help text in the middle of words).
const importAsRequire = {
  name: "import-as-require",
  setup(build) {
    build.onResolve({ filter: /^[^./]/ }, (args) =>
      args.kind === "import-statement" || args.kind === "dynamic-import"
        ? build.resolve(args.path, { kind: "require-call", resolveDir: args.resolveDir, importer: args.importer })
        : undefined,
    );
  },
};
esbuild
  .build({
    absWorkingDir: root,
    entryPoints: { tsvmm: "vmm/cli/entry.ts", vcpuThread: "vmm/machine/vcpuThread.ts" },
    outdir: "dist/bundle",
    bundle: true,
    platform: "node",
    format: "cjs",
    target: `node${process.versions.node.split(".")[0]}`,
    // The native addon is found at run time (vmm/native.ts); xterm loads only for --console screen.
    external: ["*.node", "@xterm/headless"],
    plugins: [importAsRequire],
    sourcemap: "linked",
    sourcesContent: false,
    logLevel: "warning",
  })
  .then(() => markBuild(path.join(root, "dist", "bundle", "tsvmm.js")))
  .catch((err) => {
    if (!err.errors) console.error(err); // esbuild has printed its own
    process.exit(1);
  });

/** End the CLI's bundle with its content's hash: bin/tsvmm.js names its V8 code cache with it.
 *  The caches of earlier builds go. */
function markBuild(file) {
  const text = fs.readFileSync(file, "utf8");
  const hash = crypto.createHash("sha256").update(text).digest("hex").slice(0, 16);
  fs.writeFileSync(file, `${text}//# tsvmm-build ${hash}\n`);
  for (const name of fs.readdirSync(path.dirname(file))) if (name.endsWith(".cache")) fs.rmSync(path.join(path.dirname(file), name), { force: true });
}
