import { createHash } from "node:crypto";
import { promises as fs } from "node:fs";
import path from "node:path";
import { execa } from "execa";
import { allowedEnv } from "../docker.ts";

/** A stack whose file comes from git: the repository and the stack file's path in it. */
export interface GitSource {
  url: string;
  path: string;
}

const FETCH_TIMEOUT_MS = 120_000;
const LOCAL_TIMEOUT_MS = 30_000;

/** git with an argv array, never a shell; no terminal prompt (a missing credential fails at once). */
async function git(args: string[], o: { timeoutMs?: number; reject?: boolean; env?: Record<string, string> } = {}) {
  return execa("git", args, {
    timeout: o.timeoutMs ?? LOCAL_TIMEOUT_MS,
    reject: o.reject ?? true,
    // the allow-listed environment only (and GIT_SSH_COMMAND for a deploy key): never the watcher's secrets
    env: { ...allowedEnv(process.env), ...sshCommand(), GIT_TERMINAL_PROMPT: "0", GIT_ASKPASS: "/bin/false", LC_ALL: "C", ...o.env },
    extendEnv: false,
    stdin: "ignore",
  });
}

const sshCommand = (): Record<string, string> => (process.env.GIT_SSH_COMMAND ? { GIT_SSH_COMMAND: process.env.GIT_SSH_COMMAND } : {});

/** A token for an http(s) repository, when the watcher has one for its host (GitHub's). */
export type GitToken = (url: string) => Promise<string | undefined>;

/**
 * git's configuration for one fetch that authenticates to `url` with `token`: an Authorization
 * header scoped to that URL, passed in the environment (GIT_CONFIG_*), so it is never written to the
 * mirror's config, never in argv (ps), never in a log line.
 */
export function tokenEnv(url: string, token: string): Record<string, string> {
  const basic = Buffer.from(`x-access-token:${token}`).toString("base64");
  return { GIT_CONFIG_COUNT: "1", GIT_CONFIG_KEY_0: `http.${url}.extraHeader`, GIT_CONFIG_VALUE_0: `Authorization: Basic ${basic}` };
}

/** Why a git command failed, in one line without its arguments (a URL may carry a token). */
function said(err: unknown): string {
  const e = err as { stderr?: string; timedOut?: boolean; shortMessage?: string };
  if (e.timedOut) return "timed out";
  const line = (e.stderr ?? "").split("\n").find((l) => /fatal|error/i.test(l)) ?? (e.stderr ?? "").split("\n")[0];
  return (line || e.shortMessage || String(err)).replace(/https?:\/\/[^@\s]+@/g, "https://***@").slice(0, 300);
}

export class GitError extends Error {}

/**
 * The watcher's bare mirror of one repository, on local disk under STATE_DIR (never the NFS spool):
 * fetched on demand, read with plumbing commands only.
 * @example
 * const m = await openMirror("/var/lib/swarmhook", { url: "file:///srv/git/shop.git", path: "stack/stack.yaml" });
 * await m.fetch(); if (await m.onBranch(sha, ["main"])) await m.extract(sha, dir);
 */
export async function openMirror(stateDir: string, src: GitSource, token?: GitToken) {
  const dir = path.join(stateDir, "git", `${createHash("sha256").update(src.url).digest("hex").slice(0, 16)}.git`);
  const gd = ["--git-dir", dir];
  if (!(await fs.stat(path.join(dir, "HEAD")).catch(() => null))) {
    await fs.mkdir(path.dirname(dir), { recursive: true, mode: 0o750 });
    await git(["init", "--quiet", "--bare", dir]);
    await git([...gd, "config", "remote.origin.url", src.url]);
    await git([...gd, "config", "remote.origin.fetch", "+refs/heads/*:refs/remotes/origin/*"]);
  }
  const fetchNow = () => fetchMirror(dir, src, token);
  return {
    dir,
    /**
     * Fetch every branch, trying three times (1 s, then 3 s apart). Lock files a killed fetch left
     * behind are removed first: the watcher is the mirror's one user (systemd ends a dead run's git).
     */
    fetch: (): Promise<void> => oneAtATime(dir, fetchNow),
    /**
     * Every branch's tip as the repository says it now (`git ls-remote --heads`: one round trip, nothing
     * fetched), branch name → commit. The reconcile loop asks this each pass and fetches only for a tip
     * it needs to judge.
     */
    remoteTips: (): Promise<Map<string, string>> => lsRemote(dir, src, token),
    /** The commit's committer date (shown to people only: a committer sets it), or null when it cannot be read. */
    async committedAt(sha: string): Promise<string | null> {
      const r = await git([...gd, "show", "-s", "--format=%cI", sha], { reject: false });
      const d = new Date(r.stdout.trim());
      return r.exitCode === 0 && !Number.isNaN(d.getTime()) ? d.toISOString() : null;
    },
    /** The full SHA a commit, a SHA prefix or a ref names, or null. */
    async resolve(rev: string): Promise<string | null> {
      const r = await git([...gd, "rev-parse", "--verify", "--quiet", `${rev}^{commit}`], { reject: false });
      return r.exitCode === 0 && /^[0-9a-f]{40}$/.test(r.stdout.trim()) ? r.stdout.trim() : null;
    },
    async hasCommit(sha: string): Promise<boolean> {
      return (await git([...gd, "cat-file", "-e", `${sha}^{commit}`], { reject: false })).exitCode === 0;
    },
    /** Whether `a` is an ancestor of `b` (or the same commit). */
    async isAncestor(a: string, b: string): Promise<boolean> {
      const r = await git([...gd, "merge-base", "--is-ancestor", a, b], { reject: false });
      if (r.exitCode === 0 || r.exitCode === 1) return r.exitCode === 0;
      throw new GitError(`git merge-base failed: ${said(r)}`);
    },
    /** The first of `branches` whose tip has `sha` in its history, or null. */
    async onBranch(sha: string, branches: readonly string[]): Promise<string | null> {
      for (const b of branches) {
        const tip = `refs/remotes/origin/${b}`;
        if ((await git([...gd, "rev-parse", "--verify", "--quiet", tip], { reject: false })).exitCode !== 0) continue;
        if (await this.isAncestor(sha, tip)) return b;
      }
      return null;
    },
    /** Write the commit's whole tree into `into` (a fresh directory), exactly as committed. */
    async extract(sha: string, into: string): Promise<void> {
      await fs.mkdir(into, { recursive: true, mode: 0o700 });
      try {
        await execa("git", [...gd, "archive", "--format=tar", sha], {
          timeout: LOCAL_TIMEOUT_MS,
          env: { ...allowedEnv(process.env), LC_ALL: "C" },
          extendEnv: false,
        }).pipe("tar", ["-x", "-C", into]);
      } catch (err) {
        throw new GitError(`could not check out ${sha}: ${said(err)}`);
      }
    },
  };
}
export type Mirror = Awaited<ReturnType<typeof openMirror>>;

