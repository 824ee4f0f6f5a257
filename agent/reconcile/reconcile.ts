import { promises as fs } from "node:fs";
import path from "node:path";
import {
  JOB_VERSION,
  listRecords,
  publishJob,
  readDeployed,
  readReconcileState,
  reconcileJobId,
  rollbackJobId,
  shortSha,
  writeReconcileState,
  type DeployJob,
  type Deployed,
  type ReconcileState,
  type RollbackRequest,
} from "../../spool/index.ts";
import type { StackConfig } from "../config.ts";
import type { DockerRunner } from "../docker.ts";
import { localEngine, type EngineReader } from "../engine-socket.ts";
import {
  comparePlan,
  REDACTED,
  fileInCheckout,
  networkNames,
  openMirror,
  outsideCheckout,
  query,
  type Mirror,
  type Plan,
  type ServiceSpec,
} from "../prepare/index.ts";
import type { NotifyMessage } from "../report/index.ts";
import { lasted } from "../report/index.ts";
import type { StackContext } from "../run-stack.ts";
import type { StackRuntime } from "../state.ts";
import { readRendered } from "../record/index.ts";
import { renderRelease } from "../verify/index.ts";
import { freshState, observe, type EpisodeEvent, type Short } from "./episode.ts";
import { branchTips, type Tip, type TipAnswer, type TipSources } from "./tips.ts";

/** How many heals a drift may survive before healing stops for the stack (until its next deploy). */
export const MAX_HEALS = 3;
/** How many of a stack's newest records are read for a job of the tip (a tip that ended once is not queued again). */
const RECORDS_LOOKED_AT = 50;

export interface Reconciler {
  /** The first pass now, then one every RECONCILE_INTERVAL_S after the last ended; nothing when it is 0. */
  start(): void;
  /** No new pass; the one under way ends. */
  stop(): Promise<void>;
  /** One pass over every stack that reconciles (tests call it; never two at once). */
  pass(): Promise<void>;
}

export interface ReconcileDeps {
  ctx: StackContext;
  stacks: () => Iterable<StackRuntime>;
  /** Run `fn` inside the watcher's next tick, once new/ is claimed (a webhook's job for the same commit is then seen). */
  inTick: <T>(fn: () => Promise<T>) => Promise<T>;
  /** Claim a job this loop just published into new/ (the tick's own claim). */
  claim: (name: string) => Promise<void>;
  githubTip?: TipSources["githubTip"];
}

/**
 * The reconcile loop: every RECONCILE_INTERVAL_S, per stack (unless `reconcile: false`), a branch tip
 * no webhook brought is queued as a `reconcile` job (then the path of a push: coalescing, image wait,
 * verification, records, reports), and the running services are compared with the release last
 * recorded as successful: drift and services below desired are told once per episode (log, gauges,
 * chat), and with self-heal a drifted stack is redeployed from that release (`heal`). What it knows
 * lives in state/_reconcile.<stack>.json, so a restart repeats no message. It never changes a stack
 * that is deploying, and a pass never runs twice at once.
 * @example
 * const r = createReconciler({ ctx, stacks: () => state.stacks.values(), inTick, claim });
 * r.start();
 */
export function createReconciler(d: ReconcileDeps): Reconciler {
  const { ctx } = d;
  const { config, log, metrics } = ctx;
  let timer: NodeJS.Timeout | undefined;
  let running: Promise<void> | null = null;
  let stopped = false;
  const r: Run = { d, problems: new Map(), checkouts: new Map(), rendered: new Map(), written: new Map(), states: new Map() };

  async function pass(): Promise<void> {
    if (running) return running;
    running = (async () => {
      r.seen = undefined; // each pass reads the cluster afresh
      const runtimes = [...d.stacks()].filter((s) => s.config.reconcile);
      if (runtimes.length === 0 || stopped || ctx.stopping()) return;
      const tips = await branchTips(
        runtimes.map((s) => s.config),
        { stateDir: config.stateDir, gitToken: ctx.gitToken, githubTip: d.githubTip },
      );
      for (const rt of runtimes) {
        if (stopped || ctx.stopping()) return;
        const answer = tips.get(rt.config.name) ?? { none: true };
        const outcome = await reconcileStack(r, rt, answer).then(
          (o) => {
            problem(r, rt.config.name, "problem" in answer ? answer.problem : null);
            return o;
          },
          (err: unknown) => {
            problem(r, rt.config.name, (err as Error).message);
            return "error";
          },
        );
        metrics.reconcilePasses.inc({ outcome });
      }
    })().finally(() => {
      running = null;
    });
    return running;
  }

  return {
    start() {
      if (config.reconcileIntervalMs === 0) return;
      const names = [...d.stacks()].filter((rt) => rt.config.reconcile).map((rt) => rt.config.name);
      for (const stack of names) {
        metrics.drift.set({ stack }, 0);
        metrics.degraded.set({ stack }, 0);
      }
      log.info({ intervalS: config.reconcileIntervalMs / 1000, stacks: names }, "reconciling: branch tips and drift");
      const loop = async () => {
        const started = Date.now();
        await pass().catch((err: unknown) => log.error({ err }, "reconcile pass failed"));
        if (!stopped) timer = setTimeout(loop, Math.max(0, config.reconcileIntervalMs - (Date.now() - started)));
      };
      timer = setTimeout(loop, 0);
    },
    async stop() {
      stopped = true;
      clearTimeout(timer);
      await running?.catch(() => undefined);
    },
    pass,
  };
}

