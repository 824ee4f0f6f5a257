import { randomBytes } from "node:crypto";
import { constants, promises as fs } from "node:fs";
import type { FileHandle } from "node:fs/promises";
import path from "node:path";

/**
 * The spool's directories: the job protocol (tmp → new → work → done | failed), `state/` (what each
 * stack runs, for `stale`) and `ids/` (one marker per delivery id, so a redelivery is recognised
 * without reading history), `index/` (the history index, so the newest records are found without
 * listing all of them) and `wtmp/` (the watcher's own temp files).
 *
 * Who may write what: the API (group app, assumed compromised) writes only its requests, in `tmp/`,
 * `new/` and `ids/`. Everything the watcher decides from is the watcher's alone: group app may read
 * it (the history page does) but never create, change, rename or remove anything there.
 */
export const API_DIRS = ["tmp", "new", "ids"] as const;
export const WATCHER_DIRS = ["work", "done", "failed", "state", "index", "wtmp"] as const;
export const SUBDIRS = [...API_DIRS, ...WATCHER_DIRS] as const;
export type Subdir = (typeof SUBDIRS)[number];

/** setgid + rwx for owner and group: the API (group app, 1011) writes its requests here. */
export const API_DIR_MODE = 0o2770;
/** setgid + rwx for the watcher, r-x for group app: read by the history page, written by the watcher only. */
export const WATCHER_DIR_MODE = 0o2750;
/** The root: group app may enter it, never add, rename or remove a directory in it. */
export const ROOT_MODE = 0o2750;
/** Every file in the spool: read by the other side through group app, written by its maker only. */
export const FILE_MODE = 0o640;

/** Which side a process is: the API writes its temp files in `tmp/`, the watcher in its own `wtmp/`. */
export type SpoolWriter = "api" | "watcher";

export const dirMode = (sub: Subdir): number => ((API_DIRS as readonly string[]).includes(sub) ? API_DIR_MODE : WATCHER_DIR_MODE);

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
  /** Who writes through this handle: it decides where temp files are made (`tmp/` or `wtmp/`). */
  readonly writer: SpoolWriter;
  dir(sub: Subdir): string;
  file(sub: Subdir, name: string): string;
  /**
   * Make every entry added to `sub` before this call durable (fsync of the directory). Concurrent
   * callers share one fsync: a call waits for the next fsync that starts after it (group commit).
   */
  sync(sub: Subdir): Promise<void>;
}

/**
 * Describe a spool rooted at `root`, for the API or the watcher; nothing is touched until `ensureSpool`.
 * A watcher's file is written in `wtmp/`, which only the watcher can write, so nothing can swap it
 * between the write and the link that publishes it.
 * @example
 * const spool = openSpool("/mnt/nfs/webhook_jobs", "api");
 * await ensureSpool(spool);
 */
