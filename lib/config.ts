import { readFileSync } from "node:fs";
import { z } from "zod";
import { describeIssues } from "./zod.ts";

/** A configuration problem, always naming the variable; each side's main prints it and exits 1. */
export class ConfigError extends Error {
  override readonly name = "ConfigError";
}

/**
 * The environment as a config schema should see it: empty strings are unset, and every `X_FILE`
 * named in `fileVars` is read into `X` (Docker secrets: /run/secrets/...). Setting both is an error.
 * Shared by the api, the agent and the CLI so all read SPOOL_DIR and secrets the same way.
 */
export function cleanEnv(env: NodeJS.ProcessEnv, fileVars: readonly string[] = []): Record<string, string | undefined> {
  const out: Record<string, string | undefined> = {};
  for (const [k, v] of Object.entries(env)) out[k] = v === undefined || v.trim() === "" ? undefined : v;
  for (const name of fileVars) {
    const file = out[`${name}_FILE`];
    if (file === undefined) continue;
    if (out[name] !== undefined) throw new ConfigError(`${name} and ${name}_FILE are both set: set one`);
    let text: string;
    try {
      text = readFileSync(file, "utf8");
    } catch (err) {
      throw new ConfigError(`${name}_FILE=${file}: cannot read (${(err as NodeJS.ErrnoException).code ?? String(err)})`);
    }
    const value = text.replace(/\r?\n$/, "");
    if (value.trim() === "") throw new ConfigError(`${name}_FILE=${file}: the file is empty`);
    out[name] = value;
  }
  return out;
}

/** Parse with a zod schema and turn its issues into one ConfigError that names each variable. */
export function parseEnv<T extends z.ZodType>(schema: T, values: Record<string, string | undefined>): Readonly<z.infer<T>> {
  const parsed = schema.safeParse(values);
  if (!parsed.success) {
    throw new ConfigError(`invalid configuration: ${describeIssues(parsed.error, "(config)")}`);
  }
  return Object.freeze(parsed.data);
}

/** Load a daemon's configuration, or print the ConfigError (naming the variable) and exit 1. */
export function loadConfigOrExit<T>(program: string, load: () => T): T {
  try {
    return load();
  } catch (err) {
    if (!(err instanceof ConfigError)) throw err;
    process.stderr.write(`${program}: ${err.message}\n`);
    process.exit(1);
  }
}

/** Comma- or space-separated list. */
export const listVar = z
  .string()
  .optional()
  .transform((s) => (s ?? "").split(/[\s,]+/).filter(Boolean));

export const portVar = (fallback: number) => z.coerce.number().int().min(1).max(65535).default(fallback);

export const logLevelVar = z.enum(["fatal", "error", "warn", "info", "debug", "trace", "silent"]).default("info");

export const boolVar = z
  .enum(["true", "false", "1", "0", "yes", "no"])
  .optional()
  .transform((v) => v === "true" || v === "1" || v === "yes");

/**
 * DEPLOY_TAGS: which pushed tags deploy. Unset or false: none; a comma-separated list of patterns
 * (`*` any run of characters, `?` one), e.g. `v*`; true: any tag (kept for older configurations,
 * warned about at start: anyone who can push a tag deploys it).
 */
export const tagsVar = z
  .string()
  .optional()
  .transform((s, ctx) => {
    const v = (s ?? "").trim();
    if (v === "" || /^(false|0|no)$/i.test(v)) return [] as string[];
    if (/^(true|1|yes)$/i.test(v)) return ["*"];
    const patterns = v.split(/[\s,]+/).filter(Boolean);
    for (const p of patterns) {
      if (!/^[A-Za-z0-9._/*?-]{1,100}$/.test(p)) {
        ctx.addIssue({ code: "custom", message: `DEPLOY_TAGS must be true, false or tag patterns such as v* (not ${p.slice(0, 40)})` });
        return z.NEVER;
      }
    }
    return patterns;
  });

/** Values the example files ship with (`change-me…`) and other stand-ins nobody should run with. */
const PLACEHOLDER = /^(change[-_ ]?me|replace[-_ ]?me|your[-_]|<.*>$|x{6,}$|example$|secret$|password$)/i;

/** A value that must be a real secret: a placeholder copied from an example file is refused, naming the variable. */
export const secretVar = (name: string, minLength: number, hint = "openssl rand -hex 32") =>
  z
    .string({ error: `${name} (or ${name}_FILE) is required and must not be empty` })
    .refine(
      (v) => !PLACEHOLDER.test(v.trim()) && !PLACEHOLDER_WORD.test(v),
      `${name} is a placeholder from an example file: set a real secret (${hint})`,
    )
    .refine((v) => v.length >= minLength, `${name} must be at least ${minLength} characters (${hint})`)
    .refine((v) => !guessable(v), `${name} is too easy to guess (repeated characters or a short pattern): set a random one (${hint})`);

/** Placeholder words anywhere in a value (`please-change-me-…`), not only at its start. */
const PLACEHOLDER_WORD = /(change[-_ ]?me|replace[-_ ]?me|placeholder|dummy|not[-_ ]?a[-_ ]?secret)/i;

/** Too little entropy to be a secret: few distinct characters, or one short chunk repeated (`abcabcabc…`). */
export function guessable(v: string): boolean {
  if (new Set(v).size < Math.min(8, Math.ceil(v.length / 3))) return true;
  for (let n = 1; n <= 8 && n * 3 <= v.length; n++)
    if (
      v
        .slice(0, n)
        .repeat(Math.ceil(v.length / n))
        .slice(0, v.length) === v
    )
      return true;
  return false;
}
