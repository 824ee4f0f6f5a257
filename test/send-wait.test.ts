// `swarmhook send --wait`, the workflow's last step: the real API on a port, the watcher deploying on
// the real one-node swarm, and the CLI waiting for the verdict through the API's history.
import assert from "node:assert/strict";
import { mkdtemp, rm, writeFile } from "node:fs/promises";
import os from "node:os";
import path from "node:path";
import { describe, it } from "node:test";
import { exitCodeOf, historyUrl, waitForVerdict } from "../bin/verdict.ts";
import { SECRET, startTestApi } from "./helpers/api.ts";
import { stackFile, startTestAgent } from "./helpers/agent.ts";
import { onEnd } from "./helpers/cleanup.ts";
import { buildWebImage } from "./helpers/images.ts";
import { randomSha } from "./helpers/jobs.ts";
import { spawnTs } from "./helpers/proc.ts";
import { useTempSpool } from "./helpers/spool.ts";
import { uniqueStack } from "./helpers/swarm.ts";

const TOKEN = "history-token-for-send-wait-0123456789abcdef";

describe("swarmhook send --wait", () => {
  it("exits 0 on a verified success, 1 with the reason on a rollback; without a token it does not wait; a wrong token is said", async (t) => {
    const s = await useTempSpool(t);
    const stack = uniqueStack(t);
    const [good, broken] = [randomSha(), randomSha()];
    await Promise.all([buildWebImage(good), buildWebImage(broken, { crash: true })]);
    const api = await startTestApi(s.root, { HISTORY_TOKEN: TOKEN, DEPLOY_REPOSITORY: "acme/shop" });
    onEnd(t, () => api.close());
    const agent = await startTestAgent(s.root, { STACK_FILE: stackFile("web"), STACK_NAME: stack });
    onEnd(t, () => agent.stop());
    const dir = await mkdtemp(path.join(os.tmpdir(), "swarmhook-send-"));
    onEnd(t, () => rm(dir, { recursive: true, force: true }));
    await writeFile(path.join(dir, "secret"), SECRET, { mode: 0o600 });
    await writeFile(path.join(dir, "token"), `${TOKEN}\n`, { mode: 0o600 });
    const send = async (sha: string, extra: string[], env: Record<string, string> = {}) => {
      const p = spawnTs(
        "bin/swarmhook.ts",
        [
          "send",
          "--url",
          `${api.url}/api/webhook/github`,
          "--secret-file",
          path.join(dir, "secret"),
          "--repository",
          "acme/shop",
          "--sha",
          sha,
          ...extra,
        ],
        env,
      );
      return { code: await p.exited, out: p.out(), err: p.err() };
    };

    const ok = await send(good, ["--wait", "--timeout", "120", "--history-token-file", path.join(dir, "token")]);
    assert.equal(ok.code, 0, ok.err);
    assert.match(ok.out, /^202 /);
    assert.match(ok.out, /\nsuccess\n$/);
    assert.match(ok.err, /: claimed\n/, "the states on the way are said on stderr");

    const bad = await send(broken, ["--wait", "--timeout", "180"], { DEPLOY_HISTORY_TOKEN: TOKEN });
    assert.equal(bad.code, 1, bad.out + bad.err);
    assert.match(bad.out, /\nrolled_back: .+/, "the outcome and its reason");

    const noToken = await send(randomSha(), ["--wait"]);
    assert.equal(noToken.code, 0, "the request was accepted; without a token that is all it says");
    assert.match(noToken.err, /--wait needs the API's history token .*: not waiting/);

    const wrong = await send(randomSha(), ["--wait"], { DEPLOY_HISTORY_TOKEN: "not-the-token-0123456789abcdef0123456789" });
    assert.equal(wrong.code, 1);
    assert.match(wrong.err, /the history token was refused \(401\)/);
  });

  it("the exit statuses and the history URL beside the webhook's", async () => {
    assert.deepEqual(
      ["success", "planned", "failed", "rolled_back", "blocked", "invalid", "superseded", "stale"].map(exitCodeOf),
      [0, 0, 1, 1, 1, 1, 3, 3],
    );
    assert.equal(historyUrl("https://app.example.com/api/webhook/github", "j1"), "https://app.example.com/api/deployments/j1");
    assert.equal(historyUrl("https://kvm8.example.com/hooks/x", "j 2"), "https://kvm8.example.com/api/deployments/j%202");
    // a 404 that lasts (the API keeps no history) ends the wait, in virtual time
    let now = 0;
    const fetchImpl = (() => Promise.resolve(new Response("{}", { status: 404 }))) as unknown as typeof fetch;
    await assert.rejects(
      waitForVerdict({
        webhookUrl: "http://x/api/webhook/github",
        jobId: "j",
        token: "t",
        timeoutMs: 600_000,
        fetchImpl,
        now: () => now,
        sleep: async (ms) => void (now += ms),
      }),
      /answers 404: the API keeps no history/,
    );
    assert.ok(now > 30_000 && now < 40_000, `gave up after about 30 s of 404s (${now} ms)`);
  });
});
