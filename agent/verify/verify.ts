import { systemClock, type Clock } from "../../lib/clock.ts";
import { shortSha, type Progress, type ServiceState } from "../../spool/index.ts";
import type { DockerRunner, RunOptions } from "../docker.ts";
import { PINNED, query } from "../prepare/index.ts";

/** Strip a pinned digest: the spec says `img:tag@sha256:…` once a registry resolved it. */
export const imageName = (image: string | null | undefined): string | null => (image ? image.replace(PINNED, "") : null);

const ROLLBACK = new Set(["rollback_started", "rollback_paused", "rollback_completed"]);

export type Verdict = (
  | { status: "converged"; services: ServiceState[] }
  | { status: "pending"; services: ServiceState[]; reason: string }
  | { status: "rolled_back" | "failed"; services: ServiceState[]; reason: string }
) & {
  /** Full service name → the image its spec holds, as Swarm keeps it (`name:tag@sha256:…` once pinned). */
  specImages: Map<string, string>;
  /** Per service: tasks running the asked version against desired, and what they are doing (for `swarmhook follow`). */
  progress: Progress["services"];
};

/** What a service's tasks are doing, in a word: from its update state and its tasks' current states. */
function taskState(updateState: string | null, rows: TaskRow[], updated: number, desired: number): string {
  if (updateState === "rollback_started") return "rolling back";
  if (updateState === "rollback_completed" || updateState === "rollback_paused") return "rolled back";
  if (updateState === "paused") return "paused";
  if (rows.some((t) => t.CurrentState.startsWith("Preparing"))) return "pulling";
  if (rows.some((t) => /^(New|Pending|Assigned|Accepted|Ready|Starting)/.test(t.CurrentState))) return "starting";
  return updated >= desired && updateState !== "updating" ? "running" : "updating";
}

interface ServiceInspect {
  ID: string;
  Spec: {
    Name: string;
    TaskTemplate: { ContainerSpec?: { Image?: string } };
    Mode: { Replicated?: { Replicas?: number }; Global?: object };
  };
  UpdateStatus?: { State?: string; StartedAt?: string; Message?: string };
}

interface TaskRow {
  Image: string;
  CurrentState: string;
  DesiredState: string;
}

/**
 * Inspect every service of a stack and judge it against what the stack file asked for. Exit 0 from
 * `docker stack deploy` is not trusted: a rollback, a paused update, a spec on another image or
 * missing replicas is seen here. Update states older than `since` belong to an earlier deploy.
 * `only`: judge just these services (stack file keys: one stage's).
 */
