#!/usr/bin/env node
// The operator's command line: small tools around the API, the watcher and the spool.
import path from "node:path";
import { parseArgs } from "node:util";
import { COMMIT_SHA, REPOSITORY, STACK_NAME, shortSha } from "../spool/index.ts";
import { loadAgentConfig } from "../agent/config.ts";
import { createDockerRunner } from "../agent/docker.ts";
import { loadConfigOrExit } from "../lib/config.ts";
import { CONFIG_HELP, configTable } from "./config.ts";
import { DOCTOR_HELP, doctorStatus, formatDoctor, runDoctor } from "./doctor.ts";
import { ENQUEUE_HELP, enqueue } from "./enqueue.ts";
import { FOLLOW_HELP, FollowUsage, follow } from "./follow.ts";
import { JOBS_HELP, listJobs } from "./jobs.ts";
import { LOCAL_HELP, operatorEnv, runLocal } from "./local.ts";
import { PLAN_HELP, PlanError, formatPlan, planFor } from "./plan.ts";
import { NothingToRollBack, ROLLBACK_HELP, rollback } from "./rollback.ts";
import { ENCRYPT_HELP, KEYGEN_HELP, SecretsUsage, encrypt, keygen } from "./secrets.ts";
import { SEND_HELP, historyToken, send } from "./send.ts";
import { waitForVerdict } from "./verdict.ts";

const HELP = `Usage: swarmhook <command> [options]    (swarmhook <command> --help for one)

Commands:
  local     run the API and the watcher together on this machine, with embedded defaults
  send      sign and POST a deploy request to the API, exactly as GitHub would
  enqueue   put a manual deploy job straight into the spool (just deploy-now)
  jobs      list pending jobs and the last outcomes (just jobs)
  follow    one deploy live: phase, tasks on the new version, then its outcome (exit status)
  rollback  redeploy a recorded release by its image digests (just rollback STACK [SHA])
  plan      what a deploy would change in a stack, before it happens (just plan STACK [SHA])
  doctor    check what a deploy needs on this manager, one line per check (just doctor)
  keygen    a new age identity for the watcher (SOPS_AGE_KEY_FILE) and its public recipient
  encrypt   encrypt a file for age recipients: a plain age file, or a SOPS file (--sops)
  config    every variable the API and the watcher read: default and meaning

${LOCAL_HELP}
${SEND_HELP}
${ENQUEUE_HELP}
${JOBS_HELP}
${FOLLOW_HELP}
${ROLLBACK_HELP}
${PLAN_HELP}
${DOCTOR_HELP}
${KEYGEN_HELP}
${ENCRYPT_HELP}
${CONFIG_HELP}`;

/** Bad usage exits 2, except for `plan`, whose 2 means "something would change": there every error is 1. */
function fail(message: string): never {
  process.stderr.write(`swarmhook: ${message}\n`);
  process.exit(process.argv[2] === "plan" ? 1 : 2);
}

const ROOT = path.resolve(import.meta.dirname, path.basename(path.dirname(import.meta.dirname)) === "dist" ? "../.." : "..");

const OPTIONS = {
  url: { type: "string" },
  "secret-file": { type: "string" },
  repository: { type: "string" },
  branch: { type: "string", default: "main" },
  sha: { type: "string" },
  before: { type: "string" },
  "committed-at": { type: "string" },
  sender: { type: "string" },
  spool: { type: "string" },
  dir: { type: "string", default: ".swarmhook" },
  last: { type: "string", default: "10" },
  stack: { type: "string" },
  to: { type: "string" },
  state: { type: "string" },
  setup: { type: "boolean" },
  json: { type: "boolean" },
  program: { type: "string" },
  out: { type: "string" },
  sops: { type: "boolean" },
  wait: { type: "boolean" },
  timeout: { type: "string" },
  "history-token-file": { type: "string" },
  help: { type: "boolean", short: "h" },
} as const;

const COMMAND_HELP: Record<string, string | undefined> = {
  local: LOCAL_HELP,
  send: SEND_HELP,
  enqueue: ENQUEUE_HELP,
  jobs: JOBS_HELP,
  follow: FOLLOW_HELP,
  rollback: ROLLBACK_HELP,
  plan: PLAN_HELP,
  doctor: DOCTOR_HELP,
  keygen: KEYGEN_HELP,
  encrypt: ENCRYPT_HELP,
  config: CONFIG_HELP,
};

