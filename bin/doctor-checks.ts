// The checks of `swarmhook doctor`: the post-reboot checklist of the runbook, each a small function.
import { constants, promises as fs } from "node:fs";
import { mkdtemp, rm } from "node:fs/promises";
import os from "node:os";
import path from "node:path";
import { parse as parseYaml } from "yaml";
import type { AgentConfig, StackConfig } from "../agent/config.ts";
import type { DockerRunner } from "../agent/docker.ts";
import { decisiveLine } from "../agent/docker-lines.ts";
import { MIN_CLI_MAJOR, checkEngine, cliMajor } from "../agent/engine.ts";
import { openMirror } from "../agent/prepare/git.ts";
import { ageKeysOnDemand, checkEncryptedFiles } from "../agent/prepare/secrets.ts";
import { loadAgeKeys } from "../agent/prepare/age-keys.ts";
import {
  API_DIR_MODE,
  SUBDIRS,
  WATCHER_DIRS,
  WATCHER_DIR_MODE,
  dirMode,
  listRecords,
  openSpool,
  readWatcherStatus,
  shortSha,
  readReconcileState,
} from "../spool/index.ts";

/** The group that owns the spool on every node (docs/install.md: the runbook). */
export const APP_GID = 1011;

/** One line of the report: passed, failed (with the command that fixes it), or not applicable here (null). */
export interface Check {
  check: string;
  ok: boolean | null;
  detail: string;
  fix?: string;
}

export interface DoctorDeps {
  config: Readonly<AgentConfig>;
  docker: DockerRunner;
  /** The environment the watcher renders stack files with. */
  env: Record<string, string>;
  /** The local set-up of `swarmhook local` (.swarmhook/): its spool is a directory of this user, no NFS, no group app. */
  local?: boolean;
}

const pass = (check: string, detail: string): Check => ({ check, ok: true, detail });
const fail = (check: string, detail: string, fix: string): Check => ({ check, ok: false, detail, fix });
const skip = (check: string, detail: string): Check => ({ check, ok: null, detail });

async function query(
  d: DoctorDeps,
  args: string[],
  vars: Readonly<Record<string, string>> = {},
): Promise<{ ok: boolean; out: string; why: string }> {
  const r = await d.docker.capture(args, { env: { ...vars, ...d.env }, timeoutMs: 30_000 });
  return { ok: r.exitCode === 0, out: r.stdout.trim(), why: decisiveLine(r.outputTail) ?? `exit ${r.exitCode ?? "none"}` };
}

export async function checkCli(d: DoctorDeps): Promise<Check> {
  const r = await query(d, ["version", "--format", "{{.Client.Version}}"]);
  const version = r.out.split("\n")[0] ?? "";
  if (cliMajor(version) >= MIN_CLI_MAJOR) return pass("docker CLI", `${version} (>= ${MIN_CLI_MAJOR})`);
  return fail(
    "docker CLI",
    version ? `${version} is older than ${MIN_CLI_MAJOR}` : "not found",
    "install a Docker CLI >= 26 (docs/install.md, step 0: Software)",
  );
}

export async function checkManager(d: DoctorDeps): Promise<Check> {
  const p = await checkEngine(d.docker);
  return p ? fail("engine and swarm", p.problem, p.fix) : pass("engine and swarm", "the engine answers; this node is a swarm manager");
}

export async function checkNodes(d: DoctorDeps): Promise<Check> {
  const r = await query(d, ["node", "ls", "--format", "{{.Hostname}}\t{{.Status}}\t{{.ManagerStatus}}"]);
  if (!r.ok) return fail("swarm nodes", r.why, "run doctor on a manager (kvm8)");
  const nodes = r.out.split("\n").map((l) => l.split("\t") as [string, string, string]);
  const bad = nodes.filter(
    ([, status, manager]) => status !== "Ready" || (manager !== "" && manager !== "Leader" && manager !== "Reachable"),
  );
  const names = nodes.map(([h, , m]) => `${h}${m ? ` (${m.toLowerCase()})` : ""}`).join(", ");
  if (bad.length === 0) return pass("swarm nodes", `${nodes.length} ready: ${names}`);
  const which = bad.map(([h, s, m]) => `${h} ${s}${m ? `/${m}` : ""}`).join(", ");
  return fail("swarm nodes", `not ready or unreachable: ${which}`, "on that node: systemctl start docker; wg show (WireGuard up?)");
}

interface Rendered {
  services?: Record<string, { deploy?: { placement?: { constraints?: string[] } } }>;
  networks?: Record<string, { external?: boolean; name?: string }>;
  secrets?: Record<string, { external?: boolean; name?: string }>;
}

