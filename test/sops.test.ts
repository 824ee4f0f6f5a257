// SOPS and age files as the real tools write them: the SOPS project's own fixtures and doco-cd's
// (written by sops 3.7.1 and 3.9.0, with their published age test keys), Debian's `age` CLI, and
// files `swarmhook encrypt` writes, read back by the same decoder and checked against the fixtures' shape.
import assert from "node:assert/strict";
import { chmod, mkdtemp, readFile, rm, writeFile } from "node:fs/promises";
import os from "node:os";
import path from "node:path";
import { describe, it } from "node:test";
import { execa } from "execa";
import { parse as parseYaml } from "yaml";
import { loadAgeKeys } from "../agent/prepare/age-keys.ts";
import { SecretFileError, decryptAge, decryptSops, detectEncrypted, encryptAge, encryptSops } from "../agent/prepare/sops.ts";
import { onEnd, type Ends } from "./helpers/cleanup.ts";
import { ROOT, spawnTs } from "./helpers/proc.ts";

const FIX = path.join(ROOT, "test", "fixtures", "sops");
const fixture = (f: string) => readFile(path.join(FIX, f));
const SOPS_TEST_RECIPIENT = "age1yt3tfqlfrwdwx0z0ynwplcr6qxcxfaqycuprpmy89nr83ltx74tqdpszlw";

async function tempDir(t: Ends): Promise<string> {
  const dir = await mkdtemp(path.join(os.tmpdir(), "swarmhook-sops-"));
  onEnd(t, () => rm(dir, { recursive: true, force: true }));
  return dir;
}

/** A key file (0600) holding the published test identities of `files`. */
async function keysOf(t: Ends, ...files: string[]) {
  const dir = await tempDir(t);
  const file = path.join(dir, "keys.txt");
  await writeFile(file, (await Promise.all(files.map((f) => readFile(path.join(FIX, f), "utf8")))).join("\n"), { mode: 0o600 });
  return loadAgeKeys(file);
}

async function decryptFixture(t: Ends, name: string, select?: string): Promise<string> {
  const keys = await keysOf(t, "sops-keys.txt", "doco-age-key.txt");
  const bytes = await fixture(name);
  const kind = detectEncrypted(bytes, name);
  assert.equal(kind?.kind, "sops", `${name} is detected as SOPS`);
  return (await decryptSops(bytes, (kind as { format: "yaml" }).format, keys.decrypter, select)).toString("utf8");
}

