import type { DockerRunner, RunOptions } from "../docker.ts";
import { PINNED } from "./image-ref.ts";
import { query } from "./render.ts";

/** One field of one service that a deploy would change; secret values never appear, only names and keys. */
export interface FieldChange {
  field: string;
  from: string;
  to: string;
}
export interface ServiceChange {
  service: string;
  change: "add" | "remove" | "update";
  fields: FieldChange[];
}
export interface Plan {
  changes: ServiceChange[];
  /**
   * Services whose image could not be resolved to a digest before the deploy (no registry answered)
   * while the running spec is pinned: whether the tag has moved cannot be told. Compared by name in `changes`.
   */
  unresolved: string[];
  /** One line: "no changes", or what changes ("web: replicas 1 → 2; api added"). */
  summary: string;
}

type Compose = {
  services?: Record<string, ComposeService>;
  networks?: Record<string, { name?: string; external?: unknown } | null>;
  configs?: Record<string, { name?: string; external?: unknown } | null>;
  secrets?: Record<string, { name?: string; external?: unknown } | null>;
};
type ComposeService = {
  image?: string;
  environment?: Record<string, string | null>;
  ports?: { target: number; published?: number | string; protocol?: string; mode?: string }[];
  networks?: Record<string, unknown> | string[];
  configs?: { source: string; target?: string }[];
  secrets?: { source: string; target?: string }[];
  deploy?: {
    mode?: string;
    replicas?: number;
    placement?: { constraints?: string[] };
    resources?: Record<"limits" | "reservations", { cpus?: string; memory?: string } | undefined>;
    update_config?: Record<string, unknown>;
    rollback_config?: Record<string, unknown>;
  };
};

/** The fields compared, each as Docker stores it, as strings (so a plan prints them). Undefined: not set in the stack file, not compared. */
type Shape = Record<string, string | undefined>;

const DURATION = /(\d+(?:\.\d+)?)(ns|us|µs|ms|s|m|h)/g;
const UNIT_NS: Record<string, number> = { ns: 1, us: 1e3, µs: 1e3, ms: 1e6, s: 1e9, m: 60e9, h: 3600e9 };
/** A compose duration ("1m30s", "500ms") in nanoseconds, as a service spec keeps it. */
export function durationNs(v: unknown): number {
  if (typeof v === "number") return v;
  let ns = 0;
  for (const m of String(v).matchAll(DURATION)) ns += Number(m[1]) * (UNIT_NS[m[2] as string] ?? 0);
  return Math.round(ns);
}
const list = (xs: string[]) => (xs.length === 0 ? "none" : [...xs].sort().join(", "));

/** What the rendered stack asks of one service, shaped like `docker service inspect` says it. */
function desired(stack: string, def: ComposeService, doc: Compose): Shape {
  const d = def.deploy ?? {};
  const objectName = (group: "networks" | "configs" | "secrets", key: string) => {
    const top = doc[group]?.[key];
    return top?.name ?? (top?.external ? key : `${stack}_${key}`);
  };
  const nets = Array.isArray(def.networks) ? def.networks : Object.keys(def.networks ?? { default: null });
  const update = (c: Record<string, unknown> | undefined) => (c ? configShape(c) : undefined);
  return {
    image: def.image,
    replicas: d.mode === "global" ? "global" : String(d.replicas ?? 1),
    environment: list(Object.entries(def.environment ?? {}).map(([k, v]) => `${k}=${v ?? ""}`)),
    ports: list((def.ports ?? []).map((p) => `${p.published ?? "-"}:${p.target}/${p.protocol ?? "tcp"} ${p.mode ?? "ingress"}`)),
    constraints: list(d.placement?.constraints ?? []),
    networks: list(nets.map((n) => objectName("networks", n))),
    configs: list((def.configs ?? []).map((c) => `${objectName("configs", c.source)} → ${c.target ?? `/${c.source}`}`)),
    secrets: list(
      (def.secrets ?? []).map((c) => `${objectName("secrets", c.source)} → ${(c.target ?? c.source).replace(/^\/run\/secrets\//, "")}`),
    ),
    limits: resources(d.resources?.limits),
    reservations: resources(d.resources?.reservations),
    update_config: update(d.update_config),
    rollback_config: update(d.rollback_config),
  };
}

function resources(r: { cpus?: string; memory?: string } | undefined): string {
  const cpus = r?.cpus ? Math.round(Number(r.cpus) * 1e9) : 0;
  return `cpus ${cpus / 1e9}, memory ${r?.memory ? Number(r.memory) : 0}`;
}

/** The keys of an update/rollback config the stack file sets, in the units Swarm keeps. */
function configShape(c: Record<string, unknown>): string {
  const out: string[] = [];
  for (const [k, v] of Object.entries(c).sort(([a], [b]) => a.localeCompare(b))) {
    out.push(`${k}=${k === "delay" || k === "monitor" ? durationNs(v) : String(v)}`);
  }
  return out.join(" ");
}

