// `swarmhook keygen` and `swarmhook encrypt`: an age identity for the watcher, and files encrypted
// for it (plain age, or SOPS with age recipients), without the age or sops binaries.
import { promises as fs } from "node:fs";
import path from "node:path";
import { writeNewIdentity } from "../agent/prepare/age-keys.ts";
import { SecretFileError, encryptAge, encryptSops, formatOfName, type SopsFormat } from "../agent/prepare/sops.ts";

export const KEYGEN_HELP = `swarmhook keygen --out FILE
  Writes a new age identity to FILE (mode 0600; an existing file is never overwritten) and prints
  its public recipient (age1…). Point the watcher's SOPS_AGE_KEY_FILE at FILE and encrypt for the
  recipient. The same file format as age-keygen's; sops reads it as SOPS_AGE_KEY_FILE too.
  Exit: 0 written, 1 FILE exists or cannot be written, 2 usage.
`;

export const ENCRYPT_HELP = `swarmhook encrypt --to age1…[,age1…] [--sops] [--out OUT] FILE
  Encrypts FILE for the age recipients (the watcher's, from swarmhook keygen, and your own so you
  can edit it). Without --sops: a plain age file (armored), as \`age -r\` writes it. With --sops: a
  SOPS file with age recipients that the sops CLI decrypts and edits, in the format FILE's name
  implies (.yaml/.yml, .json, .env; anything else is SOPS's binary format); a key ending in
  _unencrypted stays readable, as with sops. Writes to OUT (mode 0644: only the recipients can
  read it), else to stdout.
  Exit: 0 written, 1 FILE unreadable or not in its format, 2 usage.
`;

const RECIPIENT = /^age1[02-9ac-hj-np-z]{58}$/;

/** Usage problems are thrown as this (exit 2); SecretFileError and file errors exit 1. */
export class SecretsUsage extends Error {}

export async function keygen(out: string | undefined): Promise<string> {
  if (!out) throw new SecretsUsage("--out FILE is required: where the new identity is written (mode 0600)");
  try {
    return await writeNewIdentity(path.resolve(out));
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code === "EEXIST")
      throw new SecretFileError(`${out} exists: not overwritten (remove it first, or pick another name)`);
    throw err;
  }
}

export async function encrypt(o: {
  to: string | undefined;
  sops: boolean;
  out: string | undefined;
  file: string | undefined;
}): Promise<string> {
  const recipients = (o.to ?? "")
    .split(",")
    .map((r) => r.trim())
    .filter(Boolean);
  if (recipients.length === 0) throw new SecretsUsage("--to age1… is required: the recipients (comma-separated) to encrypt for");
  const bad = recipients.find((r) => !RECIPIENT.test(r));
  if (bad) throw new SecretsUsage(`--to: ${bad.slice(0, 20)}… is not an age recipient (age1 and 58 characters)`);
  if (!o.file) throw new SecretsUsage("FILE is required: the file to encrypt");
  const plaintext = await fs.readFile(o.file).catch((err: unknown) => {
    throw new SecretFileError(`${o.file}: cannot read (${(err as NodeJS.ErrnoException).code ?? String(err)})`);
  });
  const format: SopsFormat = formatOfName(o.file);
  const text = o.sops ? await encryptSops(plaintext, format, recipients) : await encryptAge(plaintext, recipients);
  if (o.out) await fs.writeFile(o.out, text, { mode: 0o644 });
  return text;
}
