/* eslint-disable @typescript-eslint/no-explicit-any -- rendered YAML is inspected loosely */
import assert from "node:assert/strict";
import { execFile } from "node:child_process";
import { readFileSync, readdirSync } from "node:fs";
import path from "node:path";
import { promisify } from "node:util";
import { describe, it } from "node:test";
import { parse as parseYaml } from "yaml";
import { loadAgentConfig } from "../agent/config.ts";
import { readEnvFile } from "./helpers/env-file.ts";

const run = promisify(execFile);
const ROOT = path.join(import.meta.dirname, "..");
const exampleEnv = readEnvFile(path.join(ROOT, ".env.example"));

async function sh(cmd: string, args: string[], env: Record<string, string> = {}) {
  try {
    const r = await run(cmd, args, { cwd: ROOT, env: { PATH: process.env.PATH ?? "", ...env } });
    return { code: 0, out: r.stdout, err: r.stderr };
  } catch (e) {
    const err = e as { code: number; stdout: string; stderr: string };
    return { code: err.code, out: err.stdout, err: err.stderr };
  }
}

describe("stack files", () => {
  for (const file of ["stack/stack.yaml", "stack/compose.yaml"]) {
    it(`docker stack config renders ${file} with .env.example`, async () => {
      const r = await sh("docker", ["stack", "config", "-c", file], exampleEnv);
      assert.equal(r.code, 0, r.err);
      assert.doesNotMatch(r.out, /\$\{/, "every variable interpolated");
      const doc = parseYaml(r.out) as { services: Record<string, { image: string }> };
      assert.equal(doc.services.api?.image, `${exampleEnv.API_IMAGE}:${exampleEnv.IMAGE_TAG}`);
      assert.ok(doc.services.postgres?.image.startsWith("postgres:18"));
    });
  }

  it("every env example carries every variable stack.yaml requires, and renders it through docker stack config", async () => {
    const text = readFileSync(path.join(ROOT, "stack/stack.yaml"), "utf8");
    const required = [...new Set([...text.matchAll(/\$\{([A-Z_][A-Z0-9_]*):\?/g)].map((m) => m[1] as string))].sort();
    assert.ok(required.includes("DEPLOY_REPOSITORY") && required.includes("VISIT_SALT"), required.join(" "));
    for (const file of [".env.example", "systemd/webhook-watcher.env.example"]) {
      const env = readEnvFile(path.join(ROOT, file));
      assert.deepEqual(
        required.filter((v) => !env[v]),
        [],
        `${file} lacks variables stack.yaml requires`,
      );
      // as the watcher renders it: its environment plus the job's commit
      const r = await sh("docker", ["stack", "config", "-c", "stack/stack.yaml"], {
        ...env,
        IMAGE_TAG: "a".repeat(40),
        DEPLOY_SHA: "a".repeat(40),
      });
      assert.equal(r.code, 0, `${file}: ${r.err}`);
      assert.doesNotMatch(r.out, /\$\{/, `${file}: every variable interpolated`);
    }
  });

  it("the watcher refuses its env example as it is, naming the placeholder to replace", () => {
    const env = readEnvFile(path.join(ROOT, "systemd/webhook-watcher.env.example"));
    assert.throws(() => loadAgentConfig({ ...env, STACK_FILE: path.join(ROOT, "stack/stack.yaml") }), /VISIT_SALT is a placeholder/);
    assert.doesNotThrow(() =>
      loadAgentConfig({ ...env, STACK_FILE: path.join(ROOT, "stack/stack.yaml"), VISIT_SALT: "0123456789abcdef0123456789abcdef" }),
    );
  });

  it("stack.yaml pins its images and has what each service needs", async () => {
    const doc = parseYaml((await sh("docker", ["stack", "config", "-c", "stack/stack.yaml"], exampleEnv)).out) as {
      services: Record<
        string,
        {
          image: string;
          deploy: Record<string, any>;
          ports?: { mode: string; published: number }[];
          secrets?: { source: string }[];
          volumes?: { type: string; source?: string; target: string }[];
          healthcheck?: object;
          command?: string[];
          environment?: Record<string, string>;
          networks?: Record<string, unknown>;
          read_only?: boolean;
          cap_drop?: string[];
          cap_add?: string[];
        }
      >;
      networks: Record<string, { external?: boolean; internal?: boolean; driver?: string }>;
      secrets: Record<string, { external: boolean }>;
    };
    const s = doc.services;
    assert.match(s.traefik?.image ?? "", /^traefik:v3\.\d+\.\d+$/);
    assert.match(s.postgres?.image ?? "", /^postgres:18\.\d+/);
    for (const name of ["traefik", "postgres"]) assert.ok(s[name]?.deploy.placement.constraints.includes("node.labels.edge == true"), name);
    assert.deepEqual(
      s.traefik?.ports?.map((p) => [p.published, p.mode]),
      [
        [80, "host"],
        [443, "host"],
      ],
    );
    assert.ok(s.postgres?.volumes?.some((v) => v.target === "/var/lib/postgresql"));
    assert.ok(s.postgres?.healthcheck && s.api?.healthcheck);
    assert.equal(s.api?.deploy.replicas, 2);
    for (const name of ["api", "frontend"]) {
      const d = s[name]?.deploy;
      assert.equal(d?.update_config.failure_action, "rollback", name);
      assert.equal(d?.update_config.order, "start-first", name);
      assert.ok(d?.update_config.monitor, name);
      assert.ok(d?.rollback_config, name);
      assert.ok(d?.resources.limits && d.resources.reservations, name);
    }
    assert.deepEqual(s.api?.secrets?.map((x) => x.source).sort(), ["github_webhook_secret", "history_token", "postgres_password"]);
    assert.match(
      String(s.api?.deploy.labels["traefik.http.routers.api.rule"]),
      /Host\(`app\.example\.com`\) && \(PathPrefix\(`\/api`\) \|\| Path\(`\/health`\) \|\| PathPrefix\(`\/deployments`\)\)/,
    );
    assert.deepEqual(Object.keys(doc.networks).sort(), ["docker_api", "internal", "public"]);
    assert.ok(doc.networks.public?.external && doc.networks.internal?.external && Object.values(doc.secrets).every((x) => x.external));
  });

  it("only the socket proxy mounts the Docker socket: pinned by digest, GET on what Traefik reads, on a network only Traefik joins; Traefik read-only, without capabilities but binding its ports", async () => {
    const doc = parseYaml((await sh("docker", ["stack", "config", "-c", "stack/stack.yaml"], exampleEnv)).out) as {
      services: Record<string, any>;
      networks: Record<string, { external?: boolean; internal?: boolean; driver?: string }>;
    };
    const mountsSocket = Object.entries(doc.services)
      .filter(([, svc]) => (svc.volumes ?? []).some((v: { source?: string }) => String(v.source).endsWith("docker.sock")))
      .map(([name]) => name);
    assert.deepEqual(mountsSocket, ["socket-proxy"]);
    const proxy = doc.services["socket-proxy"];
    assert.match(proxy.image, /^tecnativa\/docker-socket-proxy:v\d+\.\d+\.\d+@sha256:[0-9a-f]{64}$/);
    assert.ok(proxy.volumes.every((v: { read_only?: boolean }) => v.read_only === true));
    // tecnativa/docker-socket-proxy: every section is 0 unless set; POST=0 keeps the allowed ones GET/HEAD
    assert.deepEqual(proxy.environment, { EVENTS: "0", NETWORKS: "1", PING: "1", POST: "0", SERVICES: "1", TASKS: "1", VERSION: "1" });
    assert.deepEqual(Object.keys(proxy.networks), ["docker_api"]);
    assert.ok(proxy.deploy.placement.constraints.includes("node.role == manager"));
    assert.equal(doc.networks.docker_api?.internal, true);
    assert.equal(doc.networks.docker_api?.driver, "overlay");
    const joined = Object.entries(doc.services)
      .filter(([, svc]) => Object.keys(svc.networks ?? {}).includes("docker_api"))
      .map(([name]) => name)
      .sort();
    assert.deepEqual(joined, ["socket-proxy", "traefik"]);
    const traefik = doc.services.traefik;
    assert.ok(traefik.command.includes("--providers.swarm.endpoint=tcp://socket-proxy:2375"));
    assert.equal(traefik.read_only, true);
    assert.deepEqual(traefik.cap_drop, ["ALL"]);
    assert.deepEqual(traefik.cap_add, ["NET_BIND_SERVICE"]);
    assert.ok(traefik.volumes.some((v: { type: string; target: string }) => v.type === "tmpfs" && v.target === "/tmp"));
  });
});

describe("the API image", () => {
  it("copies every folder its build compiles (tsconfig.api.json), so the image builds from a clean checkout", () => {
    const { include } = JSON.parse(readFileSync(path.join(ROOT, "tsconfig.api.json"), "utf8")) as { include: string[] };
    const dockerfile = readFileSync(path.join(ROOT, "stack/api.Dockerfile"), "utf8");
    for (const dir of include) assert.match(dockerfile, new RegExp(`^COPY ${dir} ${dir}$`, "m"), dir);
  });

  it("installs only the API's dependency set: what api/, spool/ and lib/ import, at the versions the tests ran", () => {
    const dockerfile = readFileSync(path.join(ROOT, "stack/api.Dockerfile"), "utf8");
    assert.match(dockerfile, /^COPY api\/package\.json api\/package-lock\.json \.\/\nRUN npm ci --omit=dev/m);
    const own = JSON.parse(readFileSync(path.join(ROOT, "api/package.json"), "utf8")) as {
      type: string;
      dependencies: Record<string, string>;
    };
    const root = JSON.parse(readFileSync(path.join(ROOT, "package.json"), "utf8")) as { dependencies: Record<string, string> };
    assert.equal(own.type, "module", "api/*.ts stay ES modules under their own package.json");
    // every bare import of the API's sources (and pino's pretty transport, named by string)
    const imported = new Set(["pino-pretty"]);
    const walk = (dir: string): string[] =>
      readdirSync(path.join(ROOT, dir), { withFileTypes: true }).flatMap((e) =>
        e.isDirectory() ? walk(`${dir}/${e.name}`) : e.name.endsWith(".ts") ? [`${dir}/${e.name}`] : [],
      );
    for (const f of ["api", "spool", "lib"].flatMap(walk))
      for (const m of readFileSync(path.join(ROOT, f), "utf8").matchAll(/from "([^."][^"]*)"/g)) {
        const spec = m[1] as string;
        if (spec.startsWith("node:")) continue;
        imported.add(spec.startsWith("@") ? spec.split("/").slice(0, 2).join("/") : (spec.split("/")[0] as string));
      }
    assert.deepEqual(Object.keys(own.dependencies).sort(), [...imported].sort());
    for (const [name, range] of Object.entries(own.dependencies)) assert.equal(range, root.dependencies[name], `${name}: the root's range`);
    // its lock: the same versions as the root's lock (what the tests ran), and nothing of the watcher's
    type Lock = { packages: Record<string, { version?: string }> };
    const lock = JSON.parse(readFileSync(path.join(ROOT, "api/package-lock.json"), "utf8")) as Lock;
    const rootLock = JSON.parse(readFileSync(path.join(ROOT, "package-lock.json"), "utf8")) as Lock;
    const nameOf = (k: string) => k.split("node_modules/").pop() as string;
    const tested = new Set(Object.entries(rootLock.packages).map(([k, v]) => `${nameOf(k)}@${v.version}`));
    const locked = Object.entries(lock.packages).filter(([k]) => k !== "");
    assert.ok(locked.length > 20);
    for (const [k, v] of locked) assert.ok(tested.has(`${nameOf(k)}@${v.version}`), `${nameOf(k)}@${v.version} is not what the tests ran`);
    assert.deepEqual(
      locked.map(([k]) => nameOf(k)).filter((n) => /^(@octokit\/|execa$|yaml$|puppeteer)/.test(n)),
      [],
      "no watcher or test package in the API image",
    );
  });
});

describe("systemd unit", () => {
  const unit = "systemd/webhook-watcher.service";
  it("passes systemd-analyze verify", async () => {
    const r = await sh("systemd-analyze", ["verify", unit]);
    assert.equal(r.code, 0, r.err);
    assert.equal(r.err.trim(), "", r.err);
  });
  it("has an exposure of at most 4.0 (systemd-analyze security --offline=yes)", async () => {
    const r = await sh("systemd-analyze", ["security", "--offline=yes", unit]);
    const m = /Overall exposure level for webhook-watcher\.service: ([\d.]+)/.exec(r.out);
    assert.ok(m, r.out + r.err);
    assert.ok(Number(m[1]) <= 4.0, `exposure ${m[1]}`);
  });
});

describe("scripts", () => {
  const scripts = readdirSync(path.join(ROOT, "scripts"))
    .filter((f) => f.endsWith(".sh"))
    .map((f) => `scripts/${f}`);
  it("are shellcheck clean", async () => {
    const r = await sh("shellcheck", scripts);
    assert.equal(r.code, 0, r.out);
  });
  for (const s of scripts) {
    it(`${s} --help explains itself and exits 0`, async () => {
      const r = await sh("bash", [s, "--help"]);
      assert.equal(r.code, 0, r.err);
      assert.match(r.out, /^Usage: /);
      const text = await sh("grep", ["-c", "set -euo pipefail", s]);
      assert.equal(text.out.trim(), "1");
    });
  }
});

describe("justfile", () => {
  const recipes = [
    "up",
    "upb",
    "down",
    "swarm-networks",
    "swarm-label-edge",
    "swarm-label-kvm8",
    "swarm-secrets",
    "stack-deploy",
    "stack-services",
    "stack-ps",
    "stack-logs",
    "watcher-install",
    "watcher-logs",
    "watcher-status",
    "deploy-now",
    "rollback",
    "plan",
    "jobs",
    "follow",
    "age-key",
    "doctor",
    "test",
  ];
  it("lists every recipe, each with a comment", async () => {
    const r = await sh("just", ["--list"]);
    assert.equal(r.code, 0, r.err);
    for (const name of recipes) assert.match(r.out, new RegExp(`^\\s+${name}\\b.*# \\S`, "m"), name);
  });
  it("prints the expected command for each recipe (just -n)", async () => {
    const expected: [string[], string][] = [
      [["up"], "docker compose -p swarmhook-local -f stack/compose.yaml up -d"],
      [["upb"], "docker compose -p swarmhook-local -f stack/compose.yaml up -d --build"],
      [["down"], "docker compose -p swarmhook-local -f stack/compose.yaml down"],
      [["swarm-networks"], "bash scripts/swarm-bootstrap.sh networks"],
      [["swarm-label-edge"], "bash scripts/swarm-bootstrap.sh label kvm8"],
      [["swarm-label-edge", "kvm4"], "bash scripts/swarm-bootstrap.sh label kvm4"],
      [["swarm-label-kvm8"], "bash scripts/swarm-bootstrap.sh label kvm8"],
      [["swarm-secrets"], "bash scripts/swarm-bootstrap.sh secrets"],
      [["stack-deploy"], "docker stack deploy -c stack/stack.yaml app --with-registry-auth --detach=false"],
      [["stack-services"], "docker stack services app"],
      [["stack-ps"], "docker stack ps app --no-trunc"],
      [["stack-logs", "api"], "docker service logs -f --tail 200 app_api"],
      [["watcher-install"], "sudo bash scripts/watcher-install.sh"],
      [["watcher-logs"], "journalctl -u webhook-watcher -f -o cat | node_modules/.bin/pino-pretty"],
      [["watcher-status"], "systemctl status webhook-watcher --no-pager"],
      [
        ["deploy-now", "0123456789abcdef0123456789abcdef01234567"],
        "node dist/bin/swarmhook.js enqueue --spool /mnt/nfs/webhook_jobs --sha 0123456789abcdef0123456789abcdef01234567",
      ],
      [["rollback", "app"], "node dist/bin/swarmhook.js rollback --spool /mnt/nfs/webhook_jobs --stack app"],
      [["rollback", "app", "3f2a9c1"], "node dist/bin/swarmhook.js rollback --spool /mnt/nfs/webhook_jobs --stack app --to 3f2a9c1"],
      [["plan", "app"], "set -a && . /etc/swarmhook/webhook-watcher.env && set +a && node dist/bin/swarmhook.js plan --stack app"],
      [
        ["plan", "app", "3f2a9c1"],
        "set -a && . /etc/swarmhook/webhook-watcher.env && set +a && node dist/bin/swarmhook.js plan --stack app --sha 3f2a9c1",
      ],
      [["jobs"], "node dist/bin/swarmhook.js jobs --spool /mnt/nfs/webhook_jobs"],
      [["follow", "app"], "node dist/bin/swarmhook.js follow --spool /mnt/nfs/webhook_jobs --stack app"],
      [
        ["age-key"],
        "sudo node dist/bin/swarmhook.js keygen --out /etc/swarmhook/age.key && sudo chown swarmhook:app /etc/swarmhook/age.key",
      ],
      [["doctor", "--json"], "set -a && . /etc/swarmhook/webhook-watcher.env && set +a && node dist/bin/swarmhook.js doctor --json"],
      [["test"], "npm test"],
    ];
    // a fresh checkout has no .env: the defaults apply (STACK_NAME=app, SPOOL_DIR=/mnt/nfs/webhook_jobs)
    for (const [args, cmd] of expected) {
      const r = await sh("just", ["-n", ...args]);
      assert.equal(r.code, 0, `${args.join(" ")}: ${r.err}`);
      assert.equal(r.err.trim().split("\n").at(-1), cmd, args.join(" "));
    }
  });
});

describe("the Actions workflow", () => {
  const wf = parseYaml(readFileSync(path.join(ROOT, ".github/workflows/deploy.yml"), "utf8")) as {
    jobs: Record<
      string,
      {
        if?: string;
        environment?: string;
        steps: { uses?: string; with?: Record<string, unknown>; env?: Record<string, string>; run?: string }[];
      }
    >;
  };
  const steps = Object.values(wf.jobs).flatMap((j) => j.steps);

  it("pins every action by commit SHA and keeps no checkout token", () => {
    const uses = steps.flatMap((s) => (s.uses ? [s.uses] : []));
    assert.ok(uses.length >= 5);
    for (const u of uses) assert.match(u, /^[\w.-]+\/[\w.-]+@[0-9a-f]{40}$/, u);
    for (const s of steps.filter((x) => x.uses?.startsWith("actions/checkout@"))) assert.equal(s.with?.["persist-credentials"], false);
  });

  it("signs deploys only from main, inside the production environment that holds the secret", () => {
    const signing = Object.entries(wf.jobs).filter(([, j]) => JSON.stringify(j).includes("DEPLOY_WEBHOOK_SECRET"));
    assert.equal(signing.length, 1);
    const [, job] = signing[0] as [string, (typeof wf.jobs)[string]];
    assert.equal(job.environment, "production");
    assert.equal(job.if, "github.ref == 'refs/heads/main'");
    const text = readFileSync(path.join(ROOT, ".github/workflows/deploy.yml"), "utf8");
    assert.ok(!/^\s+DEPLOY_WEBHOOK_SECRET:.*secrets\./m.test(text.split("\n  deploy:")[0] ?? ""), "the build job never sees the secret");
  });

  it("installs without install scripts wherever a credential is near (packages: write, the webhook secret)", () => {
    const installs = Object.values(wf.jobs).flatMap((j) =>
      (j.steps ?? []).flatMap((s) => (s.run ?? "").split("\n").filter((l) => /\bnpm (ci|install)\b/.test(l))),
    );
    assert.ok(installs.length >= 2, installs.join(" | "));
    for (const l of installs) assert.match(l, /--ignore-scripts/);
  });

  it("tags :latest only from main", () => {
    const tags = steps.flatMap((s) => (typeof s.with?.tags === "string" ? [s.with.tags] : []));
    assert.equal(tags.length, 2);
    for (const t of tags)
      for (const line of t.split("\n").filter((l) => l.includes(":latest") || l.includes("latest")))
        assert.match(line, /steps\.names\.outputs\.latest == 'true'/);
    assert.ok(steps.some((s) => s.run?.includes('[ "$GITHUB_REF" = refs/heads/main ] && latest=true')));
  });
});
