// A repository committed to as a developer would, and an AGENT_CONFIG deploying a stack from it:
// shared by the tests of stacks from git and of the reconcile loop.
import { mkdtemp, rm, writeFile } from "node:fs/promises";
import os from "node:os";
import path from "node:path";
import { execa } from "execa";
import { onEnd, type Ends } from "./cleanup.ts";
import { buildWebImage } from "./images.ts";

export const REPO = "acme/shop";

/** A repository with one branch `main`, committed to by the test as a developer would. */
export async function makeRepo(t: Ends) {
  const dir = await mkdtemp(path.join(os.tmpdir(), "swarmhook-git-"));
  onEnd(t, () => rm(dir, { recursive: true, force: true }));
  const git = (...args: string[]) => execa("git", args, { cwd: dir }).then((r) => r.stdout.trim());
  await git("init", "--quiet", "-b", "main");
  await git("config", "user.email", "dev@example.com");
  await git("config", "user.name", "dev");
  /** Commit a stack file asking for `replicas`, and the env file it references; returns the SHA. */
  const commit = async (replicas: number, greeting: string) => {
    const stack = [
      'version: "3.8"',
      "services:",
      "  web:",
      "    image: swarmhook-test/web:${IMAGE_TAG:?IMAGE_TAG is set by the agent}",
      "    env_file: web.env",
      "    deploy:",
      `      replicas: ${replicas}`,
      "      endpoint_mode: dnsrr",
      "      update_config: { parallelism: 2, delay: 0s, failure_action: rollback, monitor: 1s, order: start-first }",
      "      restart_policy: { condition: any, delay: 1s }",
      "",
    ].join("\n");
    await writeFile(path.join(dir, "stack.yaml"), stack);
    await writeFile(path.join(dir, "web.env"), `GREETING=${greeting}\n`);
    await git("add", "-A");
    await git("commit", "--quiet", "-m", `replicas ${replicas}, ${greeting}`);
    const sha = await git("rev-parse", "HEAD");
    await buildWebImage(sha);
    return sha;
  };
  return { dir, git, commit };
}

/** A STATE_DIR and an AGENT_CONFIG with one stack from `url` (branch main), removed when the test ends. */
export async function gitConfig(t: Ends, url: string, stack: string, extra = ""): Promise<{ stateDir: string; config: string }> {
  const stateDir = await mkdtemp(path.join(os.tmpdir(), "swarmhook-state-"));
  onEnd(t, () => rm(stateDir, { recursive: true, force: true }));
  const config = path.join(stateDir, "stacks.yaml");
  await writeFile(
    config,
    `stacks:\n  - name: ${stack}\n    repository: ${REPO}\n    branches: [main]\n    git: { url: "${url}", path: stack.yaml }\n${extra}`,
  );
  return { stateDir, config };
}
