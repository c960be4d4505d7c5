// tsvmm's command line: one yargs command per file under ./commands.
import yargs from "yargs";
import { runCommand } from "./commands/run";
import { capsCommand } from "./commands/caps";
import { guestsCommand } from "./commands/guests";
import { labCommand } from "./commands/lab";
import { traceCommand } from "./commands/trace";
import { testCommand } from "./commands/test";
import { ExitStatus, TsvmmError } from "../errors";
import { CLI_FLAGS } from "./flags";
import { stdoutFailure } from "./stop";

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
    .command(runCommand)
    .command(capsCommand)
    .command(guestsCommand)
    .command(labCommand)
    .command(traceCommand)
    .command(testCommand)
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
  try {
    await cli.parseAsync();
  } catch (err) {
    if (err instanceof TsvmmError) {
      process.stderr.write(`tsvmm: ${err.describe(CLI_FLAGS)}\n`);
      process.exitCode = err.status;
      return;
    }
    process.stderr.write(`tsvmm: internal error: ${(err as Error).stack ?? err}\n`);
    process.exitCode = ExitStatus.INTERNAL;
  }
}
