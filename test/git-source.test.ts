// Stacks from git: the stack file (and what it references) as it is in the pushed commit, judged by
// git's history. Real repositories made here, served as file:// and by `git daemon` on loopback,
// deployed on the real one-node swarm.
import assert from "node:assert/strict";
import { spawn } from "node:child_process";
import http from "node:http";
import net from "node:net";
import { mkdtemp, readFile, rm, symlink, writeFile } from "node:fs/promises";
import os from "node:os";
import path from "node:path";
import { describe, it } from "node:test";
import { execa } from "execa";
import { pino } from "pino";
import { publish, readRecords, startTestAgent, waitForRecord } from "./helpers/agent.ts";
import { spawnDist, spawnTs, stopProc, waitForLine } from "./helpers/proc.ts";
import { onEnd, type Ends } from "./helpers/cleanup.ts";
import { REPO, gitConfig, makeRepo } from "./helpers/git-repo.ts";
import { buildWebImage } from "./helpers/images.ts";
import { freePort } from "./helpers/postgres.ts";
import { useTempSpool } from "./helpers/spool.ts";
import { docker, uniqueStack, waitFor } from "./helpers/swarm.ts";

/** `git daemon` serving `repoDir` on a free loopback port, answering before this returns. */
async function startGitDaemon(t: Ends, repoDir: string): Promise<number> {
  const port = await freePort();
  const base = path.dirname(repoDir);
  const daemon = spawn(
    "git",
    ["daemon", "--reuseaddr", "--export-all", "--listen=127.0.0.1", `--port=${port}`, `--base-path=${base}`, repoDir],
    {
      stdio: "ignore",
    },
  );
  onEnd(t, () => void daemon.kill());
  const url = `git://127.0.0.1:${port}/${path.basename(repoDir)}`;
  await waitFor(
    "git daemon",
    async () => ((await execa("git", ["ls-remote", url], { reject: false })).exitCode === 0 ? true : undefined),
    10_000,
    200,
  );
  return port;
}

async function gitAgent(t: Ends, root: string, url: string, stack: string, env: Record<string, string> = {}) {
  const { stateDir, config } = await gitConfig(t, url, stack);
  const agent = await startTestAgent(root, { AGENT_CONFIG: config, STATE_DIR: stateDir, ...env });
  onEnd(t, () => agent.stop());
  return { agent, stateDir };
}

const spec = async (stack: string) =>
  JSON.parse(await docker(["service", "inspect", `${stack}_web`, "-f", "{{json .Spec}}"])) as {
    Mode: { Replicated: { Replicas: number } };
    TaskTemplate: { ContainerSpec: { Env?: string[]; Image: string } };
  };

