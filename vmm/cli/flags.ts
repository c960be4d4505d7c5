// The command line's spelling of the settings the domain's errors name (errors.ts Setting).
import type { SettingNames } from "../errors";

export const CLI_FLAGS: SettingNames = {
  memSize: "--mem",
  cpus: "--cpus",
  cmdline: "--cmdline",
  private: "--private",
  backend: "--backend",
  sharedBit: "--shared-bit",
  prefault: "--prefault",
};
