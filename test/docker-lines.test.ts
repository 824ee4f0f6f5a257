// What reaches the journal of docker's output: each progress line once, no terminal control.
import assert from "node:assert/strict";
import { describe, it } from "node:test";
import { createLineFilter } from "../agent/docker-lines.ts";
import { stripControl } from "../lib/text.ts";

describe("docker's output lines", () => {
  it("collapse docker's redrawn progress: a line seen among the recent ones is logged once", () => {
    const logged: string[] = [];
    const feed = createLineFilter((l) => logged.push(l));
    const frame = [
      "overall progress: 1 out of 2 tasks",
      "1/2: running   [==================================================>]",
      "2/2: starting  [============================================>      ]",
    ];
    for (let i = 0; i < 5; i++) for (const l of frame) feed(l); // five redraws a second, as journald got them
    feed("overall progress: 2 out of 2 tasks");
    feed("verify: Waiting 5 seconds to verify that tasks are stable...");
    feed("verify: Waiting 4 seconds to verify that tasks are stable...");
    feed("\u001b[2K\u001b[1A");
    feed("verify: Service converged");
    assert.deepEqual(logged, [
      ...frame,
      "overall progress: 2 out of 2 tasks",
      "verify: Waiting 5 seconds to verify that tasks are stable...",
      "verify: Waiting 4 seconds to verify that tasks are stable...",
      "verify: Service converged",
    ]);
  });

  it("strip terminal control sequences but keep the text", () => {
    assert.equal(
      stripControl("\u001b[31mred\u001b[0m \u001b]8;;http://x\u0007link\u001b]8;;\u0007 \u0007bell\ttab\nline"),
      "red link bell\ttab\nline",
    );
  });
});