/** What the passes share: the loop's dependencies, the problems told per stack, each git stack's kept checkout. */
interface Run {
  d: ReconcileDeps;
  problems: Map<string, string>;
  checkouts: Map<string, { sha: string; root: string; file: string }>;
  /** Each stack's last good release as rendered, with what it was rendered from. */
  rendered: Map<string, { key: string; doc: unknown }>;
  /** Each stack's reconcile state as this loop last left it. */
  states: Map<string, ReconcileState>;
  /** What was last written to each stack's state file (without `checkedAt`), and when. */
  written: Map<string, { text: string; at: number }>;
  /** Network names by ID, as the last pass read them. */
  networks?: Map<string, string> | undefined;
  /** This pass's view of the cluster, read when the first stack needs it. */
  seen?: Promise<Snapshot> | undefined;
  /** The local engine's API, when the CLI talks to a local socket: asked once, again after a read failed. */
  engine?: Promise<EngineReader | null> | undefined;
}

/** How long `checkedAt` may lag in state/ while nothing else changes (a pass that found nothing new writes nothing). */
const CHECKED_EVERY_MS = 60_000;

/** Write a stack's reconcile state when it changed, or when its `checkedAt` is a minute old. */
async function save(r: Run, rs: ReconcileState): Promise<void> {
  r.states.set(rs.stack, rs);
  const { checkedAt, ...rest } = rs;
  const text = JSON.stringify(rest);
  const last = r.written.get(rs.stack);
  if (last?.text === text && Date.parse(checkedAt) - last.at < CHECKED_EVERY_MS) return;
  await writeReconcileState(r.d.ctx.spool, rs);
  r.written.set(rs.stack, { text, at: Date.parse(checkedAt) });
}

/** A problem of one stack, logged when it starts or changes, not every pass. */
function problem(r: Run, stack: string, message: string | null): void {
  const { log } = r.d.ctx;
  if (message === null) {
    if (r.problems.delete(stack)) log.info({ stack }, "reconcile: the problem is gone");
    return;
  }
  if (r.problems.get(stack) !== message) log.warn({ stack, problem: message }, `reconcile: ${message}`);
  r.problems.set(stack, message);
}

