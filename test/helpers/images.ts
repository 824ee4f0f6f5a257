import { execFile } from "node:child_process";
import { mkdtemp, mkdir, rm, writeFile } from "node:fs/promises";
import os from "node:os";
import path from "node:path";
import { promisify } from "node:util";

const run = promisify(execFile);
export const WEB_REPO = "swarmhook-test/web";

/**
 * Build `swarmhook-test/web:<sha>` locally (no registry here): busybox httpd serving /health with
 * the commit, or, with `crash`, a process that exits 1 after a second, as a broken release would.
 */
export async function buildWebImage(sha: string, opts: { crash?: boolean; host?: string } = {}): Promise<string> {
  const ctx = await mkdtemp(path.join(os.tmpdir(), "swarmhook-img-"));
  try {
    await mkdir(path.join(ctx, "www"));
    await writeFile(path.join(ctx, "www", "health"), `${JSON.stringify({ status: "ok", commit: sha })}\n`);
    const cmd = opts.crash ? `["sh", "-c", "sleep 1; exit 1"]` : `["httpd", "-f", "-p", "8080", "-h", "/www"]`;
    await writeFile(path.join(ctx, "Dockerfile"), `FROM swarmhook-test/busybox:latest\nCOPY www /www\nCMD ${cmd}\n`);
    const tag = `${WEB_REPO}:${sha}`;
    await run("docker", [...(opts.host ? ["-H", opts.host] : []), "build", "-q", "-t", tag, ctx], { env: { ...process.env, DOCKER_BUILDKIT: "0" } });
    return tag;
  } finally {
    await rm(ctx, { recursive: true, force: true });
  }
}
