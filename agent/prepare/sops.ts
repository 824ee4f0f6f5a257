import { createCipheriv, createDecipheriv, createHash, randomBytes, timingSafeEqual } from "node:crypto";
import { Decrypter, Encrypter, armor } from "age-encryption";
import { parse as parseYaml, stringify as stringifyYaml } from "yaml";

// SOPS files (YAML, JSON, dotenv, binary) with age recipients, and plain age files: read as the
// `sops` and `age` tools write them, and written so that they can read them. Values are AES-256-GCM
// with a 32-byte IV and the value's path ("a:b:") as additional data; the data key is age-encrypted
// per recipient; the MAC is SHA-512 over every value in document order, encrypted with the file's
// `lastmodified` as additional data (getsops/sops `sops.go` Tree.Decrypt, `aes/cipher.go`).

export type SopsFormat = "yaml" | "json" | "dotenv" | "binary";
export type Encrypted = { kind: "sops"; format: SopsFormat } | { kind: "age" };

/** Why an encrypted file cannot be read: its message names the problem, never a value. */
export class SecretFileError extends Error {}

const AGE_BINARY = "age-encryption.org/v1\n";
const AGE_ARMOR = "-----BEGIN AGE ENCRYPTED FILE-----";
const ENC = /^ENC\[AES256_GCM,data:(.+),iv:(.+),tag:(.+),type:(.+)\]/;
/** What `mac_only_encrypted: true` starts the MAC with (getsops/sops MACOnlyEncryptedInitialization). */
const MAC_ONLY_ENCRYPTED_INIT = Buffer.from("8a3fd2ad54ce66527b1034f3d147be0b0b975b3bf44f72c6fdadec8176f27d69", "hex");
const UNENCRYPTED_SUFFIX = "_unencrypted";
/** The SOPS version `swarmhook encrypt --sops` writes in its metadata (the format it follows). */
const SOPS_VERSION = "3.9.4";

type Tree = Map<string, unknown>;
interface AgeStanza {
  recipient: string;
  enc: string;
}
interface Metadata {
  age: AgeStanza[];
  lastmodified: string;
  mac: string;
  macOnlyEncrypted: boolean;
}

/**
 * Whether a file is encrypted, and how: a plain age file (binary or armored), or a SOPS file by
 * SOPS's own metadata (a `sops` key with a `mac`; `sops_mac=` in dotenv). A JSON document holding
 * only `data` and `sops` is SOPS's binary format unless its name ends in `.json`.
 */
export function detectEncrypted(bytes: Uint8Array, name: string): Encrypted | null {
  const head = Buffer.from(bytes.subarray(0, 64)).toString("latin1");
  if (head.startsWith(AGE_BINARY) || head.trimStart().startsWith(AGE_ARMOR)) return { kind: "age" };
  const text = Buffer.from(bytes).toString("utf8");
  if (text.trimStart().startsWith("{")) {
    const doc = tryParse(() => JSON.parse(text) as unknown);
    if (!isObject(doc) || !isObject(doc.sops) || !("mac" in doc.sops)) return null;
    const binary = !name.endsWith(".json") && Object.keys(doc).length === 2 && typeof doc.data === "string";
    return { kind: "sops", format: binary ? "binary" : "json" };
  }
  if (/^sops_mac=/m.test(text) && /^sops_version=/m.test(text)) return { kind: "sops", format: "dotenv" };
  if (/^sops:\s*$/m.test(text)) {
    const doc = tryParse(() => parseYaml(text) as unknown);
    if (isObject(doc) && isObject(doc.sops) && "mac" in doc.sops) return { kind: "sops", format: "yaml" };
  }
  return null;
}

/**
 * Decrypt a SOPS file: the data key from the first age stanza the identities open, every value, and
 * the MAC checked against them. Returns the plaintext: with `select` ("a.b"), the one value at that
 * path; else the whole document as `sops --decrypt` would print it (a binary file: its bytes).
 * Throws SecretFileError (not for these identities, bad MAC, unknown key) naming no value.
 */
