import { createHash, createHmac } from "node:crypto";
import { promises as fs } from "node:fs";
import { Decrypter, generateX25519Identity, identityToRecipient } from "age-encryption";
import { SecretFileError } from "./sops.ts";

/** The watcher's age identities (SOPS_AGE_KEY_FILE), read once: they decrypt, and key the names of secret versions. */
export interface AgeKeys {
  file: string;
  decrypter: Decrypter;
  /** The public recipient of each identity (`age1…`), for messages and `doctor`. */
  recipients: string[];
  /** A keyed hash of a secret's plaintext: names its version without revealing a low-entropy value's plain hash. */
  mac(plaintext: Uint8Array): string;
}

/**
 * Read an age identity file as `age-keygen` writes it (`#` comments, one `AGE-SECRET-KEY-1…` per
 * line). Refused when group or others may read it, when it holds no identity, or one does not parse;
 * the message names the file and the line, never the key.
 * @example
 * const keys = await loadAgeKeys("/etc/swarmhook/age.key");
 */
export async function loadAgeKeys(file: string): Promise<AgeKeys> {
  const st = await fs.stat(file).catch(() => null);
  if (!st) throw new SecretFileError(`${file} does not exist (make one with: swarmhook keygen --out ${file})`);
  if (!st.isFile()) throw new SecretFileError(`${file} is not a regular file`);
  if ((st.mode & 0o077) !== 0)
    throw new SecretFileError(`${file} may be read by group or others (mode ${(st.mode & 0o777).toString(8)}): chmod 600 ${file}`);
  const lines = (await fs.readFile(file, "utf8")).split("\n").map((l) => l.trim());
  const identities: string[] = [];
  const recipients: string[] = [];
  for (const [i, line] of lines.entries()) {
    if (line === "" || line.startsWith("#")) continue;
    const recipient = await identityToRecipient(line).catch(() => null);
    if (!recipient) throw new SecretFileError(`${file} line ${i + 1} is not an age identity (AGE-SECRET-KEY-1…)`);
    identities.push(line);
    recipients.push(recipient);
  }
  if (identities.length === 0) throw new SecretFileError(`${file} holds no age identity`);
  const decrypter = new Decrypter();
  for (const id of identities) decrypter.addIdentity(id);
  const nameKey = createHash("sha256")
    .update("swarmhook secret version names\0")
    .update([...identities].sort().join("\n"))
    .digest();
  return {
    file,
    decrypter,
    recipients,
    mac: (plaintext) => createHmac("sha256", nameKey).update(plaintext).digest("hex"),
  };
}

/**
 * Write a new age identity to `file` (0600, never over an existing file), as `age-keygen` would:
 * a created line, the public key, the identity. Returns the public recipient.
 */
export async function writeNewIdentity(file: string, now = new Date()): Promise<string> {
  const identity = await generateX25519Identity();
  const recipient = await identityToRecipient(identity);
  const text = `# created: ${now.toISOString().replace(/\.\d+Z$/, "Z")}\n# public key: ${recipient}\n${identity}\n`;
  await fs.writeFile(file, text, { mode: 0o600, flag: "wx" });
  return recipient;
}