/** One stack's pass; says what it found (the metric's outcome). */
async function reconcileStack(r: Run, rt: StackRuntime, answer: TipAnswer): Promise<string> {
  const { ctx } = r.d;
  const { metrics } = ctx;
  const name = rt.config.name;
  const now = ctx.clock.now();
  const { deployed } = await readDeployed(ctx.spool, name);
  // read from state/ once (a restart's memory of the episode), then kept here: this loop is its one writer
  let rs = r.states.get(name) ?? (await readReconcileState(ctx.spool, name)) ?? freshState(name, now);
  const runs = rt.runs;
  let outcome = "in_sync";
  if ("tip" in answer) {
    const jobId = await deployTip(r, rt, answer.tip, deployed, rs);
    if (jobId) {
      rs = { ...rs, queued: [...rs.queued, { sha: answer.tip.sha, jobId, at: now.toISOString() }].slice(-50) };
      outcome = "deploy";
    }
  }
  const busy = () => rt.running !== null || rt.pending.length > 0;
  if (busy() || !deployed?.release || !deployed.record?.startsWith("done/")) {
    await save(r, { ...rs, checkedAt: now.toISOString() });
    return outcome;
  }
  r.seen ??= readCluster(r);
  const seen = await compare(r, rt.config, deployed, "tip" in answer ? answer.tip.mirror : undefined, await r.seen);
  // a deploy that started meanwhile makes the comparison meaningless: the next pass compares again
  if (busy() || rt.runs !== runs) {
    await save(r, { ...rs, checkedAt: now.toISOString() });
    return outcome;
  }
  const observed = observe(rs, seen, deployed.record, now);
  rs = observed.state;
  metrics.drift.set({ stack: name }, rs.drift?.services.length ?? 0);
  metrics.degraded.set({ stack: name }, rs.degraded?.reported ? rs.degraded.services.length : 0);
  await tell(r, rt.config, deployed, observed.events, rs);
  let healed = false;
  if (rs.drift && rt.config.selfHeal) ({ rs, healed } = await heal(r, rt.config, deployed, rs));
  await save(r, rs);
  if (healed) return "heal";
  if (rs.drift) return "drift";
  return rs.degraded?.reported ? "degraded" : outcome;
}

/** This pass's snapshot; a failed read of the engine's API asks the CLI for its endpoint again next pass. */
async function readCluster(r: Run): Promise<Snapshot> {
  const { ctx } = r.d;
  r.engine ??= localEngine(ctx.docker).then(
    (engine) => {
      ctx.log.debug(
        { socket: engine?.socket ?? null },
        engine ? "reconcile reads the engine's API on its socket" : "reconcile reads through the docker CLI",
      );
      return engine;
    },
    () => null,
  );
  try {
    const seen = await snapshot(ctx.docker, r.networks, await r.engine);
    r.networks = seen.networks;
    return seen;
  } catch (err) {
    r.engine = undefined;
    throw err;
  }
}

/**
 * Queue the tip when no webhook brought it: it is not what runs, the loop never queued it, it is a
 * descendant of the deployed commit (git stacks), and no record of the stack's names it. Decided
 * inside a tick, after new/ was claimed: a webhook's job for it that arrived meanwhile wins.
 * A stack that is deploying is left for the next pass. Returns the job's id, or null.
 */
async function deployTip(r: Run, rt: StackRuntime, tip: Tip, deployed: Deployed | null, rs: ReconcileState): Promise<string | null> {
  const { d } = r;
  const { ctx } = d;
  const { log } = ctx;
  const name = rt.config.name;
  if (deployed?.sha === tip.sha || rs.queued.some((q) => q.sha === tip.sha)) return null;
  if (tip.mirror && !(await tip.mirror.hasCommit(tip.sha))) await tip.mirror.fetch(); // a tip the mirror has not seen yet
  if (tip.mirror && deployed && (await tip.mirror.hasCommit(deployed.sha)) && !(await tip.mirror.isAncestor(deployed.sha, tip.sha))) {
    log.debug({ stack: name, tip: tip.sha, deployed: deployed.sha }, "reconcile: the branch tip is not ahead of what runs; left alone");
    return null;
  }
  const records = await listRecords(ctx.spool, { limit: RECORDS_LOOKED_AT, stack: name });
  if (records.some((e) => e.record?.job?.sha === tip.sha)) return null; // a job for it ended (a redelivery or enqueue retries)
  const repository = rt.config.repository;
  if (!repository) return null;
  return d.inTick(async () => {
    if (rt.running || rt.pending.length > 0) return null; // deploying: the next pass looks again
    const now = ctx.clock.now();
    const job: DeployJob = {
      version: JOB_VERSION,
      kind: "deploy",
      deliveryId: reconcileJobId(name, tip.sha),
      event: "reconcile",
      repository,
      ref: `refs/heads/${tip.branch}`,
      sha: tip.sha,
      committedAt: (await tip.committedAt()) ?? now.toISOString(),
      sender: "swarmhook reconcile",
      receivedAt: now.toISOString(),
      stack: name, // the tip of this stack's branch: for this stack only, whatever else deploys the repository
    };
    const r = await publishJob(ctx.spool, job, now.getTime());
    if (r.status !== "queued") {
      log.info({ stack: name, sha: tip.sha, jobId: r.jobId, status: r.status }, "reconcile: a job for the tip exists already");
      return r.jobId;
    }
    log.warn(
      { stack: name, sha: tip.sha, jobId: r.jobId, trigger: "reconcile" },
      `deploying ${shortSha(tip.sha)}: no webhook arrived for it`,
    );
    await d.claim(`${r.jobId}.json`);
    return r.jobId;
  });
}

