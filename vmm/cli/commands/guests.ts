import type { CommandModule } from "yargs";
import { GUEST_DIR, listGuests } from "../../guests";
import { ExitStatus } from "../../errors";

export const guestsCommand: CommandModule<object, object> = {
  command: "guests",
  describe: "List the shipped test guests",
  builder: (y) => y.example("$0 guests", "one line per guest").strict(),
  handler: () => {
    const guests = listGuests();
    if (guests.length === 0) {
      process.stderr.write(`tsvmm: no guests are built in ${GUEST_DIR}; run \`npm run build:guests\`\n`);
      process.exitCode = ExitStatus.INTERNAL;
      return;
    }
    const width = Math.max(...guests.map((g) => g.name.length));
    for (const g of guests) process.stdout.write(`${g.name.padEnd(width)}  ${g.description}\n`);
  },
};