async function main(argv: string[]): Promise<void> {
  const [command, ...rest] = argv;
  const { values, positionals } = parseArgs({
    args: rest,
    options: OPTIONS,
    strict: true,
    allowPositionals: true,
  });
  if (positionals.length > (command === "encrypt" || command === "follow" ? 1 : 0))
    return fail(`unexpected argument "${positionals.at(-1)}" (swarmhook ${command ?? ""} --help)`);
  const help = COMMAND_HELP[command ?? ""];
  if (values.help || command === undefined || command === "help" || command === "--help" || command === "-h") {
    process.stdout.write(help ?? HELP);
    return;
  }
  // after `npm start`, doctor, jobs and plan look at what it laid out in .swarmhook/ (unless told otherwise)
  const { env, local } = operatorEnv(process.env, path.resolve(values.dir), ROOT);
  if (local && ["doctor", "jobs", "plan", "follow"].includes(command))
    process.stderr.write(`swarmhook: the local set-up in ${values.dir}/ (swarmhook local)\n`);
  const spoolDir = values.spool ?? env.SPOOL_DIR;
  switch (command) {
    case "local":
      return runLocal(path.resolve(values.dir), ROOT, { setupOnly: values.setup });
    case "send": {
      const r = await send(
        {
          url: values.url,
          secretFile: values["secret-file"],
          repository: values.repository,
          branch: values.branch,
          sha: values.sha,
          before: values.before,
          committedAt: values["committed-at"],
          sender: values.sender,
        },
        process.env,
      );
      process.stdout.write(`${r.status} ${r.body}\n`);
      process.stderr.write(`delivery ${r.deliveryId}\n`);
      process.exitCode = r.status >= 200 && r.status < 300 ? 0 : 1;
      if (values.wait && r.status === 202) await waitAfterSend(values, r.body);
      return;
    }
    case "enqueue":
      return runEnqueue(spoolDir, values.sha, values.repository, values.branch);
    case "doctor":
      return runDoctorCommand(env, local, values.json === true);
    case "jobs":
      if (!spoolDir) return fail("--spool or SPOOL_DIR is required");
      process.stdout.write(
        await listJobs(spoolDir, Math.max(1, Number(values.last) || 10), values.state ?? env.STATE_DIR ?? "/var/lib/swarmhook"),
      );
      return;
    case "follow":
      return runFollow(spoolDir, positionals[0], values.stack);
    case "rollback":
      return runRollback(spoolDir, values.stack, values.to);
    case "plan":
      return runPlan(env, values.stack, values.sha, values.json === true);
    case "keygen":
    case "encrypt":
      return runSecrets(command, values, positionals[0]);
    case "config":
      if (values.program !== undefined && values.program !== "api" && values.program !== "watcher")
        return fail(`--program must be api or watcher (not ${values.program})`);
      process.stdout.write(configTable(values.program));
      return;
    default:
      return fail(`unknown command "${command}" (swarmhook --help)`);
  }
}

/** `send --wait`: the job's verdict through the API's history, as the exit status (bin/verdict.ts). */
async function waitAfterSend(
  values: { url?: string | undefined; timeout?: string | undefined; "history-token-file"?: string | undefined },
  body: string,
): Promise<void> {
  const token = historyToken(values["history-token-file"], process.env);
  if (!token) {
    process.stderr.write("swarmhook: --wait needs the API's history token (DEPLOY_HISTORY_TOKEN or --history-token-file): not waiting\n");
    return;
  }
  const timeoutS = Number(values.timeout ?? "1800");
  if (!Number.isFinite(timeoutS) || timeoutS <= 0) return fail("--timeout must be a number of seconds");
  const jobId = (JSON.parse(body) as { jobId?: string }).jobId;
  if (!jobId) {
    process.stderr.write("swarmhook: the API's answer names no job (an event it ignores?): nothing to wait for\n");
    return;
  }
  try {
    const v = await waitForVerdict({
      webhookUrl: values.url ?? process.env.DEPLOY_WEBHOOK_URL ?? "",
      jobId,
      token,
      timeoutMs: timeoutS * 1000,
      onStatus: (s) => process.stderr.write(`${new Date().toISOString()} ${jobId}: ${s}\n`),
    });
    process.stdout.write(`${v.status}${v.reason ? `: ${v.reason}` : ""}\n`);
    process.exitCode = v.exitCode;
  } catch (err) {
    process.stderr.write(`swarmhook: ${(err as Error).message}\n`);
    process.exitCode = 1;
  }
}

async function runFollow(spoolDir: string | undefined, jobId: string | undefined, stack: string | undefined): Promise<void> {
  if (!spoolDir) return fail("--spool or SPOOL_DIR is required");
  try {
    process.exitCode = await follow({
      spoolDir,
      jobId,
      stack,
      tty: process.stdout.isTTY ? process.stdout : undefined,
      write: (text) => process.stdout.write(text),
    });
  } catch (err) {
    if (err instanceof FollowUsage) return fail(err.message);
    throw err;
  }
}