/** What the whole cluster runs, read once per pass however many stacks (from the engine API over a local socket, else three docker calls; one more when a network is new): specs, tasks, network names. */
export interface Snapshot {
  specs: ServiceSpec[];
  /** Service name → its tasks that should run, and of those the ones running. */
  tasks: Map<string, { running: number; desired: number }>;
  networks: Map<string, string>;
}

/** The specs of every service and its tasks that should run (running or not), however read. */
interface ClusterRead {
  specs: ServiceSpec[];
  tasks: { service: string; running: boolean }[];
}

/** Specs and running tasks as the engine's API gives them (what the CLI's three calls print, without three processes). */
async function readEngine(engine: EngineReader): Promise<ClusterRead> {
  const list = ((await engine.get("/services")) ?? []) as { ID: string }[];
  // one service at a time with Docker's defaults filled in, as `docker service inspect` shows it; one gone meanwhile is left out
  const specs = (
    await Promise.all(
      list.map(async (s) => (await engine.get(`/services/${encodeURIComponent(s.ID)}?insertDefaults=true`)) as ServiceSpec | null),
    )
  ).filter((s): s is ServiceSpec => s !== null);
  const names = new Map(specs.map((s) => [s.ID, s.Spec.Name]));
  const filters = encodeURIComponent(JSON.stringify({ "desired-state": ["running"] }));
  const tasks = (((await engine.get(`/tasks?filters=${filters}`)) ?? []) as { ServiceID: string; Status?: { State?: string } }[])
    .filter((t) => names.has(t.ServiceID))
    .map((t) => ({ service: names.get(t.ServiceID) ?? "", running: t.Status?.State === "running" }));
  return { specs, tasks };
}

/** Specs and running tasks from three docker CLI calls (an engine that is not a local socket, or a scripted docker). */
async function readCli(docker: DockerRunner): Promise<ClusterRead> {
  const ids = (await query(docker, ["service", "ls", "-q"], {})).split("\n").filter(Boolean);
  if (ids.length === 0) return { specs: [], tasks: [] };
  const specs = JSON.parse(await query(docker, ["service", "inspect", ...ids], {})) as ServiceSpec[];
  const lines = await query(
    docker,
    ["service", "ps", ...ids, "--filter", "desired-state=running", "--format", "{{.Name}}\t{{.CurrentState}}"],
    {},
  );
  const tasks = lines
    .split("\n")
    .filter(Boolean)
    .map((l) => {
      const [task = "", state = ""] = l.split("\t");
      return { service: task.slice(0, task.lastIndexOf(".")), running: state.startsWith("Running") };
    });
  return { specs, tasks };
}

/** Network names by ID from the engine's API (the CLI's `network ls`). */
async function engineNetworks(engine: EngineReader): Promise<Map<string, string>> {
  return new Map((((await engine.get("/networks")) ?? []) as { Id: string; Name: string }[]).map((n) => [n.Id, n.Name]));
}

/**
 * The cluster as one pass sees it: from the engine's API over its local socket when the docker CLI
 * talks to one (`engine`), else from the CLI. Tasks are those that should run (desired state running):
 * a task on a node that went down still says `Running` to the engine's own replica count, never here.
 */
export async function snapshot(docker: DockerRunner, known?: Map<string, string>, engine?: EngineReader | null): Promise<Snapshot> {
  const { specs, tasks: seen } = engine ? await readEngine(engine) : await readCli(docker);
  const tasks = new Map<string, { running: number; desired: number }>();
  for (const { service, running } of seen) {
    const t = tasks.get(service) ?? { running: 0, desired: 0 };
    t.desired += 1;
    if (running) t.running += 1;
    tasks.set(service, t);
  }
  for (const s of specs) {
    const want = s.Spec.Mode.Replicated?.Replicas;
    const t = tasks.get(s.Spec.Name) ?? { running: 0, desired: 0 };
    if (want !== undefined) tasks.set(s.Spec.Name, { running: t.running, desired: want }); // a replicated service: its spec says how many
  }
  // network names change only with a network: the last pass's names serve while every spec's networks are among them
  const named = known && specs.every((s) => (s.Spec.TaskTemplate.Networks ?? []).every((n) => known.has(n.Target)));
  if (named) return { specs, tasks, networks: known };
  return { specs, tasks, networks: engine ? await engineNetworks(engine) : await networkNames(docker, {}) };
}

