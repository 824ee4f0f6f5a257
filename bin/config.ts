import { apiVariableRows } from "../api/config.ts";
import { watcherVariableRows } from "../agent/config.ts";
import { markdownTable } from "../lib/config-table.ts";

export const CONFIG_HELP = `Usage: swarmhook config [--program api|watcher]

  Print every variable the API and the watcher read, as a table: variable, program, default,
  meaning. It is made from the programs' own config schemas (docs/reference.md holds the same
  table, and a test fails when they differ). "required": the program refuses to start without it;
  "unset": off or not used until set. X or X_FILE: X_FILE names a file holding the value (Docker
  secrets in /run/secrets/). Empty values count as unset.

  --program api|watcher   one program's variables only (default: both)
`;

/** The configuration table, for one program or both. */
export function configTable(program: "api" | "watcher" | undefined): string {
  const rows = [...(program !== "watcher" ? apiVariableRows() : []), ...(program !== "api" ? watcherVariableRows() : [])];
  return markdownTable(rows);
}
