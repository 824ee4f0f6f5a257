// `swarmhook local`: the API and the watcher together on this machine, with embedded defaults.
import { randomBytes } from "node:crypto";
import { chmodSync, existsSync, mkdirSync, readFileSync, writeFileSync } from "node:fs";
import path from "node:path";
import { createLogger } from "../lib/log.ts";
import { prepareLocal } from "./local-setup.ts";
import { createAgent } from "../agent/agent.ts";
import { loadAgentConfig } from "../agent/config.ts";
import { createDockerRunner } from "../agent/docker.ts";
import { createApp } from "../api/app.ts";
import { createClientAddress } from "../api/client-address.ts";
import { loadApiConfig } from "../api/config.ts";
import { startServer } from "../api/server.ts";
import { ensureSpool, openSpool } from "../spool/index.ts";

export const LOCAL_HELP = `swarmhook local [--dir DIR] [--setup]
  Runs the API (http://127.0.0.1:8000) and the watcher in one process on this machine, with
  embedded defaults: the spool in DIR/spool (default .swarmhook/), a webhook secret and a history
  token generated once into DIR/webhook-secret and DIR/history-token (mode 600; the deployments page
  is http://127.0.0.1:8000/deployments, any user name, the token as password), and
  stack/local-demo.yaml deployed as the stack
  swarmhook-demo on this machine's swarm. First it checks for a Docker engine in swarm mode and the
  demo image; as root with apt it sets up what is missing (scripts/test-env.sh --demo), one line a
  step; otherwise it exits at once naming what is missing and the command that fixes it. --setup
  does only that. LOG_FORMAT=json prints JSON lines instead of the pretty log. Any variable of the API or the watcher overrides its
  default (PORT, SPOOL_DIR, STACK_FILE, STACK_NAME, DEPLOY_REPOSITORY, LOG_LEVEL, ...).
  Try it from a second terminal:
    swarmhook send --url http://127.0.0.1:8000/api/webhook/github \\
      --secret-file .swarmhook/webhook-secret --repository local/demo --sha "$(git rev-parse HEAD)"
`;

/** A random secret generated once into DIR/name (mode 600), for the webhook and the history page. */
function secretFile(dir: string, name: string): string {
  const file = path.join(dir, name);
  if (!existsSync(file)) {
    writeFileSync(file, `${randomBytes(32).toString("hex")}\n`, { mode: 0o600 });
    chmodSync(file, 0o600);
  }
  readFileSync(file); // fail here, clearly, if it is unreadable
  return file;
}

/** The watcher's side of `swarmhook local`'s defaults: also what `doctor` and `jobs` check when run after it. */
export function localWatcherEnv(dir: string, root: string): NodeJS.ProcessEnv {
  return {
    SPOOL_DIR: path.join(dir, "spool"),
    STATE_DIR: path.join(dir, "state"),
    DEPLOY_REPOSITORY: "local/demo",
    STACK_FILE: path.join(root, "stack", "local-demo.yaml"),
    STACK_NAME: "swarmhook-demo",
    HEALTH_TIMEOUT_S: "30",
    DEPLOY_TIMEOUT_S: "120",
  };
}

/**
 * The environment `doctor`, `jobs` and `plan` read: the caller's own, or, where it names no spool and
 * no stack file and `swarmhook local` has laid out `dir` (a spool in it), the local set-up, so a newcomer's
 * first `swarmhook doctor` after `npm start` checks what npm start made instead of asking for SPOOL_DIR.
 */
export function operatorEnv(env: NodeJS.ProcessEnv, dir: string, root: string): { env: NodeJS.ProcessEnv; local: boolean } {
  const configured = ["SPOOL_DIR", "STACK_FILE", "AGENT_CONFIG"].some((k) => env[k]?.trim());
  if (configured || !existsSync(path.join(dir, "spool"))) return { env, local: false };
  const own = Object.fromEntries(Object.entries(env).filter(([, v]) => v?.trim()));
  return { env: { ...localWatcherEnv(dir, root), ...own }, local: true };
}

export async function runLocal(dir: string, root: string, o: { setupOnly?: boolean } = {}): Promise<void> {
  const problem = await prepareLocal({ root, env: process.env, docker: createDockerRunner(), say: (l) => process.stdout.write(`${l}\n`) });
  if (problem) {
    process.stderr.write(`${problem}\n`);
    process.exit(1);
  }
  if (o.setupOnly) return;
  mkdirSync(path.join(dir, "spool"), { recursive: true, mode: 0o2770 });
  const defaults: NodeJS.ProcessEnv = {
    ...localWatcherEnv(dir, root),
    GITHUB_WEBHOOK_SECRET_FILE: secretFile(dir, "webhook-secret"),
    HISTORY_TOKEN_FILE: secretFile(dir, "history-token"),
    HOST: "127.0.0.1",
  };
  const env = { ...defaults, ...Object.fromEntries(Object.entries(process.env).filter(([, v]) => v)) };
  if (env.GITHUB_WEBHOOK_SECRET) delete env.GITHUB_WEBHOOK_SECRET_FILE;
  if (env.HISTORY_TOKEN) delete env.HISTORY_TOKEN_FILE;
  const apiConfig = loadApiConfig(env);
  const agentConfig = loadAgentConfig(env);
  const log = createLogger({ level: apiConfig.logLevel, format: apiConfig.logFormat });
  const spool = openSpool(apiConfig.spoolDir); // the watcher's side lays the spool out
  await ensureSpool(spool);
  const app = createApp({
    config: apiConfig,
    spool: openSpool(apiConfig.spoolDir, "api"),
    log: log.child({ service: "api" }),
    visits: undefined,
    clientAddress: createClientAddress([]),
    version: "local",
  });
  const server = await startServer(app, { port: apiConfig.port, host: apiConfig.host });
  const agent = createAgent({ config: agentConfig, spool, docker: createDockerRunner(), log: log.child({ service: "webhook-watcher" }) });
  await agent.start();
  log.info(
    { url: server.url, spool: spool.root, secretFile: env.GITHUB_WEBHOOK_SECRET_FILE, stack: agentConfig.stacks[0]?.name },
    `swarmhook local: POST ${server.url}/api/webhook/github deploys ${agentConfig.stacks[0]?.file}; Ctrl-C stops`,
  );
  if (env.HISTORY_TOKEN_FILE)
    log.info(
      { url: `${server.url}/deployments` },
      `history: ${server.url}/deployments (any user name; the password is in ${env.HISTORY_TOKEN_FILE})`,
    );
  const stop = async () => {
    await server.close(2000);
    await agent.stop();
    process.exit(0);
  };
  process.once("SIGINT", () => void stop());
  process.once("SIGTERM", () => void stop());
}
