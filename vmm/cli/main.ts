// tsvmm's command line: one yargs command per file under ./commands.
import yargs, { Argv, CommandModule } from "yargs";
import { ExitStatus, TsvmmError } from "../errors";
import { CLI_FLAGS } from "./flags";
import { stdoutFailure } from "./stop";
import { sourceMappedStack } from "../sourceMap";

// Each command's module (and what it imports: the lab's for `lab`, the VMM's for `run`) loads
// only when that command runs; --help and unknown commands load them all.
const commands: Record<string, () => Promise<CommandModule<object, any>>> = {
  run: async () => (await import("./commands/run")).runCommand,
  caps: async () => (await import("./commands/caps")).capsCommand,
  guests: async () => (await import("./commands/guests")).guestsCommand,
  lab: async () => (await import("./commands/lab")).labCommand,
  trace: async () => (await import("./commands/trace")).traceCommand,
  test: async () => (await import("./commands/test")).testCommand,
};

/**
 * yargs renders a command's whole help text right after starting its handler, for a later
 * showHelp() from the handler (tsvmm never calls it: `--help` is answered before any handler, and
 * our .fail() prints no help): 10-30 ms of wrapping for `run` on every start. The hook is yargs'
 * internal one (as the Angular CLI does); without it (another yargs) only the cost comes back.
 */
function skipHelpCache(cli: Argv): void {
  type Internal = { getInternalMethods?: () => { getUsageInstance?: () => { cacheHelpMessage?: () => void } } };
  const usage = (cli as unknown as Internal).getInternalMethods?.().getUsageInstance?.();
  if (typeof usage?.cacheHelpMessage === "function") usage.cacheHelpMessage = () => {};
}

export async function main(argv: string[]): Promise<void> {
  // A closed stdout (`tsvmm guests | head -1`) ends the output quietly with a status, as SIGPIPE
  // ends other tools; `run` also stops its VM (./stop.ts). A failing stderr has nowhere to report.
  process.stdout.on("error", (err: NodeJS.ErrnoException) => {
    process.exitCode ??= stdoutFailure(err).status;
  });
  process.stderr.on("error", () => {});
  const cli = yargs(argv)
    .scriptName("tsvmm")
    .usage(
      [
        "tsvmm: a minimal KVM VMM whose guest RAM is guest_memfd.",
        "Boot small test guests over a serial console, provoke private/shared exits, debug conversion flows.",
        "",
        "Usage: $0 <command> [options]",
      ].join("\n"),
    )
    .epilog("`tsvmm <command> --help` explains a command's options with examples; run and lab also list their exit statuses.")
    .demandCommand(1, "Name a command (try `tsvmm run hello`).")
    .recommendCommands()
    .strict()
    .strictCommands()
    .help()
    .alias("h", "help")
    .version()
    .wrap(Math.min(110, process.stdout.columns || 100))
    .fail((message, err) => {
      if (err && err.name !== "YError") throw err; // a YError is yargs refusing the command line
      // yargs says only "Did you mean X?" when it has a suggestion: name the unknown command too
      if (message?.startsWith("Did you mean")) message = `Unknown command: ${argv.find((a) => !a.startsWith("-"))}. ${message}`;
      process.stderr.write(`tsvmm: ${message}\nRun \`tsvmm --help\` (or \`tsvmm <command> --help\`) for usage.\n`);
      process.exit(ExitStatus.USAGE);
    });
  skipHelpCache(cli);
  const needed = argv[0] in commands ? [argv[0]] : Object.keys(commands);
  for (const name of needed) cli.command(await commands[name]());
  try {
    await cli.parseAsync();
  } catch (err) {
    if (err instanceof TsvmmError) {
      process.stderr.write(`tsvmm: ${err.describe(CLI_FLAGS)}\n`);
      process.exitCode = err.status;
      return;
    }
    process.stderr.write(`tsvmm: internal error: ${sourceMappedStack(err)}\n`);
    process.exitCode = ExitStatus.INTERNAL;
  }
}
