import { execa } from "execa";

/** How much of a command's output a record keeps. */
export const TAIL_LINES = 200;
export const TAIL_BYTES = 16 * 1024;

export interface DockerResult {
  command: string[];
  exitCode: number | null;
  timedOut: boolean;
  durationMs: number;
  /** The last lines of stdout and stderr together, bounded by TAIL_LINES and TAIL_BYTES. */
  outputTail: string;
  /** Full stdout, kept only by `capture`. */
  stdout: string;
  /** Set when docker could not be started at all (not on PATH, not executable). */
  spawnError?: string;
}

export interface RunOptions {
  env?: Record<string, string>;
  timeoutMs?: number;
  /** Called with each output line as it arrives (stdout and stderr). */
  onLine?: (line: string) => void;
  /** What the command reads from stdin (a decrypted secret for `docker secret create NAME -`); else stdin is closed. */
  input?: Buffer;
}

export interface DockerRunner {
  /** Run a long command, streaming its lines; only a tail is kept. */
  run(args: string[], opts?: RunOptions): Promise<DockerResult>;
  /** Run a short query and keep its whole stdout (JSON from inspect, ps, config). */
  capture(args: string[], opts?: RunOptions): Promise<DockerResult>;
}

/** What docker and git may see of the watcher's environment: where things are and how to reach them, never its secrets. */
const ALLOWED =
  /^(PATH|HOME|USER|LOGNAME|LANG|LC_[A-Z]+|TZ|TMPDIR|XDG_RUNTIME_DIR|SSH_AUTH_SOCK|DOCKER_[A-Z_]+|(http|https|no|all)_proxy|(HTTP|HTTPS|NO|ALL)_PROXY)$/;

/** The allow-listed part of an environment (see ALLOWED). */
export function allowedEnv(env: NodeJS.ProcessEnv): Record<string, string> {
  const out: Record<string, string> = {};
  for (const [k, v] of Object.entries(env)) if (v !== undefined && ALLOWED.test(k)) out[k] = v;
  return out;
}

function tail(lines: string[]): string {
  let text = lines.slice(-TAIL_LINES).join("\n");
  if (text.length > TAIL_BYTES) text = text.slice(-TAIL_BYTES);
  return text;
}

/**
 * The one process boundary: spawn `docker` with an argv array (never a shell), in its own process
 * group, so a timeout kills docker and anything it started. Never throws for a failed command.
 * docker sees only the allow-listed part of the watcher's environment (allowedEnv: PATH, HOME, locale,
 * DOCKER_*, proxies), then `env` (tests point DOCKER_HOST elsewhere), then each call's own (a stack's
 * variables: IMAGE_TAG, DEPLOY_SHA, STACK_ENV, the stack's `env:`).
 * @example
 * const docker = createDockerRunner();
 * const r = await docker.run(["stack", "deploy", "-c", file, "app", "--with-registry-auth", "--detach=false"], { timeoutMs: 600_000 });
 */
export function createDockerRunner(opts: { bin?: string; env?: Record<string, string>; base?: NodeJS.ProcessEnv } = {}): DockerRunner {
  const bin = opts.bin ?? "docker";
  const base = allowedEnv(opts.base ?? process.env);

  async function exec(args: string[], o: RunOptions, keepStdout: boolean): Promise<DockerResult> {
    const started = performance.now();
    const command = [bin, ...args];
    const sub = execa(bin, args, {
      reject: false,
      all: true,
      ...(o.input ? { input: o.input } : { stdin: "ignore" as const }),
      // never the watcher's whole environment: a stack file could interpolate ${GITHUB_TOKEN} into a service
      env: { ...base, ...opts.env, ...o.env },
      extendEnv: false,
      detached: true,
      buffer: { stdout: keepStdout, stderr: false, all: false },
      maxBuffer: 64 * 1024 * 1024,
      stripFinalNewline: true,
    });
    let timedOut = false;
    const timer =
      o.timeoutMs === undefined
        ? undefined
        : setTimeout(() => {
            timedOut = true;
            try {
              if (sub.pid !== undefined) process.kill(-sub.pid, "SIGKILL"); // the whole group
            } catch {
              sub.kill("SIGKILL");
            }
          }, o.timeoutMs);
    const lines: string[] = [];
    try {
      for await (const line of sub.iterable({ from: "all" })) {
        const text = String(line);
        lines.push(text);
        if (lines.length > TAIL_LINES * 2) lines.splice(0, lines.length - TAIL_LINES);
        o.onLine?.(text);
      }
    } catch {
      // the iterable rejects when the process fails; the result below says how
    }
    const r = await sub;
    if (timer) clearTimeout(timer);
    const spawnError = r.exitCode === undefined && !timedOut && r.signal === undefined ? r.shortMessage : undefined;
    return {
      command,
      exitCode: r.exitCode ?? null,
      timedOut,
      durationMs: Math.round(performance.now() - started),
      outputTail: tail(lines),
      stdout: keepStdout && typeof r.stdout === "string" ? r.stdout : "",
      ...(spawnError ? { spawnError } : {}),
    };
  }

  return {
    run: (args, o = {}) => exec(args, o, false),
    capture: (args, o = {}) => exec(args, o, true),
  };
}
