import { spawn, type ChildProcess } from "node:child_process";
import path from "node:path";
import { waitFor } from "./swarm.ts";

export const ROOT = path.join(import.meta.dirname, "..", "..");

export interface Proc {
  child: ChildProcess;
  /** stdout split into lines, stderr chunks appended, as they arrive */
  lines: string[];
  out(): string;
  err(): string;
  exited: Promise<number | null>;
}

/**
 * Run one of the project's TypeScript entry points (path from the repository root) in a child node
 * with tsx, a minimal environment plus `env`, optionally as another uid/gid.
 */
export function spawnTs(script: string, args: string[], env: Record<string, string>, as?: { uid: number; gid: number }): Proc {
  return spawnNode(["--import", "tsx", path.join(ROOT, script), ...args], env, as);
}

/** Run a compiled entry point from dist/ (as production does: `npm test` builds first), e.g. "api/main.js". */
export function spawnDist(script: string, args: string[], env: Record<string, string>): Proc {
  return spawnNode([path.join(ROOT, "dist", script), ...args], env);
}

function spawnNode(argv: string[], env: Record<string, string>, as?: { uid: number; gid: number }): Proc {
  const child = spawn(process.execPath, argv, {
    cwd: ROOT,
    env: { PATH: process.env.PATH ?? "", ...env },
    stdio: ["ignore", "pipe", "pipe"],
    ...as,
  });
  const lines: string[] = [];
  let out = "";
  let err = "";
  let buf = "";
  child.stdout?.on("data", (d: Buffer) => {
    out += d.toString();
    const parts = (buf + d.toString()).split("\n");
    buf = parts.pop() ?? "";
    lines.push(...parts);
  });
  child.stderr?.on("data", (d: Buffer) => {
    err += d.toString();
    lines.push(d.toString());
  });
  return { child, lines, out: () => out, err: () => err, exited: new Promise((r) => child.on("close", (code) => r(code))) };
}

/** Whether a process of this pid still exists (signal 0 asks the kernel without sending anything). */
export function pidAlive(pid: number): boolean {
  try {
    process.kill(pid, 0);
    return true;
  } catch {
    return false;
  }
}

/** Send `signal` unless the process already ended; resolve with its exit code. */
export async function stopProc(p: Proc | undefined, signal: NodeJS.Signals = "SIGTERM"): Promise<number | null> {
  if (!p) return null;
  if (p.child.exitCode === null && p.child.signalCode === null) p.child.kill(signal);
  return p.exited;
}

/** Wait until a log line containing `text` (and, if given, `also`) was printed. */
export function waitForLine(p: Proc | undefined, text: string, also?: string, timeoutMs = 120_000): Promise<true> {
  return waitFor(
    `log "${text}"`,
    async () => (p?.lines.some((l) => l.includes(text) && (!also || l.includes(also))) ? true : undefined),
    timeoutMs,
    50,
  );
}