export async function decryptSops(bytes: Uint8Array, format: SopsFormat, identities: Decrypter, select?: string): Promise<Buffer> {
  const { tree, meta } = parseSops(Buffer.from(bytes).toString("utf8"), format);
  const key = await dataKey(meta, identities);
  const hash = createHash("sha512");
  if (meta.macOnlyEncrypted) hash.update(MAC_ONLY_ENCRYPTED_INIT);
  const plain = walk(tree, [], (value, path) => {
    if (typeof value === "string" && ENC.test(value)) {
      const { bytes: out, typed } = decryptValue(value, key, `${path.join(":")}:`);
      hash.update(typeof typed === "boolean" ? (typed ? "True" : "False") : out);
      return format === "binary" ? out : typed;
    }
    if (!meta.macOnlyEncrypted) hash.update(toMacBytes(value));
    return value;
  }) as Tree;
  const mac = decryptValue(meta.mac, key, normalTime(meta.lastmodified)).bytes;
  const computed = Buffer.from(hash.digest("hex").toUpperCase());
  if (mac.length !== computed.length || !timingSafeEqual(mac, computed))
    throw new SecretFileError("its MAC does not match its values: the file was changed after it was encrypted");
  if (select !== undefined) return selectValue(plain, select);
  return emit(plain, format);
}

/** Decrypt a plain age file (binary or armored) with the identities. */
export async function decryptAge(bytes: Uint8Array, identities: Decrypter): Promise<Buffer> {
  const head = Buffer.from(bytes.subarray(0, 64)).toString("latin1");
  const raw = head.startsWith(AGE_BINARY) ? bytes : armor.decode(Buffer.from(bytes).toString("utf8").trim());
  try {
    return Buffer.from(await identities.decrypt(raw));
  } catch (err) {
    throw new SecretFileError(ageReason(err));
  }
}

/**
 * Encrypt `plaintext` for age recipients: a plain age file (armored), or with `sops` a SOPS file in
 * `format` (values under a key ending `_unencrypted` stay readable, as `sops` does by default).
 */
export async function encryptSops(
  plaintext: Uint8Array,
  format: SopsFormat,
  recipients: readonly string[],
  now = new Date(),
): Promise<string> {
  const tree = readPlain(Buffer.from(plaintext), format);
  const key = randomBytes(32);
  const hash = createHash("sha512");
  const encrypted = walk(tree, [], (value, path) => {
    hash.update(toMacBytes(value));
    if (path.some((p) => p.endsWith(UNENCRYPTED_SUFFIX))) return value;
    return encryptValue(value, key, `${path.join(":")}:`);
  }) as Tree;
  const lastmodified = now.toISOString().replace(/\.\d+Z$/, "Z");
  const age: AgeStanza[] = [];
  for (const recipient of recipients) age.push({ recipient, enc: await encryptAge(key, [recipient]) });
  const sops = new Map<string, unknown>([
    ["age", age.map((a) => new Map(Object.entries(a)))],
    ["lastmodified", lastmodified],
    ["mac", encryptValue(hash.digest("hex").toUpperCase(), key, lastmodified)],
    ["unencrypted_suffix", UNENCRYPTED_SUFFIX],
    ["version", SOPS_VERSION],
  ]);
  if (format === "dotenv") {
    const meta = [...flatten(sops, "sops")].sort(([a], [b]) => a.localeCompare(b));
    return [...encrypted, ...meta].map(([k, v]) => `${k}=${String(v).replaceAll("\n", "\\n")}\n`).join("");
  }
  encrypted.set("sops", sops);
  if (format === "yaml") return stringifyYaml(encrypted, { indent: 4, lineWidth: 0 });
  return `${JSON.stringify(toPlainObject(encrypted), null, "\t")}\n`;
}

/** A plain age file, armored, for the recipients. */
export async function encryptAge(plaintext: Uint8Array | string, recipients: readonly string[]): Promise<string> {
  const e = new Encrypter();
  for (const r of recipients) e.addRecipient(r);
  return armor.encode(await e.encrypt(plaintext));
}

/** The SOPS format a file's name implies, as `sops` picks it: .yaml/.yml, .json, .env, else binary. */
export function formatOfName(name: string): SopsFormat {
  if (/\.ya?ml$/i.test(name)) return "yaml";
  if (/\.json$/i.test(name)) return "json";
  if (/(^|[./])env$/i.test(name)) return "dotenv";
  return "binary";
}

function parseSops(text: string, format: SopsFormat): { tree: Tree; meta: Metadata } {
  let tree: Tree;
  let raw: unknown;
  if (format === "dotenv") {
    tree = new Map();
    const metaFlat = new Map<string, string>();
    for (const [k, v] of dotenvEntries(text)) (k.startsWith("sops_") ? metaFlat : tree).set(k, v);
    raw = unflatten(metaFlat);
  } else {
    const doc = tryParse(() => parseYaml(text, { mapAsMap: true }) as unknown);
    if (!(doc instanceof Map) || !(doc.get("sops") instanceof Map)) throw new SecretFileError("it has no SOPS metadata");
    raw = toPlainObject(doc.get("sops"));
    tree = new Map([...doc].filter(([k]) => k !== "sops").map(([k, v]) => [String(k), v]));
  }
  return { tree, meta: readMeta(raw) };
}

