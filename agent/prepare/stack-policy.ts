/**
 * What a stack's commits may ask of the cluster (AGENT_CONFIG `policy:`), for repositories whose
 * committers are not cluster admins. Each `false` refuses, in the stack as `docker stack config`
 * rendered it, what would give a service the host:
 * - `bindMounts`: a bind mount, or a named volume whose driver options mount a host path or device;
 * - `hostPorts`: a published port (host mode or Swarm's ingress, which listens on every node), or
 *   the `host` network;
 * - `privileged`: `privileged`, `cap_add`, `devices`, and host `pid`, `ipc`, `userns_mode`,
 *   `network_mode` (Swarm ignores several of these today; a commit asking for them is refused anyway).
 * Unset, everything is allowed: the stack file is the operator's.
 */
export interface StackPolicy {
  bindMounts: boolean;
  hostPorts: boolean;
  privileged: boolean;
}

export const ALLOW_ALL: StackPolicy = { bindMounts: true, hostPorts: true, privileged: true };

type Svc = {
  volumes?: ({ type?: string; source?: string; target?: string } | string)[];
  ports?: ({ mode?: string; published?: number | string; target?: number } | string)[];
  networks?: Record<string, unknown> | string[];
  privileged?: unknown;
  cap_add?: unknown[];
  devices?: unknown[];
  pid?: unknown;
  ipc?: unknown;
  userns_mode?: unknown;
  network_mode?: unknown;
};
type Doc = {
  services?: Record<string, Svc | null>;
  volumes?: Record<string, { driver?: string; driver_opts?: Record<string, unknown> } | null>;
  networks?: Record<string, { name?: string; external?: unknown } | null>;
};

function bindMounts(name: string, svc: Svc, doc: Doc): string[] {
  const out: string[] = [];
  for (const v of svc.volumes ?? []) {
    if (typeof v === "string") continue; // docker stack config writes every volume in the long form
    if (v.type === "bind") out.push(`service ${name}: bind mount ${v.source} → ${v.target} (policy.bindMounts: false)`);
    const def = v.type === "volume" && v.source ? doc.volumes?.[v.source] : undefined;
    const opts = def?.driver_opts ?? {};
    if (opts.device !== undefined || /\bbind\b/.test(String(opts.o ?? "")))
      out.push(
        `service ${name}: volume ${v.source} mounts ${String(opts.device ?? "a host path")} from the host (policy.bindMounts: false)`,
      );
  }
  return out;
}

function hostPorts(name: string, svc: Svc, doc: Doc): string[] {
  const out: string[] = [];
  for (const p of svc.ports ?? []) {
    if (typeof p === "string") out.push(`service ${name}: publishes ${p} (policy.hostPorts: false)`);
    else if (p.published !== undefined)
      out.push(`service ${name}: publishes port ${p.published} (${p.mode ?? "ingress"} mode) (policy.hostPorts: false)`);
  }
  const nets = Array.isArray(svc.networks) ? svc.networks : Object.keys(svc.networks ?? {});
  for (const n of nets)
    if ((doc.networks?.[n]?.name ?? n) === "host") out.push(`service ${name}: joins the host network (policy.hostPorts: false)`);
  return out;
}

function privileged(name: string, svc: Svc): string[] {
  const out: string[] = [];
  if (svc.privileged === true) out.push(`service ${name}: privileged: true (policy.privileged: false)`);
  if (svc.cap_add?.length) out.push(`service ${name}: cap_add ${svc.cap_add.join(", ")} (policy.privileged: false)`);
  if (svc.devices?.length) out.push(`service ${name}: devices ${svc.devices.join(", ")} (policy.privileged: false)`);
  for (const key of ["pid", "ipc", "userns_mode", "network_mode"] as const)
    if (svc[key] === "host") out.push(`service ${name}: ${key}: host (policy.privileged: false)`);
  return out;
}

/**
 * What in the rendered stack `policy` refuses, one line per offence naming the service; empty when
 * it passes.
 * @example
 * const refused = policyRefusals(rendered.doc, stack.policy);
 * if (refused.length > 0) return { outcome: "invalid", reason: `refused by the stack's policy: ${refused.join("; ")}` };
 */
export function policyRefusals(rendered: unknown, policy: StackPolicy): string[] {
  const doc = (rendered ?? {}) as Doc;
  const out: string[] = [];
  for (const [name, svc] of Object.entries(doc.services ?? {})) {
    if (!svc) continue;
    if (!policy.bindMounts) out.push(...bindMounts(name, svc, doc));
    if (!policy.hostPorts) out.push(...hostPorts(name, svc, doc));
    if (!policy.privileged) out.push(...privileged(name, svc));
  }
  return out;
}
