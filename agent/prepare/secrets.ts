import { promises as fs } from "node:fs";
import path from "node:path";
import type { Logger } from "pino";
import { parse as parseYaml } from "yaml";
import { loadAgeKeys, type AgeKeys } from "./age-keys.ts";
import { SecretFileError, decryptAge, decryptSops, detectEncrypted } from "./sops.ts";

// The decrypt step of prepare: encrypted files a stack references (SOPS with age recipients, plain
// age) become plaintext only where Docker needs it. A secret's or config's plaintext stays in memory
// until `docker secret create` reads it from stdin; an env_file is decrypted in place in the job's
// private checkout (0700) as a 0600 file, removed right after `docker stack deploy`.

/** Swarm refuses a secret or config over 500 KB; an encrypted file is read up to this much. */
const MAX_FILE_BYTES = 2 * 1024 * 1024;

export { SecretFileError };

/** The age identities, read when the first encrypted file of a deploy needs them (never when none does). */
export function ageKeysOnDemand(keyFile: string | undefined): () => Promise<AgeKeys> {
  let loaded: Promise<AgeKeys> | undefined;
  return () => {
    if (!keyFile) return Promise.reject(new SecretFileError("SOPS_AGE_KEY_FILE is not set: the watcher has no age key to decrypt it with"));
    loaded ??= loadAgeKeys(keyFile).catch((err: unknown) => {
      throw new SecretFileError(`SOPS_AGE_KEY_FILE: ${(err as Error).message}`);
    });
    return loaded;
  };
}

/** `secrets.sops.yaml#postgres_password` → the file and the key selected in it; a `#` in a name that exists as a file is part of it. */
export async function splitSelector(file: string): Promise<{ file: string; select?: string }> {
  const at = file.lastIndexOf("#");
  if (at < 0 || (await fs.stat(file).catch(() => null))) return { file };
  return { file: file.slice(0, at), select: file.slice(at + 1) };
}

/** A file's bytes, refused beyond MAX_FILE_BYTES. */
async function readBounded(file: string): Promise<Buffer> {
  const st = await fs.stat(file);
  if (st.size > MAX_FILE_BYTES) throw new SecretFileError(`it is larger than ${MAX_FILE_BYTES / 1024 / 1024} MiB`);
  return fs.readFile(file);
}

/**
 * The plaintext of `file` (with `select`, one key of a SOPS YAML/JSON/dotenv file), or null when it
 * is not encrypted. Throws SecretFileError saying why it cannot be decrypted.
 */
export async function decryptFile(file: string, keys: () => Promise<AgeKeys>, select?: string): Promise<Buffer | null> {
  const bytes = await readBounded(file);
  const kind = detectEncrypted(bytes, file);
  if (!kind) {
    if (select !== undefined) throw new SecretFileError(`#${select} selects a key, but the file is not a SOPS file`);
    return null;
  }
  const { decrypter } = await keys();
  if (kind.kind === "age") {
    if (select !== undefined) throw new SecretFileError(`#${select} selects a key, but a plain age file has none`);
    return decryptAge(bytes, decrypter);
  }
  if (select !== undefined && kind.format === "binary")
    throw new SecretFileError(`#${select} selects a key, but a binary SOPS file has none`);
  return decryptSops(bytes, kind.format, decrypter, select);
}

/**
 * Every file a stack file references (env_file, configs and secrets `file:`, with a `#key`
 * selector) that is encrypted, each with why it does not decrypt (null when it does). What doctor
 * checks; the values are never returned.
 */
export async function checkEncryptedFiles(
  stackFile: string,
  keys: () => Promise<AgeKeys>,
): Promise<{ ref: string; problem: string | null }[]> {
  const text = await fs.readFile(stackFile, "utf8");
  const doc = (parseYaml(text) ?? {}) as Record<"configs" | "secrets", Record<string, { file?: unknown } | null> | undefined>;
  const refs = [
    ...envFilesOf(text).map((e) => e.ref),
    ...[doc.configs, doc.secrets].flatMap((g) => Object.values(g ?? {}).flatMap((d) => (typeof d?.file === "string" ? [d.file] : []))),
  ];
  const out: { ref: string; problem: string | null }[] = [];
  for (const ref of [...new Set(refs)]) {
    if (ref.includes("$")) continue;
    const { file, select } = await splitSelector(path.resolve(path.dirname(stackFile), ref));
    const bytes = await fs.readFile(file).catch(() => null);
    if (!bytes || !detectEncrypted(bytes, file)) continue;
    const problem = await decryptFile(file, keys, select).then(
      () => null,
      (err: unknown) => (err as Error).message,
    );
    out.push({ ref, problem });
  }
  return out;
}

