// The coalescing decision, pure: what to deploy, what is superseded, what is stale. No Docker.
import assert from "node:assert/strict";
import { describe, it } from "node:test";
import { coalesce, type Pending } from "../agent/coalesce.ts";
import type { Deployed, DeployJob } from "../spool/index.ts";
import { makeJob, randomSha } from "./helpers/jobs.ts";

let clock = Date.parse("2026-11-26T10:00:00Z");
/** A job received one second after the previous one. */
function pending(o: Partial<DeployJob> = {}): Pending {
  clock += 1000;
  const job = makeJob({ receivedAt: new Date(clock).toISOString(), ...o });
  return { jobId: job.deliveryId, job, claimedAt: new Date(clock) };
}
const deployedAt = (sha: string, moves: Deployed["moves"] = []): Deployed => ({
  stack: "app",
  sha,
  jobId: "x",
  finishedAt: new Date(clock).toISOString(),
  moves,
});
const shas = (ps: { pending: Pending }[]) => ps.map((p) => p.pending.job.sha);

describe("coalesce", () => {
  it("deploys the newest received and supersedes the rest, whatever their commit dates", () => {
    const a = pending({ committedAt: "2099-01-01T00:00:00Z" });
    const b = pending({ committedAt: "2001-01-01T00:00:00Z" });
    const d = coalesce([b, a], null);
    assert.equal(d.deploy, b);
    assert.deepEqual(shas(d.superseded), [a.job.sha]);
    assert.deepEqual(d.stale, []);
  });

  it("lets a commit dated 2099 deploy, and the next ordinary push after it", () => {
    const [x, y, z] = [randomSha(), randomSha(), randomSha()];
    const future = pending({ sha: y, before: x, committedAt: "2099-12-31T23:59:59Z" });
    assert.equal(coalesce([future], deployedAt(x)).deploy, future);
    const next = pending({ sha: z, before: y, committedAt: "2026-11-26T10:00:00Z" });
    const d = coalesce([next], deployedAt(y, [{ before: x, after: y }]));
    assert.equal(d.deploy, next);
    assert.deepEqual(d.stale, []);
  });

  it("refuses a late push the branch has already moved past (push chain), also two steps back", () => {
    const [a, b, c] = [randomSha(), randomSha(), randomSha()];
    const state = deployedAt(c, [
      { before: a, after: b },
      { before: b, after: c },
    ]);
    const lateB = pending({ sha: b, before: a });
    const lateA = pending({ sha: a });
    const d = coalesce([lateB, lateA], state);
    assert.equal(d.deploy, null);
    assert.deepEqual(shas(d.stale).sort(), [a, b].sort());
    assert.match(d.stale[0]?.reason ?? "", new RegExp(`behind the deployed ${c.slice(0, 12)}`));
  });

  it("judges a late push against a newer one pending in the same batch", () => {
    const [a, b, c] = [randomSha(), randomSha(), randomSha()];
    const newer = pending({ sha: c, before: b });
    const late = pending({ sha: b, before: a }); // received last, but the branch went b → c
    const d = coalesce([newer, late], deployedAt(a));
    assert.equal(d.deploy, newer);
    assert.deepEqual(shas(d.stale), [b]);
    assert.match(d.stale[0]?.reason ?? "", /behind the pending/);
  });

  it("never judges a manual job stale, and redeploys the deployed commit itself", () => {
    const [a, b] = [randomSha(), randomSha()];
    const state = deployedAt(b, [{ before: a, after: b }]);
    const manual = pending({ sha: a, event: "manual" });
    assert.equal(coalesce([manual], state).deploy, manual);
    const again = pending({ sha: b, before: a });
    assert.equal(coalesce([again], state).deploy, again);
  });

  it("deploys a force-push back to an earlier commit by receipt order", () => {
    const [a, b] = [randomSha(), randomSha()];
    const back = pending({ sha: a, before: b, forced: true });
    const d = coalesce([back], deployedAt(b, [{ before: a, after: b }]));
    assert.equal(d.deploy, back, "a and b reach each other: neither is behind");
  });

  it("remembers the moves it saw, newest last and bounded", () => {
    const [a, b, c] = [randomSha(), randomSha(), randomSha()];
    const d = coalesce([pending({ sha: c, before: b }), pending({ sha: b, before: a })], deployedAt(a));
    assert.deepEqual(d.moves.map((m) => m.after).sort(), [b, c].sort());
    const many = Array.from({ length: 600 }, () => ({ before: randomSha(), after: randomSha() }));
    const bound = (n: number) => coalesce([pending()], deployedAt(a, many.slice(0, n))).moves;
    assert.equal(bound(500).length, 500, "500 moves are all kept");
    const kept = bound(501);
    assert.equal(kept.length, 500, "the 501st drops one");
    assert.deepEqual(kept.at(0), many[1], "the oldest is the one dropped");
    assert.deepEqual(kept.at(-1), many[500], "newest last");
    assert.equal(bound(600).length, 500);
  });
});
