import { randomBytes } from "node:crypto";
import { constants, promises as fs } from "node:fs";
import path from "node:path";

/**
 * The spool's directories: the job protocol (tmp → new → work → done | failed), `state/` (what each
 * stack runs, for `stale`) and `ids/` (one marker per delivery id, so a redelivery is recognised
 * without reading history) and `index/` (the history index, so the newest records are found
 * without listing all of them).
 */
export const SUBDIRS = ["tmp", "new", "work", "done", "failed", "state", "ids", "index", "outbox"] as const;
export type Subdir = (typeof SUBDIRS)[number];

/** setgid + rwx for owner and group: files made inside keep the spool's group (app, 1011). */
export const DIR_MODE = 0o2770;
/** Group-writable so the API (in a container) and the watcher (on the host) share jobs. */
export const FILE_MODE = 0o660;

export type SpoolErrorCode = "root_missing" | "unwritable" | "no_space" | "io";

/** A failure of the spool itself (not of a job): the API maps it to 503, the agent logs and retries. */
export class SpoolError extends Error {
  override readonly name = "SpoolError";
  constructor(
    readonly code: SpoolErrorCode,
    message: string,
    options?: { cause?: unknown },
  ) {
    super(message, options);
  }
}

export interface Spool {
  readonly root: string;
  dir(sub: Subdir): string;
  file(sub: Subdir, name: string): string;
  /**
   * Make every entry added to `sub` before this call durable (fsync of the directory). Concurrent
   * callers share one fsync: a call waits for the next fsync that starts after it (group commit).
   */
  sync(sub: Subdir): Promise<void>;
}

/**
 * Describe a spool rooted at `root`; nothing is touched until `ensureSpool`.
 * @example
 * const spool = openSpool("/mnt/nfs/webhook_jobs");
 * await ensureSpool(spool);
 */
export function openSpool(root: string): Spool {
  const abs = path.resolve(root);
  const dir = (sub: Subdir) => path.join(abs, sub);
  const groups = new Map<Subdir, () => Promise<void>>();
  return Object.freeze({
    root: abs,
    dir,
    file: (sub: Subdir, name: string) => path.join(abs, sub, name),
    sync(sub: Subdir) {
      let group = groups.get(sub);
      if (!group) groups.set(sub, (group = groupCommit(() => syncDir(dir(sub)))));
      return group();
    },
  });
}

/**
 * Share one run of `flush` among concurrent callers. A caller that arrives while a flush runs waits
 * for the next one, which starts when the current one ends and serves everyone who waited: an
 * entry made before the call is always covered by a flush that began after it.
 */
export function groupCommit(flush: () => Promise<void>): () => Promise<void> {
  let running: Promise<void> | null = null;
  let next: Promise<void> | null = null;
  const start = (): Promise<void> => {
    const p = flush().finally(() => {
      if (running === p) running = null;
    });
    running = p;
    return p;
  };
  return () => {
    if (!running) return start();
    if (!next) {
      next = running
        .catch(() => undefined)
        .then(() => {
          next = null;
          return start();
        });
    }
    return next;
  };
}

/** Map a filesystem error on the spool to a SpoolError that says what an operator should look at. */
export function toSpoolError(err: unknown, what: string): SpoolError {
  if (err instanceof SpoolError) return err;
  const code = (err as NodeJS.ErrnoException | undefined)?.code;
  switch (code) {
    case "ENOENT":
      return new SpoolError("root_missing", `${what}: spool directory missing (is the NFS mount there?)`, { cause: err });
    case "EACCES":
    case "EPERM":
    case "EROFS":
      return new SpoolError("unwritable", `${what}: spool not writable (${code}); check owner, group app and mode 2770`, { cause: err });
    case "ENOSPC":
    case "EDQUOT":
      return new SpoolError("no_space", `${what}: no space left on the spool (${code})`, { cause: err });
    default:
      return new SpoolError("io", `${what}: spool I/O error (${code ?? String(err)})`, { cause: err });
  }
}