function readMeta(raw: unknown): Metadata {
  if (!isObject(raw)) throw new SecretFileError("it has no SOPS metadata");
  const age = (Array.isArray(raw.age) ? raw.age : []).filter(
    (a): a is AgeStanza => isObject(a) && typeof a.recipient === "string" && typeof a.enc === "string",
  );
  if (typeof raw.mac !== "string" || raw.mac === "")
    throw new SecretFileError("it has no MAC (SOPS writes one; an unsigned file is refused)");
  if (typeof raw.lastmodified !== "string") throw new SecretFileError("its SOPS metadata has no lastmodified");
  if (age.length === 0) throw new SecretFileError("it names no age recipient (only age keys are supported, not KMS or PGP)");
  const only = raw.mac_only_encrypted;
  return { age, mac: raw.mac, lastmodified: raw.lastmodified, macOnlyEncrypted: only === true || only === "true" };
}

async function dataKey(meta: Metadata, identities: Decrypter): Promise<Buffer> {
  for (const stanza of meta.age) {
    const key = await identities.decrypt(armor.decode(stanza.enc.trim())).catch(() => null);
    if (key) {
      if (key.length !== 32) throw new SecretFileError("its data key is not 32 bytes");
      return Buffer.from(key);
    }
  }
  throw new SecretFileError(
    `it is not encrypted for this watcher's key: its age recipients are ${meta.age.map((a) => a.recipient).join(", ")}`,
  );
}

function decryptValue(value: string, key: Buffer, ad: string): { bytes: Buffer; typed: unknown } {
  const m = ENC.exec(value);
  if (!m) throw new SecretFileError(`a value at ${ad || "the root"} is not in SOPS's ENC[AES256_GCM,…] format`);
  const [data, iv, tag, type] = [Buffer.from(m[1]!, "base64"), Buffer.from(m[2]!, "base64"), Buffer.from(m[3]!, "base64"), m[4]!];
  let bytes: Buffer;
  try {
    const d = createDecipheriv("aes-256-gcm", key, iv);
    d.setAAD(Buffer.from(ad));
    d.setAuthTag(tag);
    bytes = Buffer.concat([d.update(data), d.final()]);
  } catch {
    throw new SecretFileError(`the value at ${ad.slice(0, -1) || "the MAC"} does not decrypt: it was changed or belongs elsewhere`);
  }
  const text = bytes.toString("utf8");
  const typed =
    type === "int" || type === "float" ? Number(text) : type === "bool" ? /^(1|t|true)$/i.test(text) : type === "bytes" ? bytes : text;
  return { bytes, typed };
}

function encryptValue(value: unknown, key: Buffer, ad: string): unknown {
  if (value === "" || value === null) return value;
  const type = typeof value === "boolean" ? "bool" : typeof value === "number" ? (Number.isInteger(value) ? "int" : "float") : "str";
  const plain = Buffer.isBuffer(value) ? value : Buffer.from(typeof value === "boolean" ? String(value) : String(value));
  const iv = randomBytes(32);
  const c = createCipheriv("aes-256-gcm", key, iv);
  c.setAAD(Buffer.from(ad));
  const data = Buffer.concat([c.update(plain), c.final()]);
  return `ENC[AES256_GCM,data:${data.toString("base64")},iv:${iv.toString("base64")},tag:${c.getAuthTag().toString("base64")},type:${type}]`;
}

/** Every leaf through `leaf(value, path)`; lists keep their parent's path (as SOPS walks them); null stays null. */
function walk(node: unknown, path: string[], leaf: (value: unknown, path: string[]) => unknown): unknown {
  if (node instanceof Map) return new Map([...node].map(([k, v]) => [String(k), walk(v, [...path, String(k)], leaf)]));
  if (Array.isArray(node)) return node.map((v) => walk(v, path, leaf));
  if (node === null || node === undefined) return node;
  return leaf(node, path);
}

/** A value's bytes as SOPS hashes them (Go's ToBytes): booleans True/False, numbers in decimal. */
function toMacBytes(value: unknown): Buffer {
  if (Buffer.isBuffer(value)) return value;
  if (typeof value === "boolean") return Buffer.from(value ? "True" : "False");
  return Buffer.from(String(value));
}

/** Go formats RFC 3339 without fractional seconds; the MAC's additional data is that text. */
const normalTime = (t: string) => t.replace(/\.\d+(?=Z|[+-]\d\d:\d\d$)/, "");