export interface ServiceSpec {
  ID?: string;
  Spec: {
    Name: string;
    Labels?: Record<string, string>;
    Mode: { Replicated?: { Replicas?: number }; Global?: object };
    TaskTemplate: {
      ContainerSpec: {
        Image: string;
        Env?: string[];
        Configs?: { ConfigName: string; File?: { Name: string } }[];
        Secrets?: { SecretName: string; File?: { Name: string } }[];
      };
      Placement?: { Constraints?: string[] };
      Networks?: { Target: string }[];
      Resources?: Record<"Limits" | "Reservations", { NanoCPUs?: number; MemoryBytes?: number } | undefined>;
    };
    EndpointSpec?: { Ports?: { Protocol?: string; TargetPort: number; PublishedPort?: number; PublishMode?: string }[] };
    UpdateConfig?: Record<string, unknown>;
    RollbackConfig?: Record<string, unknown>;
  };
}

const SPEC_KEY: Record<string, string> = {
  parallelism: "Parallelism",
  delay: "Delay",
  failure_action: "FailureAction",
  monitor: "Monitor",
  max_failure_ratio: "MaxFailureRatio",
  order: "Order",
};

/** What a running service is, in the same shape; update/rollback keys only those the stack file sets. */
function running(s: ServiceSpec, want: Shape, wanted: ComposeService | undefined, networkName: Map<string, string>): Shape {
  const t = s.Spec.TaskTemplate;
  const c = t.ContainerSpec;
  const cfg = (spec: Record<string, unknown> | undefined, keys: Record<string, unknown> | undefined) => {
    if (!keys) return undefined;
    return configShape(Object.fromEntries(Object.keys(keys).map((k) => [k, spec?.[SPEC_KEY[k] ?? k] ?? (k === "delay" ? 0 : undefined)])));
  };
  const res = (r: { NanoCPUs?: number; MemoryBytes?: number } | undefined) =>
    `cpus ${(r?.NanoCPUs ?? 0) / 1e9}, memory ${r?.MemoryBytes ?? 0}`;
  return {
    // a pinned image is compared by its digest (a moved tag is a change); a tag alone by name
    image: want.image === undefined ? undefined : PINNED.test(want.image) ? c.Image : c.Image.replace(PINNED, ""),
    replicas: s.Spec.Mode.Global ? "global" : String(s.Spec.Mode.Replicated?.Replicas ?? 1),
    environment: list(c.Env ?? []),
    ports: list(
      (s.Spec.EndpointSpec?.Ports ?? []).map(
        (p) => `${p.PublishedPort ?? "-"}:${p.TargetPort}/${p.Protocol ?? "tcp"} ${p.PublishMode ?? "ingress"}`,
      ),
    ),
    constraints: list(t.Placement?.Constraints ?? []),
    networks: list((t.Networks ?? []).map((n) => networkName.get(n.Target) ?? n.Target)),
    configs: list((c.Configs ?? []).map((x) => `${x.ConfigName} → ${x.File?.Name ?? ""}`)),
    secrets: list((c.Secrets ?? []).map((x) => `${x.SecretName} → ${(x.File?.Name ?? "").replace(/^\/run\/secrets\//, "")}`)),
    limits: res(t.Resources?.Limits),
    reservations: res(t.Resources?.Reservations),
    update_config: cfg(s.Spec.UpdateConfig, wanted?.deploy?.update_config),
    rollback_config: cfg(s.Spec.RollbackConfig, wanted?.deploy?.rollback_config),
  };
}

/** `sha256:` and the first 12 hex digits of a pinned reference's digest, or the reference when not pinned. */
const shortDigest = (image: string) => (PINNED.test(image) ? image.slice(image.lastIndexOf("@") + 1, image.lastIndexOf("@") + 20) : image);

/** An image change of one name shows the digests ("app:v1 sha256:<12> → sha256:<12>"); an environment change keys only: values may be secrets. */
function fieldChange(field: string, from: string, to: string): FieldChange {
  if (field === "image") {
    const name = (i: string) => i.replace(PINNED, "");
    if (name(from) === name(to) && (PINNED.test(from) || PINNED.test(to)))
      return { field, from: `${name(to)} ${shortDigest(from)}`, to: shortDigest(to) };
    return { field, from, to };
  }
  if (field === "secrets") return secretsChange(from, to);
  if (field !== "environment") return { field, from, to };
  const keys = (s: string) => new Map(s === "none" ? [] : s.split(", ").map((kv) => [kv.split("=")[0] ?? "", kv] as const));
  const [a, b] = [keys(from), keys(to)];
  const added = [...b.keys()].filter((k) => !a.has(k));
  const removed = [...a.keys()].filter((k) => !b.has(k));
  const changed = [...b.keys()].filter((k) => a.has(k) && a.get(k) !== b.get(k));
  const said = [...added.map((k) => `+${k}`), ...changed.map((k) => `~${k}`), ...removed.map((k) => `-${k}`)].join(" ");
  return { field, from: `${a.size} keys`, to: said };
}