async function runSecrets(
  command: "keygen" | "encrypt",
  values: { out?: string | undefined; to?: string | undefined; sops?: boolean | undefined },
  file: string | undefined,
): Promise<void> {
  try {
    if (command === "keygen") {
      const recipient = await keygen(values.out);
      process.stderr.write(`swarmhook: wrote a new age identity to ${values.out ?? ""} (mode 0600); its public recipient:\n`);
      process.stdout.write(`${recipient}\n`);
      return;
    }
    const text = await encrypt({ to: values.to, sops: values.sops === true, out: values.out, file });
    if (!values.out) process.stdout.write(text);
  } catch (err) {
    if (err instanceof SecretsUsage) return fail(err.message);
    process.stderr.write(`swarmhook: ${(err as Error).message}\n`);
    process.exitCode = 1;
  }
}

async function runDoctorCommand(env: NodeJS.ProcessEnv, local: boolean, json: boolean): Promise<void> {
  const config = loadConfigOrExit("swarmhook doctor", () => loadAgentConfig(env));
  // rendered as the watcher would, which sets these per deploy
  const rendered = { IMAGE_TAG: env.IMAGE_TAG ?? "latest", DEPLOY_SHA: env.DEPLOY_SHA ?? "0".repeat(40) };
  const checks = await runDoctor({ config, docker: createDockerRunner(), env: rendered, local });
  process.stdout.write(formatDoctor(checks, json));
  process.exitCode = doctorStatus(checks);
}

async function runPlan(env: NodeJS.ProcessEnv, stack: string | undefined, sha: string | undefined, json: boolean): Promise<void> {
  if (!stack || !STACK_NAME.test(stack)) return fail("--stack NAME is required: the Docker stack name, e.g. app");
  if (sha !== undefined && !/^[0-9a-f]{7,40}$/.test(sha)) return fail("--sha must be a commit SHA: 7 to 40 lowercase hex digits");
  const config = loadConfigOrExit("swarmhook plan", () => loadAgentConfig(env));
  try {
    const r = await planFor(config, stack, createDockerRunner(), sha);
    process.stdout.write(formatPlan(stack, r.sha, r, json));
    process.exitCode = r.refused.length > 0 ? 1 : r.plan.changes.length === 0 ? 0 : 2;
  } catch (err) {
    if (!(err instanceof PlanError)) throw err;
    fail(err.message);
  }
}

async function runEnqueue(spoolDir: string | undefined, sha: string | undefined, repo: string | undefined, branch: string): Promise<void> {
  if (!spoolDir) return fail("--spool or SPOOL_DIR is required");
  if (!sha || !COMMIT_SHA.test(sha)) return fail("--sha must be a full 40-hex commit SHA");
  const repository = repo ?? process.env.DEPLOY_REPOSITORY ?? "manual/deploy";
  if (!REPOSITORY.test(repository)) return fail("--repository must be owner/name");
  const jobId = await enqueue({ sha, repository, branch, spoolDir });
  process.stdout.write(`queued ${jobId} in ${spoolDir}/new\n`);
}

async function runRollback(spoolDir: string | undefined, stack: string | undefined, to: string | undefined): Promise<void> {
  if (!spoolDir) return fail("--spool or SPOOL_DIR is required");
  if (!stack || !STACK_NAME.test(stack)) return fail("--stack NAME is required: the Docker stack name, e.g. app");
  if (to !== undefined && !/^[0-9a-f]{7,40}$/.test(to)) return fail("--to must be a commit SHA: 7 to 40 lowercase hex digits");
  try {
    const { job, sha, from } = await rollback({ spoolDir, stack, to });
    process.stdout.write(
      `queued ${job.deliveryId}: ${stack} back to ${shortSha(sha)} (recorded in ${job.fromRecord})${from ? `, from ${shortSha(from)}` : ""}\n` +
        `follow it: journalctl -u webhook-watcher -f   |   swarmhook jobs\n`,
    );
  } catch (err) {
    if (!(err instanceof NothingToRollBack)) throw err;
    process.stderr.write(`swarmhook rollback: ${err.message}; nothing was queued\n`);
    process.exitCode = 1;
  }
}

await main(process.argv.slice(2)).catch((err: Error) =>
  fail(`${err.message}${err.cause ? ` (${String((err.cause as Error).message ?? err.cause)})` : ""}`),
);
