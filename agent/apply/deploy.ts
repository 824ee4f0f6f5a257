import type { Attempt, Progress } from "../../spool/index.ts";
import type { DockerResult } from "../docker.ts";
import { createLineFilter, decisiveLine } from "../docker-lines.ts";
import { ended, type Deploying, type DeployResult } from "../deploying.ts";

/** Output that means "try again later": the daemon, the network or a registry, not the stack. */
const TRANSIENT = [
  /Cannot connect to the Docker daemon/i,
  /error during connect/i,
  /connection refused/i,
  /i\/o timeout/i,
  /TLS handshake timeout/i,
  /context deadline exceeded/i,
  /toomanyrequests/i,
  /net\/http: request canceled/i,
  /\b50[234] (Bad Gateway|Service Unavailable|Gateway Timeout)/i,
  /rpc error: code = (Unavailable|DeadlineExceeded)/i,
  /The swarm does not have a leader/i,
];
/** The longest wait between two attempts. */
export const MAX_BACKOFF_MS = 60_000;

export function isTransient(r: DockerResult): boolean {
  return r.spawnError === undefined && !r.timedOut && r.exitCode !== 0 && TRANSIENT.some((re) => re.test(r.outputTail));
}

function toAttempt(n: number, r: DockerResult): Attempt {
  const { command, exitCode, timedOut, durationMs, outputTail } = r;
  return { attempt: n, command, exitCode, timedOut, durationMs, outputTail, ...(r.spawnError ? { error: r.spawnError } : {}) };
}

/**
 * `docker stack deploy` of `files`, retried with exponential backoff (at most MAX_BACKOFF_MS) while the
 * failure is transient. `detach`: return once Swarm took the spec (a stage with a job: the CLI would
 * wait for a failing job for ever); the deploy's own verification waits instead.
 */
async function runDeploy(r: Deploying, files: readonly string[], detach: boolean): Promise<DockerResult | undefined> {
  const { docker, log, policy, stack, clock } = r.d;
  const env = r.env;
  const args = ["stack", "deploy", ...files.flatMap((f) => ["-c", f]), stack.name, "--with-registry-auth", `--detach=${detach}`];
  let last: DockerResult | undefined;
  for (let n = 1; n <= policy.retries + 1; n++) {
    log.info({ attempt: n, command: ["docker", ...args] }, "deploy started");
    const onLine = createLineFilter((line) => log.info({ docker: line }, "docker"));
    last = await docker.run(args, { env, timeoutMs: Math.max(1000, r.deadline - clock.now().getTime()), onLine });
    r.attempts.push(toAttempt(n, last));
    if (last.exitCode === 0 || last.timedOut || !isTransient(last) || n > policy.retries) break;
    const wait = Math.min(policy.retryBackoffMs * 2 ** (n - 1), MAX_BACKOFF_MS);
    log.warn({ attempt: n, exitCode: last.exitCode, retryInMs: wait }, "deploy failed transiently; retrying");
    await clock.sleep(wait);
  }
  return last;
}

/**
 * Create the configs and secrets decrypted for this deploy that Docker does not have yet, each from
 * stdin (`docker secret create --label com.docker.stack.namespace=<stack> NAME -`): the plaintext is
 * never in a file or an argument. Returns why one could not be created, or null.
 */
export async function createDecrypted(r: Deploying): Promise<string | null> {
  const { docker, stack, log } = r.d;
  for (const o of r.rendered.create) {
    if ((await docker.capture([o.kind, "inspect", "--format", "{{.ID}}", o.name], { timeoutMs: 30_000 })).exitCode === 0) continue;
    const c = await docker.capture([o.kind, "create", "--label", `com.docker.stack.namespace=${stack.name}`, o.name, "-"], {
      input: o.data,
      timeoutMs: 30_000,
    });
    if (c.exitCode !== 0)
      return `could not create ${o.kind} ${o.name}: ${c.spawnError ?? decisiveLine(c.outputTail) ?? `exit ${c.exitCode}`}`;
    log.info({ [o.kind]: o.name }, `created ${o.kind} ${o.name} from its encrypted file`);
  }
  return null;
}

/**
 * Apply the prepared release: `docker stack deploy` until it succeeds, fails for good or the deadline
 * passes. Ends the deploy when Swarm never took the spec; otherwise hands on the release `applied`
 * (a deploy that did not return in time is judged by the services' state, with a warning).
 */
export async function applyRelease(r: Deploying): Promise<Deploying | DeployResult> {
  await r.d.hooks?.onProgress?.("deploying", []);
  const missing = await createDecrypted(r);
  if (missing) return ended(r, "failed", missing);
  let last: DockerResult | undefined;
  try {
    last = await runDeploy(r, r.rendered.files, false);
  } finally {
    await r.removePlaintext(); // a decrypted env_file lives only as long as docker stack deploy reads it
  }
  return judgeDeploy(r, last);
}

/** One stage's stack file (stageDoc), deployed as applyRelease deploys the whole stack. */
export async function applyFiles(r: Deploying, files: readonly string[], detach: boolean): Promise<Deploying | DeployResult> {
  return judgeDeploy(r, await runDeploy(r, files, detach));
}

function judgeDeploy(r: Deploying, last: DockerResult | undefined): Deploying | DeployResult {
  if (!last) return ended(r, "failed", "no attempt ran");
  if (last.spawnError) return ended(r, "failed", `docker could not be run: ${last.spawnError}`);
  if (!last.timedOut && last.exitCode !== 0) {
    const why = isTransient(last) ? `still failing after ${r.attempts.length} attempts` : "permanent failure";
    const said = decisiveLine(last.outputTail);
    return ended(r, "failed", `docker stack deploy exited ${last.exitCode}: ${why}${said ? `: ${said}` : ""}`);
  }
  if (last.timedOut)
    r.warnings.push(`docker stack deploy did not return within ${r.d.policy.deployTimeoutMs / 1000} s; judged by the services' state`);
  return { ...r, applied: true };
}

/**
 * `docker stack deploy --detach=false` waits for the rollout itself: while `apply` runs, `look` is
 * asked every second where the services are and that is handed to `onProgress` ("deploying"), so
 * `swarmhook follow` and the page see the tasks move. A look that fails is skipped; the deploy is not.
 */
export async function whileApplying<T>(
  r: Deploying,
  apply: () => Promise<T>,
  look: () => Promise<Progress["services"]>,
  stage?: Progress["stage"],
): Promise<T> {
  const report = r.d.hooks?.onProgress;
  if (!report) return apply();
  let done = false;
  let wake = () => {};
  const pause = () =>
    new Promise<void>((resolve) => {
      wake = resolve;
      void r.d.clock.sleep(1000).then(resolve);
    });
  const poll = (async () => {
    while (!done) {
      await pause();
      if (done) break;
      const seen = await look().catch(() => null);
      if (seen && !done) await report("deploying", seen, stage);
    }
  })();
  try {
    return await apply();
  } finally {
    done = true;
    wake(); // the deploy is over: no last second of waiting
    await poll;
  }
}
