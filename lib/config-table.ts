import type { z } from "zod";

/** One variable a program reads: what `swarmhook config` prints and docs/reference.md holds. */
export interface VariableRow {
  name: string;
  /** `NAME_FILE` may name a file holding the value instead (Docker secrets). */
  file: boolean;
  program: string;
  /** The value the program uses when the variable is unset, as the schema itself produces it. */
  default: string;
  meaning: string;
}

/**
 * The rows for one program, read from its config schema: the names are the schema's keys, the
 * defaults what each field yields for an unset variable (`required` when it refuses one), so the
 * table cannot drift from the code. `meanings` must name every key (the caller types it so).
 */
export function variableRows(
  program: string,
  shape: Readonly<Record<string, z.ZodType>>,
  meanings: Readonly<Record<string, string>>,
  fileVars: readonly string[] = [],
): VariableRow[] {
  return Object.entries(shape).map(([name, field]) => {
    const unset = field.safeParse(undefined);
    return {
      name,
      file: fileVars.includes(name),
      program,
      default: unset.success ? formatDefault(unset.data) : "required",
      meaning: meanings[name] ?? "",
    };
  });
}

function formatDefault(value: unknown): string {
  if (value === undefined) return "unset";
  if (Array.isArray(value)) return value.length === 0 ? "none" : value.join(",");
  return String(value);
}

/** Defaults that are words, not values. */
const WORDS = new Set(["required", "unset", "none"]);

const cell = (s: string) => s.replace(/\|/g, "\\|");

/** A Markdown table: readable as it is in a terminal, rendered on GitHub. */
export function markdownTable(rows: readonly VariableRow[]): string {
  const lines = ["| variable | program | default | meaning |", "| --- | --- | --- | --- |"];
  for (const r of rows) {
    const name = r.file ? `\`${r.name}\` or \`${r.name}_FILE\`` : `\`${r.name}\``;
    const value = WORDS.has(r.default) ? r.default : `\`${cell(r.default)}\``;
    lines.push(`| ${name} | ${r.program} | ${value} | ${cell(r.meaning)} |`);
  }
  return `${lines.join("\n")}\n`;
}