/** The stack file as the watcher would deploy it, rendered by `docker stack config`. */
export async function renderStack(d: DoctorDeps, stack: StackConfig): Promise<Rendered | string> {
  // with the stack's own variables, as the watcher renders it (STACK_ENV, its env:, or what the file references)
  const r = await query(d, ["stack", "config", "-c", stack.file], stack.vars);
  return r.ok ? ((parseYaml(r.out) as Rendered | null) ?? {}) : r.why;
}

/** The stack file rendered: the checks of its networks, secrets and labels read this. */
export const checkRendered = (stack: StackConfig, doc: Rendered): Check =>
  pass(`stack file of ${stack.name}`, `${stack.file} renders: ${Object.keys(doc.services ?? {}).join(", ") || "no services"}`);

const externals = (m: Record<string, { external?: boolean; name?: string }> | undefined) =>
  Object.entries(m ?? {})
    .filter(([, v]) => v.external)
    .map(([k, v]) => v.name ?? k);

export async function checkNetworks(d: DoctorDeps, stack: StackConfig, doc: Rendered): Promise<Check> {
  const name = `networks of ${stack.name}`;
  const missing: string[] = [];
  for (const net of externals(doc.networks)) {
    const r = await query(d, ["network", "inspect", net, "--format", "{{.Driver}} {{.Scope}}"]);
    if (!r.ok || r.out !== "overlay swarm") missing.push(r.ok ? `${net} (${r.out}, not an overlay)` : net);
  }
  if (missing.length === 0) return pass(name, externals(doc.networks).join(", ") || "none needed");
  return fail(
    name,
    `missing: ${missing.join(", ")}`,
    `just swarm-networks (or docker network create -d overlay --attachable ${missing[0]})`,
  );
}

export async function checkSecrets(d: DoctorDeps, stack: StackConfig, doc: Rendered): Promise<Check> {
  const name = `secrets of ${stack.name}`;
  const missing: string[] = [];
  for (const s of externals(doc.secrets)) if (!(await query(d, ["secret", "inspect", s, "--format", "{{.ID}}"])).ok) missing.push(s);
  if (missing.length === 0) return pass(name, externals(doc.secrets).join(", ") || "none needed");
  return fail(name, `missing: ${missing.join(", ")}`, `just swarm-secrets (or printf %s "$VALUE" | docker secret create ${missing[0]} -)`);
}

export async function checkLabels(d: DoctorDeps, stack: StackConfig, doc: Rendered): Promise<Check> {
  const name = `node labels of ${stack.name}`;
  const wanted = new Set<string>();
  for (const svc of Object.values(doc.services ?? {})) {
    for (const c of svc.deploy?.placement?.constraints ?? []) {
      const m = /^node\.labels\.([\w.-]+)\s*==\s*(\S+)$/.exec(c.trim());
      if (m) wanted.add(`${m[1]}=${m[2]}`);
    }
  }
  if (wanted.size === 0) return pass(name, "none needed");
  const ids = (await query(d, ["node", "ls", "-q"])).out.split("\n").filter(Boolean);
  const r = await query(d, ["node", "inspect", ...ids, "--format", "{{.Description.Hostname}} {{json .Spec.Labels}}"]);
  const have = r.out.split("\n").map((l) => {
    const [host = "", json = "{}"] = [l.slice(0, l.indexOf(" ")), l.slice(l.indexOf(" ") + 1)];
    return { host, labels: (JSON.parse(json) as Record<string, string> | null) ?? {} };
  });
  const holders = (kv: string) => {
    const [k = "", v] = kv.split("=");
    return have.filter((n) => n.labels[k] === v).map((n) => n.host);
  };
  const missing = [...wanted].filter((kv) => holders(kv).length === 0);
  if (missing.length === 0) return pass(name, [...wanted].map((kv) => `${kv} on ${holders(kv).join(",")}`).join("; "));
  return fail(name, `no node has ${missing.join(", ")}`, `docker node update --label-add ${missing[0]} kvm8 (just swarm-label-edge)`);
}

export async function checkServices(d: DoctorDeps, stack: StackConfig): Promise<Check> {
  const name = `services of ${stack.name}`;
  const r = await query(d, ["stack", "services", stack.name, "--format", "{{.Name}} {{.Replicas}}"]);
  const rows = r.ok ? r.out.split("\n").filter(Boolean) : [];
  if (rows.length === 0) return fail(name, r.ok ? "the stack is not deployed" : r.why, "just stack-deploy");
  const behind = rows.filter((l) => {
    const m = /(\d+)\/(\d+)/.exec(l);
    return !m || m[1] !== m[2];
  });
  if (behind.length === 0) return pass(name, `${rows.length} converged: ${rows.join(", ")}`);
  return fail(
    name,
    `not converged: ${behind.join(", ")}`,
    `just stack-ps (the error column says why); docker service ps ${behind[0]?.split(" ")[0]} --no-trunc`,
  );
}