/** The env_file entries of every service of a stack file, as written (relative to the stack file's directory). */
function envFilesOf(text: string): { service: string; ref: string }[] {
  const doc = (parseYaml(text) ?? {}) as { services?: Record<string, { env_file?: unknown } | null> };
  const out: { service: string; ref: string }[] = [];
  for (const [service, def] of Object.entries(doc.services ?? {})) {
    const raw = def?.env_file;
    for (const f of Array.isArray(raw) ? raw : raw === undefined ? [] : [raw]) {
      const ref = typeof f === "string" ? f : (f as { path?: unknown } | null)?.path;
      if (typeof ref === "string") out.push({ service, ref });
    }
  }
  return out;
}

export interface DecryptedEnv {
  /** Service → the variables an encrypted env_file gave it (their values never leave Docker's spec). */
  secretEnv: Map<string, Set<string>>;
  /** Remove every decrypted env_file: right after `docker stack deploy`, and on every error path. Safe to call twice; returns how many it removed. */
  removePlaintext(): Promise<number>;
}

/**
 * Decrypt in place every encrypted env_file the stack file references, inside `checkout` (the job's
 * private copy of a commit): the plaintext is written 0600 over the encrypted copy and removed by
 * `removePlaintext`. Outside a checkout (a stack file on this node) an encrypted env_file is refused:
 * its directory is the operator's, not the job's. Throws SecretFileError naming the file.
 */
export async function decryptEnvFiles(
  stackFile: string,
  checkout: string | null,
  keys: () => Promise<AgeKeys>,
  log?: Pick<Logger, "info">,
): Promise<DecryptedEnv> {
  const written: string[] = [];
  const secretEnv = new Map<string, Set<string>>();
  const removePlaintext = async () => {
    const files = written.splice(0);
    for (const f of files) await fs.rm(f, { force: true });
    if (files.length > 0) log?.info({ files: files.length }, "removed the decrypted env_files");
    return files.length;
  };
  const dir = path.dirname(stackFile);
  const done = new Map<string, Set<string>>();
  try {
    // a stack file that cannot be read is docker stack config's to report, naming it as Docker does
    const text = await fs.readFile(stackFile, "utf8").catch(() => "");
    for (const { service, ref } of envFilesOf(text)) {
      if (ref.includes("$")) continue; // interpolated: Docker resolves it (refused in a checkout by outsideCheckout)
      const file = path.resolve(dir, ref);
      let names = done.get(file);
      if (!names) {
        const bytes = await fs.readFile(file).catch(() => null);
        if (!bytes || !detectEncrypted(bytes, file)) continue;
        if (!checkout)
          throw new SecretFileError(
            `env_file ${ref} is encrypted: an encrypted env_file is decrypted only for a stack from git (in the job's private checkout); use a secret for it here`,
          );
        const plain = await decryptFile(file, keys).catch((err: unknown) => {
          throw new SecretFileError(`env_file ${ref}: ${(err as Error).message}`);
        });
        await fs.rm(file, { force: true });
        written.push(file);
        await fs.writeFile(file, plain ?? Buffer.alloc(0), { mode: 0o600, flag: "wx" });
        names = new Set(envNames(plain?.toString("utf8") ?? ""));
        done.set(file, names);
      }
      const mine = secretEnv.get(service) ?? new Set<string>();
      for (const n of names) mine.add(n);
      secretEnv.set(service, mine);
    }
  } catch (err) {
    await removePlaintext();
    throw err;
  }
  return { secretEnv, removePlaintext };
}

/** The variable names of a dotenv text, as Docker reads an env_file (`NAME=value`, `#` comments, a bare `NAME`). */
const envNames = (text: string) =>
  text
    .split("\n")
    .map((l) => l.trim())
    .filter((l) => l !== "" && !l.startsWith("#"))
    .map((l) => l.split("=")[0]!.trim());

/** What the kept rendering holds instead of a value an encrypted env_file gave: never the value, not even its hash. */
export const REDACTED = "<from an encrypted env_file>";

/**
 * The rendered stack with the values of `secretEnv` replaced by REDACTED: what may be written to
 * STATE_DIR (the reconcile loop compares only that these variables are there).
 */
export function redactSecretEnv(doc: unknown, secretEnv: ReadonlyMap<string, ReadonlySet<string>>): unknown {
  if (secretEnv.size === 0) return doc;
  const copy = structuredClone(doc) as { services?: Record<string, { environment?: Record<string, string | null> }> };
  for (const [service, names] of secretEnv) {
    const env = copy.services?.[service]?.environment;
    if (env) for (const n of names) if (n in env) env[n] = REDACTED;
  }
  return copy;
}