function selectValue(tree: Tree, select: string): Buffer {
  let node: unknown = tree;
  for (const part of select.split(".")) {
    if (!(node instanceof Map) || !node.has(part)) throw new SecretFileError(`it has no key ${select}`);
    node = node.get(part);
  }
  if (node instanceof Map || Array.isArray(node)) throw new SecretFileError(`${select} is a mapping or a list: select one value`);
  return Buffer.isBuffer(node) ? node : Buffer.from(typeof node === "boolean" ? String(node) : String(node ?? ""));
}

function emit(tree: Tree, format: SopsFormat): Buffer {
  if (format === "binary") {
    const data = tree.get("data");
    return Buffer.isBuffer(data) ? data : Buffer.from(String(data ?? ""));
  }
  if (format === "dotenv") return Buffer.from([...tree].map(([k, v]) => `${k}=${String(v).replaceAll("\n", "\\n")}\n`).join(""));
  if (format === "yaml") return Buffer.from(stringifyYaml(tree, { indent: 4, lineWidth: 0 }));
  return Buffer.from(`${JSON.stringify(toPlainObject(tree), null, "\t")}\n`);
}

function readPlain(bytes: Buffer, format: SopsFormat): Tree {
  if (format === "binary") return new Map([["data", bytes]]);
  const text = bytes.toString("utf8");
  if (format === "dotenv") return new Map(dotenvEntries(text));
  const doc = tryParse(() => parseYaml(text, { mapAsMap: true }) as unknown);
  if (!(doc instanceof Map)) throw new SecretFileError(`it is not a ${format.toUpperCase()} mapping`);
  if (doc.has("sops")) throw new SecretFileError("it already has a sops key (encrypted already?)");
  return new Map([...doc].map(([k, v]) => [String(k), v]));
}

/** KEY=VALUE lines as SOPS's dotenv store reads them: `#` lines are comments, `\n` in a value is a newline. */
function dotenvEntries(text: string): [string, string][] {
  const out: [string, string][] = [];
  for (const line of text.split("\n")) {
    if (line === "" || line.startsWith("#")) continue;
    const at = line.indexOf("=");
    if (at < 0) throw new SecretFileError("a line of the dotenv file has no =");
    out.push([line.slice(0, at), line.slice(at + 1).replaceAll("\\n", "\n")]);
  }
  return out;
}

/** `sops_age__list_0__map_enc` → { age: [{ enc }] } (SOPS's flattened metadata). */
function unflatten(flat: Map<string, string>): Record<string, unknown> {
  const root: Record<string, unknown> = {};
  for (const [key, value] of flat) {
    const parts = key.slice("sops_".length).split("__");
    let node: Record<string, unknown> | unknown[] = root;
    parts.forEach((part, i) => {
      const name: string | number = part.startsWith("list_") ? Number(part.slice(5)) : part.startsWith("map_") ? part.slice(4) : part;
      const last = i === parts.length - 1;
      const next = parts[i + 1];
      const slot = node as Record<string | number, unknown>;
      if (last) slot[name] = value;
      else node = (slot[name] ??= next?.startsWith("list_") ? [] : {}) as Record<string, unknown> | unknown[];
    });
  }
  return root;
}

function* flatten(node: unknown, prefix: string): Generator<[string, unknown]> {
  if (node instanceof Map) for (const [k, v] of node) yield* flatten(v, `${prefix}${prefix === "sops" ? "_" : "__map_"}${k}`);
  else if (Array.isArray(node)) for (const [i, v] of node.entries()) yield* flatten(v, `${prefix}__list_${i}`);
  else yield [prefix, node];
}

function toPlainObject(node: unknown): unknown {
  if (node instanceof Map) return Object.fromEntries([...node].map(([k, v]) => [String(k), toPlainObject(v)]));
  if (Array.isArray(node)) return node.map(toPlainObject);
  if (Buffer.isBuffer(node)) return node.toString("utf8");
  return node;
}

function ageReason(err: unknown): string {
  const msg = (err as Error).message ?? "";
  return /no identity matched/i.test(msg)
    ? "it is not encrypted for this watcher's key (no identity matched its recipients)"
    : `it is not a readable age file (${msg.slice(0, 120)})`;
}

const isObject = (x: unknown): x is Record<string, unknown> => typeof x === "object" && x !== null && !Array.isArray(x);
function tryParse<T>(f: () => T): T | undefined {
  try {
    return f();
  } catch {
    return undefined;
  }
}