export async function checkHealthUrl(stack: StackConfig): Promise<Check> {
  const name = `health of ${stack.name}`;
  if (!stack.healthUrl) return skip(name, "no health URL configured (HEALTH_URL or healthUrl)");
  try {
    const res = await fetch(stack.healthUrl, { signal: AbortSignal.timeout(5000) });
    return res.ok
      ? pass(name, `${stack.healthUrl} answers ${res.status}`)
      : fail(name, `${stack.healthUrl} answers ${res.status}`, "just stack-logs api");
  } catch (err) {
    return fail(name, `${stack.healthUrl}: ${(err as Error).message}`, "just stack-ps; curl -v the URL from this node");
  }
}

/** Mount points of this process's mount namespace, from /proc/self/mountinfo (field 5). */
async function mountPoints(): Promise<Set<string>> {
  const text = await fs.readFile("/proc/self/mountinfo", "utf8").catch(() => "");
  return new Set(text.split("\n").map((l) => (l.split(" ")[4] ?? "").replace(/\\040/g, " ")));
}

export async function checkMount(d: DoctorDeps): Promise<Check> {
  const dir = d.config.spoolDir;
  const real = await fs.realpath(dir).catch(() => null);
  if (real === null)
    return fail("spool mount", `${dir} does not exist`, "on kvm8: bash scripts/nfs-server.sh; on kvm2/kvm4: bash scripts/nfs-client.sh");
  if ((await mountPoints()).has(real)) return pass("spool mount", `${dir} is a mount point`);
  if (d.local) return skip("spool mount", `${dir}: the local set-up's spool is a directory, not the NFS mount`);
  return fail(
    "spool mount",
    `${dir} is a bare directory, not the mounted spool`,
    `on kvm8: bash scripts/nfs-server.sh; on kvm2/kvm4: mount ${dir}`,
  );
}

export async function checkSpoolDirs(d: DoctorDeps): Promise<Check> {
  const problems: string[] = [];
  const root = d.config.spoolDir;
  const rootSt = await fs.stat(root).catch(() => null);
  if (rootSt && (rootSt.mode & 0o022) !== 0)
    problems.push(
      `the root is writable by group or others (mode ${(rootSt.mode & 0o7777).toString(8)}, want 2750): the API could replace done/ or state/`,
    );
  for (const sub of SUBDIRS) {
    const dir = path.join(root, sub);
    const st = await fs.stat(dir).catch(() => null);
    if (!st) {
      problems.push(`${sub}/ missing`);
      continue;
    }
    const mode = st.mode & 0o7777;
    const want = dirMode(sub);
    if (mode !== want && want === WATCHER_DIR_MODE && (mode & 0o022) !== 0)
      problems.push(`${sub}/ is group-writable (mode ${mode.toString(8)}, want 2750): the API could change what the watcher decides from`);
    else if (mode !== want) problems.push(`${sub}/ mode ${mode.toString(8)} (want ${want.toString(8)})`);
    if (!d.local && st.gid !== APP_GID) problems.push(`${sub}/ group ${st.gid} (want ${APP_GID}, app)`);
    if (
      want === API_DIR_MODE &&
      !(await fs.access(dir, constants.W_OK).then(
        () => true,
        () => false,
      ))
    )
      problems.push(`${sub}/ not writable by this user`);
  }
  if (problems.length === 0)
    return pass(
      "spool directories",
      `tmp/ new/ ids/ 2770 (the API's), ${WATCHER_DIRS.map((s) => `${s}/`).join(" ")} 2750 (the watcher's), ${d.local ? `in ${root} (the local set-up: one user, any group)` : `group app (${APP_GID})`}`,
    );
  return fail(
    "spool directories",
    problems.join("; "),
    `on kvm8: sudo SPOOL_DIR=${root} bash scripts/spool-setup.sh (restarting webhook-watcher also corrects the modes of what it owns)`,
  );
}

/** What systemd says of webhook-watcher.service on this node. */
export type UnitState = "no-systemd" | "not-installed" | "active" | "inactive";

function unitCheck(state: UnitState): Check {
  switch (state) {
    case "no-systemd":
      return skip("watcher unit", "systemd is not running here");
    case "not-installed":
      return skip("watcher unit", "webhook-watcher.service is not installed on this node (on kvm8: sudo bash scripts/watcher-install.sh)");
    case "active":
      return pass("watcher unit", "webhook-watcher.service is active");
    case "inactive":
      return fail(
        "watcher unit",
        "webhook-watcher.service is not active",
        "systemctl start webhook-watcher; journalctl -u webhook-watcher -n 50",
      );
  }
}