/**
 * A secrets change by the name the service sees (`postgres_password: changed`), never by object
 * name: a new version of a content-named secret is its value changing, and the name is not shown.
 */
function secretsChange(from: string, to: string): FieldChange {
  const byTarget = (s: string) =>
    new Map(
      s === "none"
        ? []
        : s.split(", ").map((x) => {
            const at = x.lastIndexOf(" → ");
            return [x.slice(at + 3), x.slice(0, at)] as const;
          }),
    );
  const [a, b] = [byTarget(from), byTarget(to)];
  const said = [
    ...[...b.keys()].filter((k) => !a.has(k)).map((k) => `${k}: added`),
    ...[...b.keys()].filter((k) => a.has(k) && a.get(k) !== b.get(k)).map((k) => `${k}: changed`),
    ...[...a.keys()].filter((k) => !b.has(k)).map((k) => `${k}: removed`),
  ].join(", ");
  return { field: "secrets", from: `${a.size} secrets`, to: said };
}

/** One field change as the plan prints it: environment and secrets by name only (values may be secret). */
export const describeField = (f: FieldChange): string =>
  f.field === "environment" ? `environment ${f.to}` : f.field === "secrets" ? `secret ${f.to}` : `${f.field} ${f.from} → ${f.to}`;

/**
 * What deploying `rendered` (renderStack's `doc`: the stack as `docker stack config` renders it) as
 * stack `stack` would change, against the services running now. Each
 * field is compared the way Docker stores it (durations in ns, memory in bytes, images without the
 * digest Swarm pinned, networks and objects by name), so a stack just deployed plans as no changes.
 * Environment changes name keys, never values.
 * @example
 * const r = await renderStack(docker, "/opt/app/stack.yaml", "app", job);
 * const plan = await planStack(docker, "app", r.doc, deployEnv(job.sha));
 * console.log(plan.summary);
 */
export async function planStack(docker: DockerRunner, stack: string, rendered: unknown, env: RunOptions["env"]): Promise<Plan> {
  const ids = (await query(docker, ["stack", "services", stack, "--format", "{{.ID}}"], env)).split("\n").filter(Boolean);
  const specs = ids.length > 0 ? (JSON.parse(await query(docker, ["service", "inspect", ...ids], env)) as ServiceSpec[]) : [];
  return comparePlan(stack, rendered, specs, await networkNames(docker, env));
}

/** Every network's name by its ID (service specs name their networks by ID). */
export async function networkNames(docker: DockerRunner, env: RunOptions["env"]): Promise<Map<string, string>> {
  return new Map(
    (await query(docker, ["network", "ls", "--no-trunc", "--format", "{{.ID}} {{.Name}}"], env))
      .split("\n")
      .filter(Boolean)
      .map((l) => [l.slice(0, l.indexOf(" ")), l.slice(l.indexOf(" ") + 1)] as const),
  );
}

/**
 * The plan of `rendered` against the specs of the services stack `stack` runs (planStack without the
 * docker calls, so one `service inspect` of the whole cluster serves every stack: the reconcile loop).
 */
export function comparePlan(stack: string, rendered: unknown, specs: readonly ServiceSpec[], networkName: Map<string, string>): Plan {
  const doc = (rendered ?? {}) as Compose;
  const changes: ServiceChange[] = [];
  const unresolved: string[] = [];
  const services = doc.services ?? {};
  for (const [name, def] of Object.entries(services)) {
    const spec = specs.find((s) => s.Spec.Name === `${stack}_${name}`);
    const want = desired(stack, def, doc);
    if (!spec) {
      changes.push({ service: name, change: "add", fields: [] });
      continue;
    }
    const have = running(spec, want, def, networkName);
    if (def.image && !PINNED.test(def.image) && PINNED.test(spec.Spec.TaskTemplate.ContainerSpec.Image)) unresolved.push(name);
    const fields = Object.keys(want)
      .filter((k) => want[k] !== undefined && want[k] !== have[k])
      .map((k) => fieldChange(k, have[k] ?? "none", want[k] as string));
    if (fields.length > 0) changes.push({ service: name, change: "update", fields });
  }
  for (const s of specs) {
    const name = s.Spec.Name.slice(stack.length + 1);
    if (!(name in services)) changes.push({ service: name, change: "remove", fields: [] });
  }
  return { changes, unresolved, summary: summarize(changes) };
}

export function summarize(changes: ServiceChange[]): string {
  if (changes.length === 0) return "no changes";
  return changes
    .map((c) =>
      c.change === "update"
        ? `${c.service}: ${c.fields.map(describeField).join(", ")}`
        : `${c.service} ${c.change === "add" ? "added" : "removed"}`,
    )
    .join("; ");
}