/**
 * Check the root exists and create the subdirectories when absent. The root itself is never
 * created: a missing root means the NFS mount is missing, and writing under the empty mount point
 * would hide jobs from every other node.
 */
export async function ensureSpool(spool: Spool): Promise<void> {
  let st;
  try {
    st = await fs.stat(spool.root);
  } catch (err) {
    throw toSpoolError(err, `spool root ${spool.root}`);
  }
  if (!st.isDirectory()) throw new SpoolError("root_missing", `spool root ${spool.root} is not a directory`);
  for (const sub of SUBDIRS) {
    await makeSharedDir(spool.dir(sub)).catch((err: unknown) => {
      throw toSpoolError(err, `creating ${spool.dir(sub)}`);
    });
  }
}

/** Create a directory below the spool root with the group-shared mode, unless it exists. */
export async function makeSharedDir(dir: string): Promise<void> {
  try {
    await fs.mkdir(dir);
    await fs.chmod(dir, DIR_MODE); // mkdir's mode is cut by the umask
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code !== "EEXIST") throw err;
  }
}

/** The names in one spool directory; a failure is the spool's own (SpoolError). */
export async function listDir(spool: Spool, sub: Subdir): Promise<string[]> {
  try {
    return await fs.readdir(spool.dir(sub));
  } catch (err) {
    throw toSpoolError(err, `listing ${sub}/`);
  }
}

/** A unique temp name; the writer's pid and random bytes keep concurrent writers on several hosts apart. */
export function tmpName(base: string): string {
  return `${base}.${process.pid}-${randomBytes(6).toString("hex")}.tmp`;
}

/** Write `data` to `tmp/`, fsync it, and return the temp path. The file is complete or absent. */
export async function writeTemp(spool: Spool, base: string, data: string): Promise<string> {
  const tmp = spool.file("tmp", tmpName(base));
  const handle = await fs.open(tmp, constants.O_WRONLY | constants.O_CREAT | constants.O_EXCL, FILE_MODE);
  try {
    await handle.writeFile(data, "utf8");
    await handle.chmod(FILE_MODE);
    await handle.sync();
  } catch (err) {
    await handle.close().catch(() => undefined);
    await fs.unlink(tmp).catch(() => undefined);
    throw err;
  }
  await handle.close();
  return tmp;
}

/**
 * Publish a complete temp file under `dest` in one step that fails with EEXIST if the name is
 * taken: link(2) then unlink the temp name. Returns false when the name existed.
 */
export async function publishNoClobber(tmp: string, dest: string): Promise<boolean> {
  try {
    await fs.link(tmp, dest);
    return true;
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code === "EEXIST") return false;
    throw err;
  } finally {
    await fs.unlink(tmp).catch(() => undefined);
  }
}

/** Replace `dest` with a complete temp file in one step (rename), for files that are rewritten: state, markers. */
export async function replaceWith(tmp: string, dest: string): Promise<void> {
  try {
    await fs.rename(tmp, dest);
  } catch (err) {
    await fs.unlink(tmp).catch(() => undefined);
    throw err;
  }
}

/** fsync a directory so a new entry survives a crash of the server; filesystems that refuse are tolerated. */
export async function syncDir(dir: string): Promise<void> {
  let handle;
  try {
    handle = await fs.open(dir, constants.O_RDONLY | constants.O_DIRECTORY);
    await handle.sync();
  } catch (err) {
    const code = (err as NodeJS.ErrnoException).code;
    if (code !== "EINVAL" && code !== "ENOTSUP" && code !== "EISDIR" && code !== "EBADF") throw err;
  } finally {
    await handle?.close();
  }
}

/** A sortable UTC stamp for history file names: 20261124T003625123Z. */
export function stamp(date: Date): string {
  return date.toISOString().replace(/[-:.]/g, "");
}