export async function inspectStack(
  docker: DockerRunner,
  stackName: string,
  asked: Map<string, string>,
  since: Date,
  env?: RunOptions["env"],
  only?: ReadonlySet<string>,
): Promise<Verdict> {
  const ids = (await query(docker, ["stack", "services", stackName, "--format", "{{.ID}}"], env)).split("\n").filter(Boolean);
  const specImages = new Map<string, string>();
  if (ids.length === 0) return { status: "failed", services: [], reason: `stack ${stackName} has no services`, specImages, progress: [] };
  const inspected = (JSON.parse(await query(docker, ["service", "inspect", ...ids], env)) as ServiceInspect[]).filter(
    (s) => !only || only.has(s.Spec.Name.slice(stackName.length + 1)),
  );
  const services: ServiceState[] = [];
  const progress: Progress["services"] = [];
  const problems: { kind: "rolled_back" | "failed" | "pending"; text: string }[] = [];

  for (const s of inspected) {
    const name = s.Spec.Name;
    // an image the deploy pinned must run by that digest; one deployed by reference is compared by name
    const ask = asked.get(name);
    const byDigest = ask !== undefined && PINNED.test(ask);
    const same = (image: string | null | undefined) => (byDigest ? (image ?? null) : imageName(image));
    const specImage = same(s.Spec.TaskTemplate.ContainerSpec?.Image);
    if (s.Spec.TaskTemplate.ContainerSpec?.Image) specImages.set(name, s.Spec.TaskTemplate.ContainerSpec.Image);
    const wanted = same(ask) ?? specImage;
    const recent = s.UpdateStatus?.StartedAt && new Date(s.UpdateStatus.StartedAt) >= since ? s.UpdateStatus : undefined;
    const updateState = recent?.State ?? null;
    const rows = (
      await query(docker, ["service", "ps", s.ID, "--filter", "desired-state=running", "--no-trunc", "--format", "{{json .}}"], env)
    )
      .split("\n")
      .filter(Boolean)
      .map((l) => JSON.parse(l) as TaskRow);
    const running = rows.filter((t) => t.CurrentState.startsWith("Running"));
    const desired = s.Spec.Mode.Replicated ? (s.Spec.Mode.Replicated.Replicas ?? 1) : rows.length;
    const runningImages = [...new Set(running.map((t) => same(t.Image)))];
    const updated = running.filter((t) => same(t.Image) === wanted).length;
    progress.push({
      name: name.startsWith(`${stackName}_`) ? name.slice(stackName.length + 1) : name,
      updated,
      desired,
      state: taskState(updateState, rows, updated, desired),
    });
    services.push({
      name,
      image: runningImages.length === 1 ? (runningImages[0] ?? null) : runningImages.length === 0 ? null : runningImages.join(","),
      wantedImage: wanted,
      updateState,
      updateMessage: recent?.Message ?? null,
      desired,
      running: running.length,
    });

    if (updateState && ROLLBACK.has(updateState)) {
      problems.push({
        kind: updateState === "rollback_started" ? "pending" : "rolled_back",
        text: `${name}: ${updateState} (${recent?.Message ?? "no message"})`,
      });
    } else if (updateState === "paused") {
      problems.push({ kind: "failed", text: `${name}: update paused (${recent?.Message ?? "no message"})` });
    } else if (specImage !== wanted) {
      problems.push({ kind: "rolled_back", text: `${name}: spec runs ${specImage}, the stack asks for ${wanted}` });
    } else if (updateState === "updating") {
      problems.push({ kind: "pending", text: `${name}: update in progress` });
    } else if (running.length < desired || running.some((t) => same(t.Image) !== wanted)) {
      problems.push({ kind: "pending", text: `${name}: ${running.length}/${desired} running on ${wanted}` });
    }
  }
  const settled = problems.find((p) => p.kind !== "pending");
  if (settled) {
    const kind = problems.some((p) => p.kind === "rolled_back") ? "rolled_back" : "failed";
    return { status: kind, services, reason: problems.map((p) => p.text).join("; "), specImages, progress };
  }
  if (problems.length > 0) return { status: "pending", services, reason: problems.map((p) => p.text).join("; "), specImages, progress };
  return { status: "converged", services, specImages, progress };
}

/**
 * Poll HEALTH_URL until it answers 200 and, when its JSON carries `commit`, reports `sha`.
 * Returns null on success, else why it did not.
 */
export async function checkHealth(
  url: string,
  sha: string,
  timeoutMs: number,
  o: { clock?: Clock; everyMs?: number } = {},
): Promise<string | null> {
  const clock = o.clock ?? systemClock;
  const deadline = clock.now().getTime() + timeoutMs;
  let last = "no answer yet";
  while (clock.now().getTime() < deadline) {
    try {
      const res = await fetch(url, { signal: AbortSignal.timeout(Math.min(5000, Math.max(500, deadline - clock.now().getTime()))) });
      last = healthProblem(res.status, await res.text(), sha) ?? "";
      if (last === "") return null;
    } catch (err) {
      last = (err as Error).message;
    }
    await clock.sleep(o.everyMs ?? 1000);
  }
  return `${url} not healthy within ${Math.round(timeoutMs / 1000)} s: ${last}`;
}

/** Why one health answer is not the deployed commit's, or null when it is. */
function healthProblem(status: number, text: string, sha: string): string | null {
  if (status !== 200) return `HTTP ${status}`;
  let commit: unknown;
  try {
    commit = (JSON.parse(text) as { commit?: unknown }).commit;
  } catch {
    commit = undefined;
  }
  return typeof commit !== "string" || commit === sha ? null : `reports commit ${shortSha(commit)}, not ${shortSha(sha)}`;
}
