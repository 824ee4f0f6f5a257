import assert from "node:assert/strict";
import { watch } from "node:fs";
import { mkdtemp, readdir, rm, writeFile } from "node:fs/promises";
import os from "node:os";
import path from "node:path";
import { describe, it } from "node:test";
import { mountBindfs } from "./helpers/bindfs.ts";

describe("bindfs stands in for an NFS client mount", () => {
  it("shows a file written underneath but raises no inotify event for it", async () => {
    const src = await mkdtemp(path.join(os.tmpdir(), "swarmhook-nfs-src-"));
    const mount = await mountBindfs(src);
    const events: string[] = [];
    const watcher = watch(mount.mountpoint, (_type, name) => events.push(String(name)));
    try {
      await writeFile(path.join(src, "from-another-node.json"), "{}");
      await new Promise((r) => setTimeout(r, 500));
      assert.equal(events.length, 0, `no event for a write that bypassed the mount, got ${events.join(",")}`);
      assert.deepEqual(await readdir(mount.mountpoint), ["from-another-node.json"], "yet a poll sees it");
      await writeFile(path.join(mount.mountpoint, "through-the-mount.json"), "{}");
      await new Promise((r) => setTimeout(r, 300));
      assert.ok(events.includes("through-the-mount.json"), "a write through the mount itself does raise one");
    } finally {
      watcher.close();
      await mount.unmount();
      await rm(src, { recursive: true, force: true });
    }
  });
});
