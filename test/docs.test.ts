import assert from "node:assert/strict";
import { readFileSync, readdirSync, existsSync } from "node:fs";
import path from "node:path";
import { describe, it } from "node:test";
import semver from "semver";
import { apiVariableRows } from "../api/config.ts";
import { watcherVariableRows } from "../agent/config.ts";
import { configTable } from "../bin/config.ts";
import { ROOT, spawnTs } from "./helpers/proc.ts";

const read = (f: string) => readFileSync(path.join(ROOT, f), "utf8");
const DOCS = ["README.md", ...readdirSync(path.join(ROOT, "docs")).map((f) => `docs/${f}`)];

/** GitHub's heading anchors: lower case, punctuation but `-` and `_` dropped, spaces to `-`. */
const slug = (heading: string) =>
  heading
    .trim()
    .toLowerCase()
    .replace(/[^\p{L}\p{N} _-]/gu, "")
    .replace(/ /g, "-");

/** The lines outside code fences: where headings and links are. */
function proseLines(markdown: string): string[] {
  let fenced = false;
  return markdown.split("\n").filter((line) => {
    if (line.startsWith("```")) fenced = !fenced;
    return !fenced && !line.startsWith("```");
  });
}

const anchors = (markdown: string) =>
  new Set(
    proseLines(markdown)
      .map((line) => /^#{1,6} (.+)$/.exec(line)?.[1])
      .filter((h): h is string => h !== undefined)
      .map(slug),
  );

/** Relative links `[text](target)` outside code fences and inline code. */
const links = (markdown: string) =>
  proseLines(markdown).flatMap((line) =>
    [...line.replace(/`[^`]*`/g, "").matchAll(/\]\(([^)\s]+)\)/g)].map((m) => m[1] as string).filter((t) => !/^[a-z]+:/.test(t)),
  );

describe("the documents", () => {
  it("docs/reference.md holds the configuration table the schemas make (swarmhook config)", () => {
    const doc = read("docs/reference.md");
    const block = /<!-- begin: swarmhook config[^>]*-->\n([\s\S]*?)<!-- end: swarmhook config -->/.exec(doc);
    assert.ok(block, "docs/reference.md has the generated block");
    assert.equal(block[1], configTable(undefined), "regenerate: npm run -s swarmhook -- config, pasted between the markers");
    // what the generator reads is the schemas themselves: a default changed in code shows here
    assert.ok(block[1].includes("| `RETRY_BACKOFF_MS` | watcher | `2000` |"));
    assert.ok(block[1].includes("| `SPOOL_DIR` | api | required |"));
    for (const r of [...apiVariableRows(), ...watcherVariableRows()]) assert.notEqual(r.meaning.trim(), "", `${r.name} has a meaning`);
  });

  it("every link between the documents reaches a file, and every #anchor a heading there", () => {
    let checked = 0;
    for (const doc of DOCS) {
      for (const link of links(read(doc))) {
        const [file, anchor] = link.split("#") as [string, string | undefined];
        const target = file === "" ? doc : path.normalize(path.join(path.dirname(doc), file));
        assert.ok(existsSync(path.join(ROOT, target)), `${doc}: ${link} names ${target}, which does not exist`);
        if (anchor) assert.ok(anchors(read(target)).has(anchor), `${doc}: ${link}: no heading #${anchor} in ${target}`);
        checked++;
      }
    }
    assert.ok(checked >= 20, `only ${checked} links found: the link finder is broken`);
  });

  it("the README is a few screens (at most 250 lines) and points at every document in docs/", () => {
    const readme = read("README.md");
    assert.ok(readme.split("\n").length <= 250, `README.md has ${readme.split("\n").length} lines`);
    for (const doc of DOCS.slice(1)) assert.ok(readme.includes(`](${doc})`), `README.md links ${doc}`);
  });

  it("the layout table in docs/development.md names every folder ls shows, the agent's steps included, and no other", () => {
    const doc = read("docs/development.md");
    const section = doc.slice(doc.indexOf("## Layout and import rules"));
    const rows = section.split("\n").filter((l) => l.startsWith("| `"));
    const named = new Set(
      rows.flatMap((l) => [...(l.split(" | ")[0] as string).matchAll(/`([a-z]+\/(?:[a-z]+\/)?)`/g)].map((m) => m[1] as string)),
    );
    const dirs = (at: string) =>
      readdirSync(path.join(ROOT, at), { withFileTypes: true })
        .filter((e) => e.isDirectory() && !e.name.startsWith(".") && !["node_modules", "dist"].includes(e.name))
        .map((e) => `${at === "." ? "" : `${at}/`}${e.name}/`);
    const onDisk = new Set([...dirs("."), ...dirs("agent")]);
    assert.deepEqual([...named].sort(), [...onDisk].sort());
    // each file the agent's rows name is there
    for (const row of rows.filter((l) => l.startsWith("| `agent/"))) {
      const folder = /^\| `(agent\/(?:[a-z]+\/)?)`/.exec(row)?.[1] as string;
      for (const m of (row.split(" | ")[1] as string).matchAll(/`([a-z-]+\.ts)`/g))
        assert.ok(existsSync(path.join(ROOT, folder, m[1] as string)), `${folder}${m[1]}`);
    }
  });

  it("the example env files hold every variable the programs read", () => {
    const api = read(".env.example");
    const both = api + read("systemd/webhook-watcher.env.example");
    const has = (text: string, name: string) => new RegExp(`^#? ?${name}(_FILE)?=`, "m").test(text);
    for (const r of apiVariableRows()) assert.ok(has(api, r.name), `.env.example lacks ${r.name}`);
    for (const r of watcherVariableRows()) assert.ok(has(both, r.name), `neither example env file has ${r.name}`);
  });

  it("every package installed runs on the Node the project says it needs (engines)", () => {
    const min = semver.minVersion(JSON.parse(read("package.json")).engines.node as string)?.version as string;
    const lock = JSON.parse(read("package-lock.json")) as { packages: Record<string, { engines?: unknown }> };
    const refused = Object.entries(lock.packages)
      .map(([name, p]) => [name, (p.engines as { node?: string } | undefined)?.node] as const)
      .filter(([, range]) => typeof range === "string" && !semver.satisfies(min, range));
    assert.deepEqual(refused, [], `these declare a newer Node than ${min}`);
    assert.ok(Object.keys(lock.packages).length > 100);
  });

  it("swarmhook config prints one program's table, and refuses an unknown program with exit 2", async () => {
    const watcher = spawnTs("bin/swarmhook.ts", ["config", "--program", "watcher"], {});
    assert.equal(await watcher.exited, 0, watcher.err());
    assert.equal(watcher.out(), configTable("watcher"));
    assert.ok(watcher.out().includes("| `OUTBOX_MAX` | watcher | `1000` |") && !watcher.out().includes("| api |"));
    const bad = spawnTs("bin/swarmhook.ts", ["config", "--program", "frontend"], {});
    assert.equal(await bad.exited, 2);
    assert.match(bad.err(), /--program must be api or watcher \(not frontend\)/);
  });
});
