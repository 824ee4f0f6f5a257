// `swarmhook doctor`: the runbook's post-reboot checklist, automated, one line per check.
import { execFile } from "node:child_process";
import { promisify } from "node:util";
import { stripControl } from "../lib/text.ts";
import * as c from "./doctor-checks.ts";

const run = promisify(execFile);

export const DOCTOR_HELP = `swarmhook doctor [--json]
  Checks, on a manager (kvm8), what a deploy needs, reading the watcher's configuration (its
  environment: SPOOL_DIR, STACK_FILE/STACK_NAME or AGENT_CONFIG, HEALTH_URL; just doctor loads
  /etc/swarmhook/webhook-watcher.env): the Docker CLI (>= 26); the engine and this node a swarm
  manager; every node Ready and every manager reachable; per stack the overlay networks, the Swarm
  secrets and the node labels it needs, its services converged and its health URL; the spool mounted
  (not the bare mount point) and its directories mode 2770, group app (1011), writable; the watcher
  unit and its last outcome; the age key (SOPS_AGE_KEY_FILE: there, mode 0600, parses) and that
  every encrypted file each stack references decrypts with it. One line per check (✓ passed, ✗ failed with the command that fixes it,
  – not applicable here); exit status = the number of failed checks (at most 125). --json prints
  [{"check","ok","detail","fix"}] for scripts. With none of SPOOL_DIR, STACK_FILE and AGENT_CONFIG
  set, after npm start (swarmhook local), it checks the local set-up in .swarmhook/.
`;

/** Every check, in the order an operator walks them after a reboot. */
/** systemd running (or degraded) here, the unit installed, and whether it is active. */
async function unitState(): Promise<c.UnitState> {
  const ok = (args: string[]) =>
    run("systemctl", args).then(
      (r) => r.stdout.trim(),
      (e: { stdout?: string }) => (e.stdout ?? "").trim(),
    );
  // "offline" (or no systemctl at all): systemd is not PID 1; running, degraded, starting… : it is
  if (["offline", ""].includes(await ok(["is-system-running"]))) return "no-systemd";
  if ((await ok(["show", "-p", "LoadState", "--value", "webhook-watcher.service"])) !== "loaded") return "not-installed";
  return (await ok(["is-active", "webhook-watcher.service"])) === "active" ? "active" : "inactive";
}

export async function runDoctor(deps: c.DoctorDeps, o: { unitState?: c.UnitState } = {}): Promise<c.Check[]> {
  const out: c.Check[] = [await c.checkCli(deps), await c.checkManager(deps)];
  if (out[1]?.ok) {
    out.push(await c.checkNodes(deps));
    for (const stack of deps.config.stacks) {
      // a git stack's file exists per commit: its networks, secrets and labels are checked by the deploy itself
      const doc = stack.git ? null : await c.renderStack(deps, stack);
      if (doc === null)
        out.push({ check: `stack file of ${stack.name}`, ok: true, detail: `from git, ${stack.git?.path} at each pushed commit`, fix: "" });
      else if (typeof doc === "string")
        out.push({ check: `stack file of ${stack.name}`, ok: false, detail: doc, fix: `docker stack config -c ${stack.file}` });
      else
        out.push(
          c.checkRendered(stack, doc),
          await c.checkNetworks(deps, stack, doc),
          await c.checkSecrets(deps, stack, doc),
          await c.checkLabels(deps, stack, doc),
        );
      out.push(await c.checkDecrypts(deps, stack));
      out.push(await c.checkServices(deps, stack), await c.checkHealthUrl(stack), await c.checkInSync(deps, stack));
    }
  }
  out.push(await c.checkAgeKey(deps), await c.checkMount(deps), await c.checkSpoolDirs(deps));
  out.push(...(await c.checkWatcher(deps, o.unitState ?? (await unitState()))));
  return out;
}

export function formatDoctor(checks: c.Check[], json: boolean): string {
  if (json) return `${JSON.stringify(checks, null, 2)}\n`;
  const lines = checks.map((x) => {
    const mark = x.ok === true ? "✓" : x.ok === false ? "✗" : "–";
    return stripControl(`${mark} ${x.check}: ${x.detail}${x.fix ? `\n    fix: ${x.fix}` : ""}`);
  });
  const failed = checks.filter((x) => x.ok === false).length;
  return `${lines.join("\n")}\n${failed === 0 ? "all checks passed" : `${failed} check(s) failed`}\n`;
}

/** The exit status: how many checks failed, at most 125 (126 and up mean other things to a shell). */
export const doctorStatus = (checks: c.Check[]) => Math.min(125, checks.filter((x) => x.ok === false).length);