async function lsRemote(dir: string, src: GitSource, token: GitToken | undefined): Promise<Map<string, string>> {
  const t = /^https?:\/\//.test(src.url) ? await token?.(src.url) : undefined;
  const r = await git(["--git-dir", dir, "ls-remote", "--heads", "origin"], {
    timeoutMs: FETCH_TIMEOUT_MS,
    env: t ? tokenEnv(src.url, t) : {},
  }).catch((err: unknown) => {
    throw new GitError(`git ls-remote of the stack's repository failed: ${said(err)}`);
  });
  const out = new Map<string, string>();
  for (const l of r.stdout.split("\n")) {
    const m = /^([0-9a-f]{40})\trefs\/heads\/(.+)$/.exec(l);
    if (m) out.set(m[2] as string, m[1] as string);
  }
  return out;
}

/** Fetch every branch into the mirror, three tries (1 s, then 3 s apart), stale lock files removed first. */
async function fetchMirror(dir: string, src: GitSource, token: GitToken | undefined): Promise<void> {
  const gd = ["--git-dir", dir];
  await removeStaleLocks(dir);
  for (let attempt = 1; ; attempt++) {
    try {
      const t = /^https?:\/\//.test(src.url) ? await token?.(src.url) : undefined;
      const env = t ? tokenEnv(src.url, t) : {};
      await git([...gd, "fetch", "--quiet", "--prune", "--no-tags", "origin"], { timeoutMs: FETCH_TIMEOUT_MS, env });
      return;
    } catch (err) {
      if (attempt >= 3) throw new GitError(`git fetch from the stack's repository failed: ${said(err)}`);
      await new Promise((r) => setTimeout(r, attempt === 1 ? 1000 : 3000));
    }
  }
}

/** The fetch under way per mirror: a deploy's and the reconcile loop's fetches of one mirror run one after the other. */
const fetching = new Map<string, Promise<void>>();

function oneAtATime(dir: string, fetch: () => Promise<void>): Promise<void> {
  const next = (fetching.get(dir) ?? Promise.resolve()).catch(() => undefined).then(fetch);
  fetching.set(dir, next);
  const forget = () => {
    if (fetching.get(dir) === next) fetching.delete(dir);
  };
  next.then(forget, forget);
  return next;
}

async function removeStaleLocks(dir: string): Promise<void> {
  const stack = [dir];
  while (stack.length > 0) {
    const d = stack.pop() as string;
    for (const e of await fs.readdir(d, { withFileTypes: true }).catch(() => [])) {
      const p = path.join(d, e.name);
      if (e.isDirectory() && e.name !== "objects") stack.push(p);
      else if (e.isFile() && e.name.endsWith(".lock")) await fs.rm(p, { force: true });
    }
  }
}

/** The stack file's path inside a checkout: relative, no `..`, so a commit cannot point the watcher elsewhere. */
export function fileInCheckout(root: string, rel: string): string {
  const norm = path.posix.normalize(rel);
  if (path.posix.isAbsolute(norm) || norm.startsWith("..")) throw new GitError(`git.path ${rel} must be a path inside the repository`);
  return path.join(root, norm);
}