/**
 * What runs against the last good release (drift, as `plan` would show it), and services below
 * desired, from the pass's snapshot. The release is the rendering its deploy kept (STATE_DIR/releases),
 * or, for a deploy that kept none, rendered once; so a pass over a stack in sync costs no docker call of its own.
 */
/**
 * The kept rendering with each REDACTED value (a variable an encrypted env_file gave) set to what
 * runs: the loop compares that the variable is there, never its value (which it does not keep).
 */
function withRunningSecrets(doc: unknown, specs: readonly ServiceSpec[], stack: string): unknown {
  const services = (doc as { services?: Record<string, { environment?: Record<string, string | null> }> }).services ?? {};
  if (!Object.values(services).some((s) => Object.values(s.environment ?? {}).includes(REDACTED))) return doc;
  const copy = structuredClone(doc) as { services: typeof services };
  for (const [name, def] of Object.entries(copy.services)) {
    const running = specs.find((s) => s.Spec.Name === `${stack}_${name}`)?.Spec.TaskTemplate.ContainerSpec.Env ?? [];
    for (const [k, v] of Object.entries(def.environment ?? {})) {
      const line = v === REDACTED ? running.find((l) => l.startsWith(`${k}=`)) : undefined;
      if (line !== undefined) def.environment![k] = line.slice(k.length + 1);
    }
  }
  return copy;
}

async function compare(
  r: Run,
  stack: StackConfig,
  deployed: Deployed,
  mirror: Mirror | undefined,
  seen: Snapshot,
): Promise<{ plan: Plan; short: Short[] }> {
  const { ctx } = r.d;
  let known = r.rendered.get(stack.name);
  if (!known || known.key !== deployed.record) {
    // the rendering the deploy itself kept; else the release rendered as a rollback to it would deploy it
    const kept = await readRendered(ctx.config.stateDir, stack.name, deployed.record as string);
    const file = kept === undefined ? (stack.git ? await stackFileAt(r, stack, deployed.sha, mirror) : stack.file) : "";
    known = { key: deployed.record as string, doc: kept ?? (await renderRelease(ctx.docker, stack, file, deployed)).doc };
    r.rendered.set(stack.name, known);
  }
  const specs = seen.specs.filter((s) => s.Spec.Labels?.["com.docker.stack.namespace"] === stack.name);
  const plan = comparePlan(stack.name, withRunningSecrets(known.doc, specs, stack.name), specs, seen.networks);
  const short: Short[] = [];
  for (const s of specs) {
    const t = seen.tasks.get(s.Spec.Name);
    if (t && t.running < t.desired) short.push({ service: s.Spec.Name.slice(stack.name.length + 1), ...t });
  }
  return { plan, short };
}

/** A git stack's file at the deployed commit: extracted once per commit under STATE_DIR/reconcile, kept while it runs. */
async function stackFileAt(r: Run, stack: StackConfig, sha: string, fetched: Mirror | undefined): Promise<string> {
  const { ctx } = r.d;
  const { config } = ctx;
  const checkouts = r.checkouts;
  const known = checkouts.get(stack.name);
  if (known?.sha === sha && (await fs.stat(known.file).catch(() => null))) return known.file;
  const base = path.join(config.stateDir, "reconcile", stack.name);
  await fs.rm(base, { recursive: true, force: true });
  const mirror = fetched ?? (await openMirror(config.stateDir, stack.git as NonNullable<StackConfig["git"]>, ctx.gitToken));
  if (!(await mirror.hasCommit(sha))) await mirror.fetch();
  const root = path.join(base, sha);
  await mirror.extract(sha, root);
  const file = fileInCheckout(root, stack.git?.path ?? stack.file);
  const outside = await outsideCheckout(root, file);
  if (outside) throw new Error(`the deployed commit's stack file cannot be compared: ${outside}`);
  checkouts.set(stack.name, { sha, root, file });
  return file;
}