describe("SOPS files written by the real sops", () => {
  it("YAML (sops 3.7.1, the SOPS project's example): every value, type and comment checked by the MAC", async (t) => {
    const out = parseYaml(await decryptFixture(t, "sops-example.yaml")) as Record<string, unknown>;
    assert.equal(out.myapp1, "t00m4nys3cr3tzupdated");
    assert.deepEqual((out.app2 as { db: unknown }).db, { user: "eve", password: "c4r1b0u" });
    assert.equal(out.number, 1234568000, "a float as sops 3.7.1 wrote it (1.234568e+09)");
    assert.deepEqual(out.somebooleans, [true, false]);
    assert.deepEqual(out.somelist_unencrypted, [
      "all elements of this list",
      "remain in clear text",
      "because of the _encrypted suffix in the key",
    ]);
    assert.equal(await decryptFixture(t, "sops-example.yaml", "app2.db.password"), "c4r1b0u", "a selector picks one value");
  });

  it("JSON (sops 3.7.1 and 3.9.0), binary (sops 3.7.1) and dotenv (sops 3.9.0)", async (t) => {
    const json = JSON.parse(await decryptFixture(t, "sops-example.json")) as Record<string, unknown>;
    assert.equal(json.firstName, "John");
    assert.equal(json.age, 25.4);
    assert.deepEqual(JSON.parse(await decryptFixture(t, "doco-encrypted.json")), { this: "is encrypted" });
    assert.match(await decryptFixture(t, "sops-example.txt"), /^Welcome to SOPS!\n/);
    assert.equal(await decryptFixture(t, "doco-encrypted.env"), (await fixture("doco-unencrypted.env")).toString("utf8") + "\n");
    assert.equal(await decryptFixture(t, "doco-encrypted.env", "THIS_IS_ENCRYPTED"), "yes");
    assert.match(await decryptFixture(t, "doco-encrypted.yaml"), /^this.is.encrypted: yes\n$/, "a key with dots: the whole document");
  });

  it("a tampered value, a tampered MAC, a value moved to another key: refused (MAC or authentication), naming no value", async (t) => {
    const keys = await keysOf(t, "sops-keys.txt");
    const text = (await fixture("sops-example.yaml")).toString("utf8");
    // the unencrypted value is covered by the MAC only
    const plainChanged = text.replace("going to remain in clear text", "changed in clear text");
    await assert.rejects(decryptSops(Buffer.from(plainChanged), "yaml", keys.decrypter), (err: Error) => {
      assert.ok(err instanceof SecretFileError);
      assert.match(err.message, /MAC does not match/);
      return true;
    });
    // an encrypted value swapped for another key's: GCM's additional data (the path) refuses it
    const lines = text.split("\n");
    const user = lines.findIndex((l) => l.trimStart().startsWith("user: ENC["));
    const password = lines.findIndex((l) => l.trimStart().startsWith("password: ENC["));
    const swapped = [...lines];
    swapped[user] = lines[user]!.replace(/ENC\[.*\]/, /ENC\[.*\]/.exec(lines[password]!)![0]);
    await assert.rejects(decryptSops(Buffer.from(swapped.join("\n")), "yaml", keys.decrypter), /app2:db:user does not decrypt/);
    // one byte of ciphertext flipped
    const m = /myapp1: ENC\[AES256_GCM,data:(.)/.exec(text)!;
    const flipped = text.replace(m[0], m[0].slice(0, -1) + (m[1] === "A" ? "B" : "A"));
    await assert.rejects(decryptSops(Buffer.from(flipped), "yaml", keys.decrypter), (err: Error) => !err.message.includes("t00m4ny"));
  });

  it("a file encrypted for other recipients names them; a key file readable by others, or not a key, is refused", async (t) => {
    const doco = await keysOf(t, "doco-age-key.txt");
    await assert.rejects(decryptSops(await fixture("sops-example.yaml"), "yaml", doco.decrypter), (err: Error) => {
      assert.match(err.message, new RegExp(`not encrypted for this watcher's key: its age recipients are ${SOPS_TEST_RECIPIENT}`));
      return true;
    });
    const dir = await tempDir(t);
    const loose = path.join(dir, "loose.key");
    await writeFile(loose, await fixture("doco-age-key.txt"));
    await chmod(loose, 0o644);
    await assert.rejects(loadAgeKeys(loose), /may be read by group or others \(mode 644\): chmod 600/);
    const junk = path.join(dir, "junk.key");
    await writeFile(junk, "# a comment\nnot-a-key\n", { mode: 0o600 });
    await assert.rejects(loadAgeKeys(junk), /line 2 is not an age identity/);
    await assert.rejects(loadAgeKeys(path.join(dir, "none.key")), /does not exist \(make one with: swarmhook keygen/);
  });
});

describe("files swarmhook encrypt writes", () => {
  const PLAIN = {
    yaml: "postgres_password: 0123456789abcdefghij\nnested:\n  n: 42\n  f: 2.5\n  b: true\n  list: [a, b]\nnote_unencrypted: readable\n",
    json: '{"postgres_password": "0123456789abcdefghij", "n": 7}',
    dotenv: "API_KEY=0123456789abcdefghij\nMULTI=two\\nlines\n",
    binary: "raw\u0000bytes\nof a key file\n",
  } as const;

  for (const format of ["yaml", "json", "dotenv", "binary"] as const) {
    it(`--sops ${format}: decrypted by the same decoder, shaped as sops writes it (metadata keys, ENC values, armored age)`, async (t) => {
      const keys = await keysOf(t, "sops-keys.txt");
      const text = await encryptSops(Buffer.from(PLAIN[format]), format, [SOPS_TEST_RECIPIENT]);
      assert.ok(!text.includes("0123456789abcdefghij"), "no plaintext value in the file");
      const name = { yaml: "s.sops.yaml", json: "s.sops.json", dotenv: "s.sops.env", binary: "s.key" }[format];
      assert.deepEqual(detectEncrypted(Buffer.from(text), name), { kind: "sops", format });
      const back = await decryptSops(Buffer.from(text), format, keys.decrypter);
      if (format === "yaml") assert.deepEqual(parseYaml(back.toString()), parseYaml(PLAIN.yaml));
      else if (format === "json") assert.deepEqual(JSON.parse(back.toString()), JSON.parse(PLAIN.json));
      else assert.equal(back.toString(), PLAIN[format]);
      // the fixture of the same format written by sops: the same metadata keys and value format
      const fixtureOf = {
        yaml: "doco-encrypted.yaml",
        json: "doco-encrypted.json",
        dotenv: "doco-encrypted.env",
        binary: "sops-example.txt",
      }[format];
      const theirs = metaKeys((await fixture(fixtureOf)).toString(), format);
      const ours = metaKeys(text, format);
      for (const k of ["age", "lastmodified", "mac", "unencrypted_suffix", "version"]) {
        assert.ok(theirs.includes(k), `sops writes ${k}`);
        assert.ok(ours.includes(k), `ours has ${k}`);
      }
      for (const v of text.match(/ENC\[[^\]]*\]/g) ?? [])
        assert.match(v, /^ENC\[AES256_GCM,data:[A-Za-z0-9+/=]*,iv:[A-Za-z0-9+/=]{44},tag:[A-Za-z0-9+/=]{24},type:(str|int|float|bool)\]$/);
      assert.match(text, /-----BEGIN AGE ENCRYPTED FILE-----/);
      if (format === "yaml") assert.match(text, /note_unencrypted: readable/, "an _unencrypted key stays readable, as with sops");
    });
  }

  it("plain age files interoperate with Debian's age CLI both ways; age-keygen's key file is read", async (t) => {
    const dir = await tempDir(t);
    const keyFile = path.join(dir, "age.key");
    await execa("age-keygen", ["-o", keyFile]);
    const keys = await loadAgeKeys(keyFile);
    const ours = await encryptAge("0123456789abcdefghij", keys.recipients);
    await writeFile(path.join(dir, "ours.age"), ours);
    assert.equal((await execa("age", ["-d", "-i", keyFile, path.join(dir, "ours.age")])).stdout, "0123456789abcdefghij");
    await execa("age", ["-r", keys.recipients[0]!, "-o", path.join(dir, "theirs.age")], { input: "from the age CLI\n" });
    const theirs = await readFile(path.join(dir, "theirs.age"));
    assert.deepEqual(detectEncrypted(theirs, "theirs.age"), { kind: "age" });
    assert.equal((await decryptAge(theirs, keys.decrypter)).toString(), "from the age CLI\n");
    await execa("age", ["-a", "-r", keys.recipients[0]!, "-o", path.join(dir, "theirs.asc")], { input: "armored\n" });
    assert.equal((await decryptAge(await readFile(path.join(dir, "theirs.asc")), keys.decrypter)).toString(), "armored\n");
  });

  it("swarmhook keygen writes 0600 and never over a file; encrypt refuses a bad recipient (exit 2)", async (t) => {
    const dir = await tempDir(t);
    const key = path.join(dir, "watcher.key");
    const gen = spawnTs("bin/swarmhook.ts", ["keygen", "--out", key], {});
    assert.equal(await gen.exited, 0);
    const recipient = gen.out().trim();
    assert.match(recipient, /^age1[0-9a-z]{58}$/);
    assert.equal((await import("node:fs/promises").then((fs) => fs.stat(key))).mode & 0o777, 0o600);
    const again = spawnTs("bin/swarmhook.ts", ["keygen", "--out", key], {});
    assert.equal(await again.exited, 1);
    assert.match(again.err(), /exists: not overwritten/);
    await writeFile(path.join(dir, "s.yaml"), "postgres_password: 0123456789abcdefghij\n");
    const enc = spawnTs(
      "bin/swarmhook.ts",
      ["encrypt", "--to", recipient, "--sops", "--out", path.join(dir, "s.sops.yaml"), path.join(dir, "s.yaml")],
      {},
    );
    assert.equal(await enc.exited, 0, enc.err());
    const keys = await loadAgeKeys(key);
    const back = await decryptSops(await readFile(path.join(dir, "s.sops.yaml")), "yaml", keys.decrypter, "postgres_password");
    assert.equal(back.toString(), "0123456789abcdefghij");
    const bad = spawnTs("bin/swarmhook.ts", ["encrypt", "--to", "age1nope", path.join(dir, "s.yaml")], {});
    assert.equal(await bad.exited, 2);
    assert.match(bad.err(), /is not an age recipient/);
  });
});

/** The metadata keys of a SOPS file: under `sops:` (YAML/JSON/binary), or the `sops_` lines' first segment (dotenv). */
function metaKeys(text: string, format: string): string[] {
  if (format === "dotenv")
    return [
      ...new Set(
        text
          .split("\n")
          .filter((l) => l.startsWith("sops_"))
          .map((l) => l.slice(5).split("=")[0]!.split("__")[0]!),
      ),
    ];
  const doc = (format === "yaml" ? parseYaml(text) : JSON.parse(text)) as { sops: Record<string, unknown> };
  return Object.keys(doc.sops);
}
