import { promises as fs } from "node:fs";
import path from "node:path";
import { parse as parseYaml } from "yaml";
import { splitSelector } from "./secrets.ts";

type RawDoc = {
  services?: Record<string, { env_file?: unknown } | null>;
  configs?: Record<string, { file?: unknown } | null>;
  secrets?: Record<string, { file?: unknown } | null>;
};

const inside = (root: string, p: string) => p === root || p.startsWith(`${root}${path.sep}`);

/**
 * Why a stack file from a commit reaches outside its checkout, or null. The stack file and every
 * file it references (`env_file:`, `configs:`/`secrets:` `file:`) are resolved with their symbolic
 * links (realpath) and must stay inside `root`: a commit may not read the watcher's host. A
 * referenced path with `$` is refused too (interpolation could point it anywhere).
 * @example
 * const why = await outsideCheckout("/var/lib/swarmhook/jobs/J", "/var/lib/swarmhook/jobs/J/stack.yaml");
 */
export async function outsideCheckout(root: string, stackFile: string): Promise<string | null> {
  const base = await fs.realpath(root);
  const where = (p: string) => path.relative(root, p) || ".";
  const real = await fs.realpath(stackFile).catch(() => null);
  if (real === null) return `the stack file ${where(stackFile)} is not in the commit`;
  if (!inside(base, real)) return `the stack file ${where(stackFile)} is a symbolic link out of the checkout`;
  const doc = (parseYaml(await fs.readFile(real, "utf8")) ?? {}) as RawDoc;
  const refs: string[] = [];
  for (const [name, svc] of Object.entries(doc.services ?? {})) {
    const envFiles = svc?.env_file;
    for (const f of Array.isArray(envFiles) ? envFiles : envFiles === undefined ? [] : [envFiles]) {
      const p = typeof f === "string" ? f : (f as { path?: unknown } | null)?.path;
      if (typeof p === "string") refs.push(p);
      else return `service ${name}: env_file must be a path`;
    }
  }
  for (const group of [doc.configs, doc.secrets])
    for (const def of Object.values(group ?? {})) if (typeof def?.file === "string") refs.push(def.file);
  for (const ref of refs) {
    if (ref.includes("$")) return `${ref}: a referenced file's path may not be interpolated in a stack from git`;
    const abs = (await splitSelector(path.resolve(path.dirname(stackFile), ref))).file; // `secrets.sops.yaml#key`: the file
    const resolved = await fs.realpath(abs).catch(() => null);
    if (!inside(base, resolved ?? path.resolve(path.dirname(real), ref)))
      return `${ref}: ${resolved === null ? "points" : "resolves"} outside the checkout (a commit may reference only its own files)`;
  }
  return null;
}