/** Each event once: a log line, and for drift, its end and services below desired, a chat message whatever NOTIFY_ON says. */
async function tell(r: Run, stack: StackConfig, deployed: Deployed, events: EpisodeEvent[], rs: ReconcileState): Promise<void> {
  const { ctx } = r.d;
  const { log } = ctx;
  const name = stack.name;
  for (const e of events) {
    const base = { stack: name, repository: stack.repository ?? null, sha: deployed.sha, durationMs: null, url: null };
    let message: NotifyMessage | null = null;
    const id = `${e.type}-${name}-${ctx.clock.now().getTime().toString(36)}`;
    if (e.type === "drift") {
      log.warn(
        { stack: name, drift: e.summary, services: rs.drift?.services, since: rs.drift?.since },
        `drift from the last deploy: ${e.summary}`,
      );
      message = {
        ...base,
        event: "drift",
        outcome: "drift",
        reason: e.summary.slice(0, 2000),
        deliveryId: id,
        since: rs.drift?.since ?? ctx.clock.now().toISOString(),
      };
    } else if (e.type === "drift_changed") {
      log.warn({ stack: name, drift: e.summary, since: rs.drift?.since }, `drift changed: ${e.summary}`);
    } else if (e.type === "in_sync") {
      log.info({ stack: name, lastedMs: e.lastedMs }, `in sync with the last deploy again after ${lasted(e.lastedMs)}`);
      message = { ...base, event: "in_sync", outcome: "in_sync", reason: null, deliveryId: id, durationMs: e.lastedMs, since: e.since };
    } else if (e.type === "degraded") {
      const said = e.services.map((s) => `${s.service} ${s.running}/${s.desired} running`).join(", ");
      log.warn({ stack: name, services: e.services }, `degraded: ${said} (Swarm reschedules; not healed)`);
      message = {
        ...base,
        event: "degraded",
        outcome: "degraded",
        reason: said,
        deliveryId: id,
        since: rs.degraded?.since ?? ctx.clock.now().toISOString(),
      };
    } else {
      log.info({ stack: name, lastedMs: e.lastedMs }, `every task runs again after ${lasted(e.lastedMs)}`);
    }
    if (message) await ctx.reporter.notice(id, message);
  }
}

/**
 * SELF_HEAL: queue a `heal` (a rollback to the release that runs, read from its record) for a
 * drifted stack, one per pass. After MAX_HEALS heals the drift survived since the stack's last
 * deploy, healing stops for it (one error line, one chat message) until the next deploy.
 */
async function heal(r: Run, stack: StackConfig, deployed: Deployed, rs: ReconcileState): Promise<{ rs: ReconcileState; healed: boolean }> {
  const { ctx } = r.d;
  const { log } = ctx;
  const name = stack.name;
  const after = deployed.jobId.startsWith("heal-") ? (rs.heal?.after ?? deployed.jobId) : deployed.jobId;
  const h = rs.heal?.after === after ? rs.heal : { after, count: 0, stopped: false };
  if (h.stopped) return { rs: { ...rs, heal: h }, healed: false };
  if (h.count >= MAX_HEALS) {
    const reason = `the drift came back after ${MAX_HEALS} heals (something keeps changing the stack): not healed again until the next deploy`;
    log.error({ stack: name, heals: h.count, drift: rs.drift?.summary }, `self-heal stopped: ${reason}`);
    const id = `heal_stopped-${name}-${ctx.clock.now().getTime().toString(36)}`;
    await ctx.reporter.notice(id, {
      event: "heal_stopped",
      stack: name,
      repository: stack.repository ?? null,
      sha: deployed.sha,
      outcome: "heal_stopped",
      reason,
      deliveryId: id,
      durationMs: null,
      url: null,
    });
    return { rs: { ...rs, heal: { ...h, stopped: true } }, healed: false };
  }
  const now = ctx.clock.now();
  const job: RollbackRequest = {
    version: JOB_VERSION,
    kind: "rollback",
    deliveryId: rollbackJobId(deployed.sha, now, "heal"),
    stack: name,
    fromRecord: deployed.record as string,
    cause: "heal",
    sender: "swarmhook reconcile (SELF_HEAL)",
    receivedAt: now.toISOString(),
  };
  await publishJob(ctx.spool, job, now.getTime());
  log.warn(
    { stack: name, jobId: job.deliveryId, heal: h.count + 1, of: MAX_HEALS, drift: rs.drift?.summary },
    `healing: redeploying the release of ${shortSha(deployed.sha)} (${deployed.record})`,
  );
  return { rs: { ...rs, heal: { ...h, count: h.count + 1 } }, healed: true };
}
