import { execFile } from "node:child_process";
import { mkdtemp, rm } from "node:fs/promises";
import os from "node:os";
import path from "node:path";
import { promisify } from "node:util";

const run = promisify(execFile);

export interface BindfsMount {
  mountpoint: string;
  unmount(): Promise<void>;
}

/**
 * Mount `source` through bindfs (FUSE). Like an NFS client, the mount raises no inotify event
 * for a file written to `source` directly, as nfsd's writes from other nodes would be.
 */
export async function mountBindfs(source: string): Promise<BindfsMount> {
  const mountpoint = await mkdtemp(path.join(os.tmpdir(), "swarmhook-bindfs-"));
  // no attribute caching on the mount: the remaining difference to NFS is the missing events
  await run("bindfs", ["--no-allow-other", "-o", "attr_timeout=0,entry_timeout=0,negative_timeout=0", source, mountpoint]);
  return {
    mountpoint,
    unmount: async () => {
      await run("fusermount", ["-u", mountpoint]).catch(() => run("umount", ["-l", mountpoint]));
      await rm(mountpoint, { recursive: true, force: true });
    },
  };
}
