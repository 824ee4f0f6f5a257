import assert from "node:assert/strict";
import { execFile } from "node:child_process";
import { promisify } from "node:util";
import { after, before, describe, it } from "node:test";
import { chown, mkdtemp, readFile, rm, writeFile } from "node:fs/promises";
import { SUBDIRS, ensureSpool, openSpool } from "../spool/index.ts";
import { mountBindfs } from "./helpers/bindfs.ts";
import { spawnTs } from "./helpers/proc.ts";
import { randomBytes } from "node:crypto";
import os from "node:os";
import path from "node:path";
import { readEnvFile } from "./helpers/env-file.ts";
import { SOCKET_PROXY_STANDIN, STACK_IMAGES, buildStandinImage } from "./helpers/images.ts";
import { NODES, docker, netnsSwarm, nodeHost, waitFor } from "./helpers/swarm.ts";

const run = promisify(execFile);

describe("three-node swarm in network namespaces", () => {
  before(async () => {
    await buildStandinImage(STACK_IMAGES);
    await netnsSwarm("up", { SWARMHOOK_NETNS_IMAGES: ["swarmhook-test/busybox:latest", ...STACK_IMAGES].join(" ") });
  });
  after(async () => {
    await netnsSwarm("down");
  });

  it("npm test on a node of this multi-node swarm refuses with exit 1 before any test runs, within seconds", async () => {
    const env = { ...process.env, DOCKER_HOST: nodeHost("kvm8") } as Record<string, string>;
    delete env.SWARMHOOK_TEST_ON_THIS_NODE;
    const started = Date.now();
    const r = await run("npm", ["test"], { cwd: path.join(import.meta.dirname, ".."), env, timeout: 60_000 }).then(
      (x) => ({ code: 0, out: x.stdout, err: x.stderr }),
      (e: { code: number; stdout: string; stderr: string }) => ({ code: e.code, out: e.stdout, err: e.stderr }),
    );
    assert.equal(r.code, 1, r.out + r.err);
    assert.ok(Date.now() - started < 15_000, `took ${Date.now() - started} ms`);
    assert.match(r.err, /test-guard: refusing to run the test suite on this node: it is one of the 3 nodes of a swarm \(.*kvm8.*\)/);
    assert.match(r.err, /SWARMHOOK_TEST_ON_THIS_NODE=1/);
    assert.doesNotMatch(r.out, /test-env:|# tests/, "nothing was installed, started or tested");
  });

  it("has three managers named after the reference cluster, kvm8 labelled edge", async () => {
    const host = nodeHost("kvm8");
    const lines = (await docker(["node", "ls", "--format", "{{.Hostname}} {{.Status}} {{.ManagerStatus}}"], { host })).split("\n").sort();
    assert.deepEqual(
      lines.map((l) => l.split(" ")[0]),
      [...NODES],
    );
    for (const l of lines) assert.match(l, / Ready (Leader|Reachable)$/);
    assert.equal(await docker(["node", "inspect", "kvm8", "-f", '{{index .Spec.Labels "edge"}}'], { host }), "true");
    await netnsSwarm("status"); // exits 0 only when all three are active
  });

  it("spreads a 3-replica service with max_replicas_per_node 1 over three nodes", async () => {
    const host = nodeHost("kvm2");
    await docker(
      [
        "service",
        "create",
        "--detach",
        "--name",
        "spread",
        "--replicas",
        "3",
        "--replicas-max-per-node",
        "1",
        "--endpoint-mode",
        "dnsrr",
        "--no-resolve-image",
        "swarmhook-test/busybox:latest",
        "sleep",
        "3600",
      ],
      { host },
    );
    const nodes = await waitFor("three running tasks", async () => {
      const out = await docker(
        ["service", "ps", "spread", "--filter", "desired-state=running", "--format", "{{.Node}} {{.CurrentState}}"],
        { host },
      );
      const running = out.split("\n").filter((l) => / Running /.test(l));
      return running.length === 3 ? running.map((l) => l.split(" ")[0]) : undefined;
    });
    assert.deepEqual([...new Set(nodes)].sort(), [...NODES]);
  });

  it("places stack.yaml as designed: traefik and postgres on the edge node, api and frontend spread", async () => {
    const root = path.join(import.meta.dirname, "..");
    const host = nodeHost("kvm8");
    const spool = await mkdtemp(path.join(os.tmpdir(), "swarmhook-placement-"));
    await ensureSpool(openSpool(spool));
    // the operator's .env: the example with its placeholder secrets replaced, as the runbook says
    const envFile = path.join(spool, ".env");
    const example = await readFile(path.join(root, ".env.example"), "utf8");
    const secret = randomBytes(32).toString("hex");
    await writeFile(envFile, example.replace(/^(GITHUB_WEBHOOK_SECRET|POSTGRES_PASSWORD|VISIT_SALT|HISTORY_TOKEN)=.*$/gm, `$1=${secret}`));
    const env = {
      ...process.env,
      ...readEnvFile(envFile),
      SPOOL_DIR: spool,
      DOCKER_HOST: host,
      ENV_FILE: envFile,
      SOCKET_PROXY_IMAGE: SOCKET_PROXY_STANDIN,
    };
    try {
      // the example as it is: refused, naming the placeholder, before anything is created
      const refused = await run("bash", [path.join(root, "scripts", "swarm-bootstrap.sh"), "secrets"], {
        env: { ...env, ENV_FILE: path.join(root, ".env.example"), GITHUB_WEBHOOK_SECRET: "" },
      }).then(
        () => "",
        (e: { stderr: string }) => e.stderr,
      );
      assert.match(refused, /GITHUB_WEBHOOK_SECRET is still the placeholder/);
      // the operator's bootstrap, for real: networks, edge label, secrets from the env file
      await run("bash", [path.join(root, "scripts", "swarm-bootstrap.sh"), "all"], { env });
      const again = await run("bash", [path.join(root, "scripts", "swarm-bootstrap.sh"), "all"], { env });
      assert.match(again.stdout, /network public: exists/);
      await run(
        "docker",
        ["stack", "deploy", "-c", path.join(root, "stack", "stack.yaml"), "app", "--resolve-image", "never", "--detach=true"],
        { env },
      );
      const placed = await waitFor(
        "every task of the stack running",
        async () => {
          const out = await docker(
            ["stack", "ps", "app", "--filter", "desired-state=running", "--format", "{{.Name}} {{.Node}} {{.CurrentState}}"],
            { host },
          );
          const rows = out
            .split("\n")
            .filter(Boolean)
            .map((l) => l.split(" "));
          const running = rows.filter((r) => r[2] === "Running");
          return running.length === 7 ? running.map((r) => [String(r[0]).replace(/\.\d+$/, ""), r[1] as string]) : undefined;
        },
        120_000,
        1000,
      );
      const nodesOf = (svc: string) => placed.filter(([name]) => name === `app_${svc}`).map(([, node]) => node);
      assert.deepEqual(nodesOf("traefik"), ["kvm8"]);
      assert.deepEqual(nodesOf("socket-proxy"), ["kvm8"]);
      // the engine took what holds Traefik in: read-only, no capability but binding its ports
      const traefik = JSON.parse(
        await docker(["service", "inspect", "app_traefik", "-f", "{{json .Spec.TaskTemplate.ContainerSpec}}"], { host }),
      ) as { ReadOnly?: boolean; CapabilityDrop?: string[]; CapabilityAdd?: string[]; Mounts?: { Source?: string }[] };
      assert.equal(traefik.ReadOnly, true);
      assert.deepEqual([traefik.CapabilityDrop, traefik.CapabilityAdd], [["ALL"], ["CAP_NET_BIND_SERVICE"]]);
      assert.ok(!(traefik.Mounts ?? []).some((m) => m.Source?.endsWith("docker.sock")));
      // and enforces it in the running container: bounding set = NET_BIND_SERVICE (bit 10), / read-only
      const container = (await docker(["ps", "-q", "--filter", "name=app_traefik"], { host })).split("\n")[0] ?? "";
      const inside = await docker(
        ["exec", container, "sh", "-c", "grep CapBnd /proc/self/status; touch /probe 2>&1 || true; touch /tmp/probe && echo tmp-ok"],
        {
          host,
        },
      );
      assert.match(inside, /CapBnd:\s+0000000000000400/);
      assert.match(inside, /Read-only file system/);
      assert.match(inside, /tmp-ok/);
      assert.deepEqual(nodesOf("postgres"), ["kvm8"]);
      for (const svc of ["api", "frontend"]) {
        const nodes = nodesOf(svc);
        assert.equal(nodes.length, 2, svc);
        assert.equal(new Set(nodes).size, 2, `${svc} replicas on two different nodes: ${nodes.join(",")}`);
      }
      // swarmhook doctor on kvm8 with the watcher's configuration: every check passes on this healthy cluster
      const mount = await mountBindfs(spool); // the spool as on kvm8: a mount, group app, mode 2770
      try {
        for (const sub of SUBDIRS) await chown(path.join(spool, sub), 0, 1011);
        const doctorEnv = {
          ...readEnvFile(envFile),
          DOCKER_HOST: host,
          SPOOL_DIR: mount.mountpoint,
          STACK_FILE: path.join(root, "stack", "stack.yaml"),
          STACK_NAME: "app",
          SOCKET_PROXY_IMAGE: SOCKET_PROXY_STANDIN,
          HEALTH_URL: "", // app.example.com is not this machine: no traffic leaves it
        };
        const p = spawnTs("bin/swarmhook.ts", ["doctor", "--json"], doctorEnv);
        const code = await p.exited;
        const checks = JSON.parse(p.out() || "[]") as { check: string; ok: boolean | null; detail: string }[];
        assert.equal(
          code,
          0,
          `${JSON.stringify(
            checks.filter((c) => c.ok === false),
            null,
            2,
          )}${p.err()}`,
        );
        const nodes = checks.find((c) => c.check === "swarm nodes");
        // every node named once, each a leader or a reachable manager (node ls order is Docker's)
        assert.match(nodes?.detail ?? "", /^3 ready: /);
        const named = (nodes?.detail ?? "").replace(/^3 ready: /, "").split(", ");
        assert.deepEqual(named.map((n) => n.split(" ")[0]).sort(), ["kvm2", "kvm4", "kvm8"]);
        assert.deepEqual(named.map((n) => n.split(" ")[1]).sort(), ["(leader)", "(reachable)", "(reachable)"]);
        for (const name of [
          "networks of app",
          "secrets of app",
          "node labels of app",
          "services of app",
          "spool mount",
          "spool directories",
        ]) {
          assert.equal(checks.find((c) => c.check === name)?.ok, true, name);
        }
        assert.match(checks.find((c) => c.check === "node labels of app")?.detail ?? "", /edge=true on kvm8/);
      } finally {
        await mount.unmount();
      }
    } finally {
      await docker(["stack", "rm", "app"], { host }).catch(() => undefined);
      await rm(spool, { recursive: true, force: true });
    }
  });

  it("comes down cleanly and can be taken down twice", async () => {
    await netnsSwarm("down");
    await netnsSwarm("down");
    const { stdout } = await run("ip", ["netns", "list"]);
    assert.doesNotMatch(stdout, /swarmhook-/);
    await assert.rejects(run("ip", ["link", "show", "swarmhook0"]));
    await assert.rejects(netnsSwarm("status"));
  });
});