describe("stacks from git", () => {
  it("deploys each commit's own stack file and env file; stale by ancestry; a force-push deploys, marked forced; a commit off the branch is invalid", async (t) => {
    const s = await useTempSpool(t);
    const repo = await makeRepo(t);
    const stack = uniqueStack(t);
    const c1 = await repo.commit(1, "one");
    const { stateDir } = await gitAgent(t, s.root, `file://${repo.dir}`, stack);
    const push = (sha: string, before?: string) => publish(s.root, sha, { repository: REPO, ...(before ? { before } : {}) });

    const r1 = await waitForRecord(s.root, await push(c1));
    assert.equal(r1.outcome, "success", r1.reason);
    assert.equal((await spec(stack)).Mode.Replicated.Replicas, 1);
    assert.ok((await spec(stack)).TaskTemplate.ContainerSpec.Env?.includes("GREETING=one"));

    const c2 = await repo.commit(2, "two");
    const r2 = await waitForRecord(s.root, await push(c2, c1));
    assert.equal(r2.outcome, "success", r2.reason);
    const s2 = await spec(stack);
    assert.equal(s2.Mode.Replicated.Replicas, 2, "the commit's replicas were deployed");
    assert.ok(s2.TaskTemplate.ContainerSpec.Env?.includes("GREETING=two"), "with the env file as committed");
    assert.equal(r2.forced, undefined);

    // a late delivery of c1, with no push chain to tell: git's history says it is behind
    const late = await waitForRecord(s.root, await push(c1));
    assert.equal(late.outcome, "stale");
    assert.match(late.reason ?? "", new RegExp(`${c1.slice(0, 12)} is an ancestor of the deployed ${c2.slice(0, 12)} \\(git\\)`));

    // a commit that only exists on another branch
    await repo.git("checkout", "--quiet", "-b", "feature");
    const side = await repo.commit(1, "side");
    await repo.git("checkout", "--quiet", "main");
    const off = await waitForRecord(s.root, await push(side));
    assert.equal(off.outcome, "invalid");
    assert.match(off.reason ?? "", /is not on main: only what landed there deploys/);

    // a force-push: main rewritten from c1, so the new commit is neither ahead of nor behind c2
    await repo.git("reset", "--quiet", "--hard", c1);
    const c4 = await repo.commit(3, "forced");
    const r4 = await waitForRecord(s.root, await push(c4, c2));
    assert.equal(r4.outcome, "success", r4.reason);
    assert.equal(r4.forced, true);
    assert.equal((await spec(stack)).Mode.Replicated.Replicas, 3);
    // checkouts are per job and removed after it
    assert.deepEqual(await import("node:fs/promises").then((fs) => fs.readdir(path.join(stateDir, "jobs"))), []);
  });

  it("fetches over git:// from a git daemon on loopback", async (t) => {
    const s = await useTempSpool(t);
    const repo = await makeRepo(t);
    const stack = uniqueStack(t);
    const sha = await repo.commit(1, "daemon");
    const port = await startGitDaemon(t, repo.dir);
    await gitAgent(t, s.root, `git://127.0.0.1:${port}/${path.basename(repo.dir)}`, stack);
    const r = await waitForRecord(s.root, await publish(s.root, sha, { repository: REPO }));
    assert.equal(r.outcome, "success", r.reason);
    assert.ok((await spec(stack)).TaskTemplate.ContainerSpec.Env?.includes("GREETING=daemon"));
  });

  it("a config file that changes with the commit rotates by content; the old version is removed after the deploy", async (t) => {
    const s = await useTempSpool(t);
    const repo = await makeRepo(t);
    const stack = uniqueStack(t);
    const stackYaml = [
      'version: "3.8"',
      "services:",
      "  web:",
      "    image: swarmhook-test/web:${IMAGE_TAG:?IMAGE_TAG is set by the agent}",
      "    configs: [{ source: app_conf, target: /etc/app.conf }]",
      "    deploy: { replicas: 1, endpoint_mode: dnsrr, update_config: { order: start-first, monitor: 1s } }",
      "configs:",
      "  app_conf:",
      "    file: ./app.conf",
      "",
    ].join("\n");
    const commitConfig = async (content: string) => {
      await writeFile(path.join(repo.dir, "stack.yaml"), stackYaml);
      await writeFile(path.join(repo.dir, "app.conf"), content);
      await repo.git("add", "-A");
      await repo.git("commit", "--quiet", "-m", content);
      const sha = await repo.git("rev-parse", "HEAD");
      await buildWebImage(sha);
      return sha;
    };
    const { createHash } = await import("node:crypto");
    const nameOf = (content: string) => `${stack}_app_conf_${createHash("sha256").update(content).digest("hex").slice(0, 12)}`;
    const configOf = async () =>
      docker(["service", "inspect", `${stack}_web`, "-f", "{{range .Spec.TaskTemplate.ContainerSpec.Configs}}{{.ConfigName}}{{end}}"]);
    const configs = async () =>
      (await docker(["config", "ls", "--filter", `label=com.docker.stack.namespace=${stack}`, "--format", "{{.Name}}"]))
        .split("\n")
        .filter(Boolean)
        .sort();
    onEnd(t, async () => {
      for (const c of await configs().catch(() => [])) await docker(["config", "rm", c]).catch(() => undefined);
    });

    const v1 = await commitConfig("level=1\n");
    await gitAgent(t, s.root, `file://${repo.dir}`, stack, { KEEP_OBJECT_VERSIONS: "1" });
    const r1 = await waitForRecord(s.root, await publish(s.root, v1, { repository: REPO }));
    assert.equal(r1.outcome, "success", r1.reason);
    assert.equal(await configOf(), nameOf("level=1\n"));

    const v2 = await commitConfig("level=2\n");
    const r2 = await waitForRecord(s.root, await publish(s.root, v2, { repository: REPO }));
    assert.equal(r2.outcome, "success", r2.reason);
    assert.equal(await configOf(), nameOf("level=2\n"), "the new content is a new config, and the service uses it");
    assert.deepEqual(await configs(), [nameOf("level=2\n")], "the old version is gone (KEEP_OBJECT_VERSIONS=1)");
  });

  it("a watcher killed mid-fetch (and its git with it, as systemd does) finishes the job once after the restart", async (t) => {
    const s = await useTempSpool(t);
    const repo = await makeRepo(t);
    const stack = uniqueStack(t);
    const sha = await repo.commit(1, "restarted");
    const daemonPort = await startGitDaemon(t, repo.dir);
    // a proxy that holds every connection while `hold` is set: the fetch hangs, as over a slow link
    let hold = true;
    const held: net.Socket[] = [];
    const proxy = net.createServer((c) => {
      if (hold) return void held.push(c);
      const up = net.connect(daemonPort, "127.0.0.1");
      c.pipe(up).pipe(c);
      up.on("error", () => c.destroy());
      c.on("error", () => up.destroy());
    });
    await new Promise<void>((r) => proxy.listen(0, "127.0.0.1", r));
    onEnd(t, () => new Promise<void>((r) => proxy.close(() => r())));
    const url = `git://127.0.0.1:${(proxy.address() as net.AddressInfo).port}/${path.basename(repo.dir)}`;
    const { stateDir, config } = await gitConfig(t, url, stack);
    const env = {
      SPOOL_DIR: s.root,
      AGENT_CONFIG: config,
      STATE_DIR: stateDir,
      POLL_INTERVAL_MS: "200",
      LOG_FORMAT: "json",
      HOME: os.tmpdir(),
      RECONCILE_INTERVAL_S: "0", // the job's own deploy is what is killed and resumed here
    };

    const first = spawnTs("agent/main.ts", [], env);
    onEnd(t, () => stopProc(first, "SIGKILL").then(() => undefined));
    const jobId = await publish(s.root, sha, { repository: REPO });
    await waitForLine(first, "fetching the stack's repository");
    await new Promise((r) => setTimeout(r, 500));
    await stopProc(first, "SIGKILL");
    await execa("pkill", ["-KILL", "-f", stateDir], { reject: false }); // systemd ends the unit's whole cgroup
    for (const c of held) c.destroy();
    hold = false;

    const second = spawnTs("agent/main.ts", [], env);
    onEnd(t, () => stopProc(second).then(() => undefined));
    const r = await waitForRecord(s.root, jobId);
    assert.equal(r.outcome, "success", r.reason);
    await new Promise((res) => setTimeout(res, 1000));
    assert.equal((await readRecords(s.root)).filter((x) => x.jobId === jobId).length, 1, "one record");
    assert.ok((await spec(stack)).TaskTemplate.ContainerSpec.Env?.includes("GREETING=restarted"));
  });

  it("swarmhook plan prints the replica, image and environment changes a commit would make (exit 2), and no changes once deployed (exit 0); every record carries its plan", async (t) => {
    const s = await useTempSpool(t);
    const repo = await makeRepo(t);
    const stack = uniqueStack(t);
    const c1 = await repo.commit(1, "one");
    const { stateDir } = await gitAgent(t, s.root, `file://${repo.dir}`, stack);
    const r1 = await waitForRecord(s.root, await publish(s.root, c1, { repository: REPO }));
    assert.equal(r1.outcome, "success", r1.reason);
    assert.match(r1.plan?.summary ?? "", /^web added$/);
    const c2 = await repo.commit(2, "two");
    const config = path.join(stateDir, "stacks.yaml");
    const plan = async (...args: string[]) => {
      const p = spawnDist("bin/swarmhook.js", ["plan", "--stack", stack, ...args], {
        SPOOL_DIR: s.root,
        AGENT_CONFIG: config,
        STATE_DIR: stateDir,
        HOME: os.tmpdir(),
      });
      return { code: await p.exited, out: p.out(), err: p.err() };
    };

    const before = await plan("--sha", c2.slice(0, 10));
    assert.equal(before.code, 2, before.err);
    assert.match(before.out, new RegExp(`^plan for ${stack} at ${c2.slice(0, 12)}:`));
    assert.match(before.out, /web: image swarmhook-test\/web:[0-9a-f]{40} → swarmhook-test\/web:[0-9a-f]{40}/);
    assert.match(before.out, /web: replicas 1 → 2/);
    assert.match(before.out, /web: environment ~GREETING/);
    assert.doesNotMatch(before.out, /GREETING=two/, "values are never printed");
    const json = JSON.parse((await plan("--sha", c2, "--json")).out) as { changes: { service: string; fields: { field: string }[] }[] };
    assert.deepEqual(json.changes[0]?.fields.map((f) => f.field).sort(), ["environment", "image", "replicas"]);

    const r2 = await waitForRecord(s.root, await publish(s.root, c2, { repository: REPO, before: c1 }));
    assert.equal(r2.outcome, "success", r2.reason);
    assert.match(r2.plan?.summary ?? "", /web: image .* replicas 1 → 2, environment ~GREETING/);
    const after = await plan();
    assert.equal(after.code, 0, after.out + after.err);
    assert.match(after.out, /no changes/);
    const bad = await plan("--sha", "not-a-sha");
    assert.equal(bad.code, 1, "bad usage is 1 for plan: 2 means changes");

    // the same commit again (by hand): an empty plan deploys nothing, and what runs is still verified
    const again = await waitForRecord(s.root, await publish(s.root, c2, { repository: REPO, event: "manual" }));
    assert.equal(again.outcome, "success", again.reason);
    assert.equal(again.reason, "no changes");
    assert.equal(again.attempts.length, 0, "docker stack deploy was not run");
    assert.equal(again.services[0]?.running, 2);
  });

  it("fetches over smart HTTP (git http-backend) with the watcher's GitHub token, sent to GitHub's host only and never written down", async (t) => {
    const repo = await makeRepo(t);
    const sha = await repo.commit(1, "http");
    const root = await mkdtemp(path.join(os.tmpdir(), "swarmhook-http-git-"));
    onEnd(t, () => rm(root, { recursive: true, force: true }));
    await execa("git", ["clone", "--quiet", "--bare", repo.dir, path.join(root, "shop.git")]);
    const token = "ghs_http_backend_token_0123456789";
    const expected = `Basic ${Buffer.from(`x-access-token:${token}`).toString("base64")}`;
    const server = http.createServer((req, res) => {
      if (req.headers.authorization !== expected) return void res.writeHead(401, { "WWW-Authenticate": 'Basic realm="git"' }).end();
      const u = new URL(req.url ?? "/", "http://x");
      const cgi = spawn("git", ["http-backend"], {
        env: {
          PATH: process.env.PATH ?? "",
          GIT_PROJECT_ROOT: root,
          GIT_HTTP_EXPORT_ALL: "1",
          PATH_INFO: u.pathname,
          QUERY_STRING: u.search.slice(1),
          REQUEST_METHOD: req.method ?? "GET",
          CONTENT_TYPE: req.headers["content-type"] ?? "",
          REMOTE_USER: "x-access-token",
        },
      });
      req.pipe(cgi.stdin);
      let head = Buffer.alloc(0);
      let started = false;
      cgi.stdout.on("data", (d: Buffer) => {
        if (started) return void res.write(d);
        head = Buffer.concat([head, d]);
        const end = head.indexOf("\r\n\r\n");
        if (end < 0) return;
        const headers: Record<string, string> = {};
        for (const line of head.subarray(0, end).toString().split("\r\n"))
          headers[line.slice(0, line.indexOf(":")).toLowerCase()] = line.slice(line.indexOf(":") + 1).trim();
        const status = Number((headers.status ?? "200").split(" ")[0]);
        delete headers.status;
        res.writeHead(status, headers);
        started = true;
        res.write(head.subarray(end + 4));
      });
      cgi.stdout.on("end", () => res.end());
    });
    await new Promise<void>((r) => server.listen(0, "127.0.0.1", r));
    onEnd(t, () => new Promise<void>((r) => server.close(() => r())));
    const url = `http://127.0.0.1:${(server.address() as net.AddressInfo).port}/shop.git`;
    const stateDir = await mkdtemp(path.join(os.tmpdir(), "swarmhook-state-"));
    onEnd(t, () => rm(stateDir, { recursive: true, force: true }));
    const { createGitToken, createGithubClient } = await import("../agent/report/github.ts");
    const { openMirror } = await import("../agent/prepare/git.ts");
    const github = (apiUrl: string) => ({ apiUrl, auth: { type: "token" as const, token } });
    const gh = createGithubClient(github("http://127.0.0.1:1"), pino({ level: "silent" }), "test");

    const refused = await openMirror(
      path.join(stateDir, "a"),
      { url, path: "stack.yaml" },
      createGitToken(github("https://api.github.com"), gh),
    );
    const error = await refused.fetch().then(
      () => null,
      (e: Error) => e.message,
    );
    assert.match(error ?? "", /git fetch from the stack's repository failed/, "another host's token is not sent: 401");
    assert.ok(!error?.includes(token));

    const mirror = await openMirror(
      path.join(stateDir, "b"),
      { url, path: "stack.yaml" },
      createGitToken(github("http://127.0.0.1:9"), gh),
    );
    await mirror.fetch();
    assert.ok(await mirror.hasCommit(sha));
    assert.equal(await mirror.onBranch(sha, ["main"]), "main");
    const config = await execa("git", ["--git-dir", mirror.dir, "config", "--list"]);
    assert.ok(!config.stdout.includes(token) && !config.stdout.includes(expected.slice(6)), "the token is not in the mirror's config");
  });
});

describe("a commit stays inside its checkout", () => {
  /** A repository whose commits the test writes file by file (a `link:` entry is a committed symbolic link). */
  async function bareRepo(t: Ends) {
    const r = await makeRepo(t);
    const commit = async (files: Record<string, string>, links: Record<string, string> = {}) => {
      for (const [name, text] of Object.entries(files)) await writeFile(path.join(r.dir, name), text);
      for (const [name, target] of Object.entries(links)) await symlink(target, path.join(r.dir, name));
      await r.git("add", "-A");
      await r.git("commit", "--quiet", "-m", Object.keys({ ...files, ...links }).join(" "));
      return r.git("rev-parse", "HEAD");
    };
    return { ...r, commit };
  }
  const stackWith = (extra: string[]) =>
    [
      'version: "3.8"',
      "services:",
      "  web:",
      "    image: swarmhook-test/web:${IMAGE_TAG}",
      "    deploy: { endpoint_mode: dnsrr, restart_policy: { condition: any, delay: 1s } }",
      ...extra,
      "",
    ].join("\n");

  it("a config from outside the checkout, or through a committed symlink, is invalid naming the path; no config is created", async (t) => {
    const s = await useTempSpool(t);
    const stack = uniqueStack(t);
    const outsideDir = await mkdtemp(path.join(os.tmpdir(), "swarmhook-outside-"));
    onEnd(t, () => rm(outsideDir, { recursive: true, force: true }));
    const outside = path.join(outsideDir, "outside.txt");
    await writeFile(outside, "the watcher host's own bytes\n");
    const repo = await bareRepo(t);
    const { agent } = await gitAgent(t, s.root, `file://${repo.dir}`, stack);
    const cases: [Record<string, string>, Record<string, string>, RegExp][] = [
      [
        { "stack.yaml": stackWith(["configs:", `  leak: { file: ${outside} }`]) },
        {},
        new RegExp(`${outside}: resolves outside the checkout`),
      ],
      [
        { "stack.yaml": stackWith(["configs:", "  leak: { file: link.txt }"]) },
        { "link.txt": outside },
        /link\.txt: resolves outside the checkout/,
      ],
      [
        { "stack.yaml": stackWith(["configs:", "  leak: { file: ../../../../etc/hostname }"]) },
        {},
        /\.\.\/etc\/hostname: resolves outside/,
      ],
      [{ "stack.yaml": stackWith(["configs:", "  leak:", "    file: ${HOME}/.bashrc"]) }, {}, /may not be interpolated/],
      [{ "stack.yaml": "services: { web: [unclosed" }, {}, /the stack file cannot be read/],
    ];
    for (const [files, links, reason] of cases) {
      await rm(path.join(repo.dir, "link.txt"), { force: true });
      const sha = await repo.commit(files, links);
      const rec = await waitForRecord(s.root, await publish(s.root, sha, { repository: REPO }), 30_000).catch((err: Error) => {
        throw new Error(`${err.message}; the watcher said: ${JSON.stringify(agent.logs.filter((l) => (l.level as number) >= 40))}`);
      });
      assert.equal(rec.outcome, "invalid", rec.reason);
      assert.match(rec.reason ?? "", reason);
      assert.equal(rec.attempts.length, 0, "docker stack deploy never ran");
    }
    assert.equal(await docker(["config", "ls", "-q", "--filter", `name=${stack}_`]), "", "no config was created");
  });

  it("policy: { bindMounts: false, hostPorts: false, privileged: false } refuses a commit asking for them (invalid, naming the service), and plan names it (exit 1); a commit without them deploys", async (t) => {
    const s = await useTempSpool(t);
    const stack = uniqueStack(t);
    const repo = await bareRepo(t);
    const { stateDir, config } = await gitConfig(t, `file://${repo.dir}`, stack);
    await writeFile(config, `${await readFile(config, "utf8")}    policy: { bindMounts: false, hostPorts: false, privileged: false }\n`);
    const agent = await startTestAgent(s.root, { AGENT_CONFIG: config, STATE_DIR: stateDir });
    onEnd(t, () => agent.stop());
    const plan = async (sha: string) => {
      const p = spawnDist("bin/swarmhook.js", ["plan", "--stack", stack, "--sha", sha], {
        SPOOL_DIR: s.root,
        AGENT_CONFIG: config,
        STATE_DIR: stateDir,
        HOME: os.tmpdir(),
      });
      return { code: await p.exited, out: p.out(), err: p.err() };
    };
    const cases: [string[], RegExp[]][] = [
      [
        ['    volumes: ["/var/run/docker.sock:/var/run/docker.sock"]'],
        [/service web: bind mount \/var\/run\/docker\.sock → \/var\/run\/docker\.sock \(policy\.bindMounts: false\)/],
      ],
      [
        ["    ports: [{ target: 8080, published: 18080, mode: host }]", "    cap_add: [SYS_ADMIN]"],
        [/service web: publishes port 18080 \(host mode\)/, /service web: cap_add SYS_ADMIN \(policy\.privileged: false\)/],
      ],
      [
        ['    volumes: ["hostroot:/host"]', "volumes:", "  hostroot: { driver_opts: { type: none, o: bind, device: / } }"],
        [/service web: volume hostroot mounts \/ from the host/],
      ],
    ];
    for (const [extra, reasons] of cases) {
      const sha = await repo.commit({ "stack.yaml": stackWith(extra) });
      const planned = await plan(sha);
      assert.equal(planned.code, 1, planned.out + planned.err);
      assert.match(planned.out, /refused by the stack's policy/);
      for (const reason of reasons) assert.match(planned.out, reason);
      const rec = await waitForRecord(s.root, await publish(s.root, sha, { repository: REPO }));
      assert.equal(rec.outcome, "invalid", rec.reason);
      for (const reason of reasons) assert.match(rec.reason ?? "", reason);
      assert.equal(rec.attempts.length, 0, "docker stack deploy never ran");
      assert.equal(await docker(["service", "ls", "-q", "--filter", `name=${stack}_`]), "", "no service was created");
    }
    const clean = await repo.commit({ "stack.yaml": stackWith([]) });
    await buildWebImage(clean);
    assert.equal((await plan(clean)).code, 2, "a commit the policy allows plans as a change");
    const ok = await waitForRecord(s.root, await publish(s.root, clean, { repository: REPO }));
    assert.equal(ok.outcome, "success", ok.reason);
  });

  it("the stack file cannot interpolate the watcher's GITHUB_TOKEN; a variable the stack's env: names reaches it", async (t) => {
    const s = await useTempSpool(t);
    const stack = uniqueStack(t);
    const token = "github_pat_watcher_secret_0123456789abcdefghij";
    const saved = { ...process.env };
    process.env.GITHUB_TOKEN = token; // the watcher's own environment, as its EnvironmentFile sets it
    onEnd(t, () => {
      process.env = saved;
    });
    const repo = await bareRepo(t);
    const sha = await repo.commit({
      "stack.yaml": stackWith(["    environment:", "      LEAK: ${GITHUB_TOKEN:-none}", "      SHOWN: ${SHOWN_TO_STACK:-missing}"]),
    });
    await buildWebImage(sha);
    const { stateDir, config } = await gitConfig(t, `file://${repo.dir}`, stack);
    await writeFile(config, `${await readFile(config, "utf8")}    env: [SHOWN_TO_STACK]\n`);
    const agent = await startTestAgent(s.root, { AGENT_CONFIG: config, STATE_DIR: stateDir, SHOWN_TO_STACK: "visible" });
    onEnd(t, () => agent.stop());
    const rec = await waitForRecord(s.root, await publish(s.root, sha, { repository: REPO }));
    assert.equal(rec.outcome, "success", rec.reason);
    const env = await docker(["service", "inspect", `${stack}_web`, "-f", "{{json .Spec.TaskTemplate.ContainerSpec.Env}}"]);
    assert.ok(!env.includes(token), "the service's environment never holds the watcher's token");
    assert.ok(env.includes("LEAK=none") && env.includes("SHOWN=visible"), env);
  });
});