export async function checkWatcher(d: DoctorDeps, unitState: UnitState): Promise<Check[]> {
  const unit = unitCheck(unitState);
  const spool = openSpool(d.config.spoolDir);
  const status = await readWatcherStatus(spool);
  if (status) return [unit, fail("watcher last outcome", `not deploying since ${status.waitingSince}: ${status.problem}`, status.fix)];
  const [last] = await listRecords(spool, { limit: 1 }).catch(() => []);
  if (!last?.record) return [unit, skip("watcher last outcome", last ? `unreadable record ${last.path}` : "no job finished yet")];
  const r = last.record;
  const line = `${r.outcome} at ${r.timings.finished} (${r.stack ?? "-"} ${r.job ? shortSha(r.job.sha) : ""})${r.reason ? `: ${r.reason}` : ""}`;
  const bad = r.outcome === "failed" || r.outcome === "rolled_back" || r.outcome === "blocked";
  return [
    unit,
    bad ? fail("watcher last outcome", line, "just jobs; journalctl -u webhook-watcher -n 50") : pass("watcher last outcome", line),
  ];
}

/** What the reconcile loop last found for a stack (state/_reconcile.<stack>.json): drift fails the check. */
export async function checkInSync(d: DoctorDeps, stack: StackConfig): Promise<Check> {
  const name = `${stack.name} in sync with the last deploy`;
  if (d.config.reconcileIntervalMs === 0 || !stack.reconcile)
    return skip(
      name,
      `reconcile is off (${d.config.reconcileIntervalMs === 0 ? "RECONCILE_INTERVAL_S=0" : "reconcile: false"}): not compared`,
    );
  const rs = await readReconcileState(openSpool(d.config.spoolDir), stack.name).catch(() => null);
  if (!rs) return skip(name, "no reconcile pass has looked at it yet");
  if (rs.drift)
    return fail(
      name,
      `drift since ${rs.drift.since}: ${rs.drift.summary}`,
      `undo it by hand, or deploy what should run again (git push, swarmhook enqueue, swarmhook rollback --stack ${stack.name}); SELF_HEAL=1 does it by itself`,
    );
  return pass(name, `as deployed, checked ${rs.checkedAt}`);
}

/** SOPS_AGE_KEY_FILE: there, mode 0600, every line an age identity (not applicable when unset). */
export async function checkAgeKey(d: DoctorDeps): Promise<Check> {
  const name = "age key (SOPS_AGE_KEY_FILE)";
  const file = d.config.ageKeyFile;
  if (!file) return skip(name, "not set: a stack's encrypted files cannot be deployed");
  try {
    const keys = await loadAgeKeys(file);
    return pass(
      name,
      `${file}: ${keys.recipients.length} identit${keys.recipients.length === 1 ? "y" : "ies"}, recipient ${keys.recipients.join(", ")}`,
    );
  } catch (err) {
    const why = (err as Error).message;
    return fail(
      name,
      why,
      /chmod 600/.test(why) ? `chmod 600 ${file}` : `swarmhook keygen --out ${file} (then encrypt for its recipient again)`,
    );
  }
}

/**
 * Every encrypted file the stack's current commit references decrypts with the watcher's key: a file
 * stack's file on this node, a git stack's at the tip of its first branch in the watcher's mirror.
 */
export async function checkDecrypts(d: DoctorDeps, stack: StackConfig): Promise<Check> {
  const name = `encrypted files of ${stack.name}`;
  let stackFile = stack.file;
  let cleanup = async () => undefined as unknown;
  if (stack.git) {
    const branch = stack.branches[0] ?? "main";
    const mirror = await openMirror(d.config.stateDir, stack.git).catch(() => null);
    const sha = mirror ? await mirror.resolve(`refs/remotes/origin/${branch}`).catch(() => null) : null;
    if (!mirror || !sha) return skip(name, `no fetched commit of ${branch} yet (the first deploy fetches it)`);
    const dir = await mkdtemp(path.join(os.tmpdir(), "swarmhook-doctor-"));
    cleanup = () => rm(dir, { recursive: true, force: true });
    await mirror.extract(sha, dir);
    stackFile = path.join(dir, stack.git.path ?? "stack.yaml");
  }
  try {
    const found = await checkEncryptedFiles(stackFile, ageKeysOnDemand(d.config.ageKeyFile)).catch((err: unknown) => err as Error);
    if (found instanceof Error)
      return fail(name, `the stack file cannot be read: ${found.message}`, `docker stack config -c ${stack.file}`);
    if (found.length === 0) return skip(name, "none referenced");
    const bad = found.filter((f) => f.problem);
    if (bad.length > 0)
      return fail(
        name,
        bad.map((f) => `${f.ref}: ${f.problem}`).join("; "),
        "encrypt it again for the watcher's recipient: swarmhook encrypt --to <age1…> --sops FILE (or sops updatekeys)",
      );
    return pass(name, `${found.length} decrypt: ${found.map((f) => f.ref).join(", ")}`);
  } finally {
    await cleanup();
  }
}
