import type { DockerResult, DockerRunner, RunOptions } from "../../agent/docker.ts";

/** What one scripted docker call answers: exit code and output (stdout for `capture`). */
export interface Answer {
  exitCode: number;
  output?: string;
  stdout?: string;
}

/**
 * An in-process DockerRunner answering from a script, for the virtual-time tests of retry, backoff
 * and deadline logic. Every behaviour it stands in for is also tested on the real engine
 * (test/agent.test.ts: retries, a permanent failure, the deadline mid-verification, a health URL
 * answering 503) but the backoff cap, whose minute per try stays virtual. `answer` sees the argv
 * and returns what docker would have.
 */
export function scriptedDocker(answer: (args: string[], opts: RunOptions) => Answer): DockerRunner & { calls: string[][] } {
  const calls: string[][] = [];
  const exec = async (args: string[], opts: RunOptions = {}): Promise<DockerResult> => {
    calls.push(args);
    const a = answer(args, opts);
    for (const line of (a.output ?? "").split("\n").filter(Boolean)) opts.onLine?.(line);
    return {
      command: ["docker", ...args],
      exitCode: a.exitCode,
      timedOut: false,
      durationMs: 1,
      outputTail: a.output ?? "",
      stdout: a.stdout ?? "",
    };
  };
  return { calls, run: exec, capture: exec };
}