export function openSpool(root: string, writer: SpoolWriter = "watcher"): Spool {
  const abs = path.resolve(root);
  const dir = (sub: Subdir) => path.join(abs, sub);
  const groups = new Map<Subdir, () => Promise<void>>();
  return Object.freeze({
    root: abs,
    writer,
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
      return new SpoolError(
        "unwritable",
        `${what}: spool not writable (${code}); check owners and modes (scripts/watcher-install.sh sets them)`,
        {
          cause: err,
        },
      );
    case "ENOSPC":
    case "EDQUOT":
      return new SpoolError("no_space", `${what}: no space left on the spool (${code})`, { cause: err });
    default:
      return new SpoolError("io", `${what}: spool I/O error (${code ?? String(err)})`, { cause: err });
  }
}

/**
 * Check the root exists and lay out the subdirectories this side needs. The root itself is never
 * created: a missing root means the NFS mount is missing, and writing under the empty mount point
 * would hide jobs from every other node. The watcher also sets the modes of the root, of every
 * subdirectory and of the files in its own directories (an older spool was group-writable
 * throughout); it returns what it corrected, and what it could not (not its own).
 */
export async function ensureSpool(spool: Spool): Promise<{ corrected: string[]; problems: string[] }> {
  let st;
  try {
    st = await fs.stat(spool.root);
  } catch (err) {
    throw toSpoolError(err, `spool root ${spool.root}`);
  }
  if (!st.isDirectory()) throw new SpoolError("root_missing", `spool root ${spool.root} is not a directory`);
  const subs = spool.writer === "watcher" ? SUBDIRS : API_DIRS;
  for (const sub of subs) {
    await makeSpoolDir(spool.dir(sub), dirMode(sub)).catch((err: unknown) => {
      throw toSpoolError(err, `creating ${spool.dir(sub)}`);
    });
  }
  const report = { corrected: [] as string[], problems: [] as string[] };
  if (spool.writer !== "watcher") return report;
  await setMode(spool.root, ROOT_MODE, "spool root", report);
  for (const sub of SUBDIRS) await setMode(spool.dir(sub), dirMode(sub), `${sub}/`, report);
  for (const sub of WATCHER_DIRS) await tightenFiles(spool.dir(sub), `${sub}/`, report);
  return report;
}

type ModeReport = { corrected: string[]; problems: string[] };

async function setMode(target: string, mode: number, what: string, report: ModeReport): Promise<void> {
  const st = await fs.lstat(target);
  if ((st.mode & 0o7777) === mode) return;
  try {
    await fs.chmod(target, mode);
    report.corrected.push(`${what} ${(st.mode & 0o7777).toString(8)} → ${mode.toString(8)}`);
  } catch (err) {
    report.problems.push(
      `${what} has mode ${(st.mode & 0o7777).toString(8)}, want ${mode.toString(8)} (${(err as NodeJS.ErrnoException).code}: not the watcher's own)`,
    );
  }
}

/** Files of a watcher directory that group or others may write (an older spool made them 0660): made 0640. */
async function tightenFiles(dir: string, what: string, report: ModeReport): Promise<void> {
  let fixed = 0;
  const refused: string[] = [];
  for (const name of await fs.readdir(dir)) {
    const st = await fs.lstat(path.join(dir, name)).catch(() => null);
    if (!st || st.isSymbolicLink() || (st.mode & 0o022) === 0) continue;
    try {
      await fs.chmod(path.join(dir, name), st.mode & 0o7755);
      fixed += 1;
    } catch {
      refused.push(name);
    }
  }
  if (fixed > 0) report.corrected.push(`${what}: ${fixed} files no longer group-writable`);
  if (refused.length > 0)
    report.problems.push(
      `${what}: ${refused.length} group-writable files are not the watcher's own (e.g. ${refused[0]}): chown them to the watcher`,
    );
}

/** Create a directory below the spool root with its mode, unless it exists. */
export async function makeSpoolDir(dir: string, mode: number): Promise<void> {
  try {
    await fs.mkdir(dir);
    await fs.chmod(dir, mode); // mkdir's mode is cut by the umask
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

/** The directory this side writes its temp files in: `tmp/` for the API, `wtmp/` (the watcher's alone) for the watcher. */
export const tempDir = (spool: Spool): Subdir => (spool.writer === "watcher" ? "wtmp" : "tmp");

/** Write `data` to this side's temp directory, fsync it, and return the temp path. The file is complete or absent. */
export async function writeTemp(spool: Spool, base: string, data: string | Uint8Array): Promise<string> {
  return writeTempFile(spool.dir(tempDir(spool)), base, data, FILE_MODE);
}

/**
 * Whether a file created with a mode keeps it, i.e. the process's umask cuts none of its bits: learnt
 * from the first file made with that mode, so the hot path makes no fchmod where the umask is harmless
 * (022, 027) and always makes one where it is not (077).
 */
const modeKept = new Map<number, boolean>();

async function keepMode(handle: FileHandle, mode: number): Promise<void> {
  let kept = modeKept.get(mode);
  if (kept === undefined) modeKept.set(mode, (kept = ((await handle.stat()).mode & 0o7777) === mode));
  if (!kept) await handle.chmod(mode);
}

/** Write `data` to a fresh file in `dir` with `mode`, fsync it, and return its path. The file is complete or absent. */
export async function writeTempFile(dir: string, base: string, data: string | Uint8Array, mode: number): Promise<string> {
  const tmp = path.join(dir, tmpName(base));
  const handle = await fs.open(tmp, constants.O_WRONLY | constants.O_CREAT | constants.O_EXCL | constants.O_NOFOLLOW, mode);
  try {
    await handle.writeFile(data);
    await keepMode(handle, mode);
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
