// Secrets in the repository, on the real one-node swarm with real git: a SOPS secret and a SOPS
// env_file in a commit, encrypted with `swarmhook encrypt` for the watcher's key; rotated by a commit,
// put back by a rollback, refused when the version is pruned; and the plaintext nowhere but Docker.
import assert from "node:assert/strict";
import { randomBytes, createHash } from "node:crypto";
import { chmod, mkdir, readdir, readFile, stat, writeFile } from "node:fs/promises";
import path from "node:path";
import { describe, it } from "node:test";
import { writeNewIdentity } from "../agent/prepare/age-keys.ts";
import { encryptAge, encryptSops } from "../agent/prepare/sops.ts";
import { publish, readRecords, startTestAgent, waitForRecord, type TestAgent } from "./helpers/agent.ts";
import { receiver } from "./helpers/chat.ts";
import { startFakeGithub } from "./helpers/github.ts";
import { onEnd, type Ends } from "./helpers/cleanup.ts";
import { REPO, gitConfig, makeRepo } from "./helpers/git-repo.ts";
import { buildWebImage } from "./helpers/images.ts";
import { randomSha } from "./helpers/jobs.ts";
import { loadAgentConfig } from "../agent/config.ts";
import { createDockerRunner } from "../agent/docker.ts";
import { checkAgeKey, checkDecrypts } from "../bin/doctor-checks.ts";
import { spawnTs } from "./helpers/proc.ts";
import { useTempSpool } from "./helpers/spool.ts";
import { docker, uniqueStack, waitFor } from "./helpers/swarm.ts";

const STACK_YAML = [
  'version: "3.8"',
  "services:",
  "  web:",
  "    image: swarmhook-test/web:${IMAGE_TAG:?IMAGE_TAG is set by the agent}",
  "    env_file: app.sops.env",
  "    secrets: [postgres_password]",
  "    deploy:",
  "      replicas: 1",
  "      endpoint_mode: dnsrr",
  "      update_config: { parallelism: 1, delay: 0s, failure_action: rollback, monitor: 1s, order: start-first }",
  "secrets:",
  "  postgres_password:",
  "    file: ./secrets.sops.yaml#postgres_password",
  "",
].join("\n");

const GITHUB_TOKEN = "ghp_secretstest0123456789abcdefghijklmnop";

/** 40 random characters, as a real password would be. */
const secretValue = () => randomBytes(30).toString("base64url").slice(0, 40);
const sha256 = (s: string) => createHash("sha256").update(s).digest("hex");

/** What the running task of `<stack>_web` reads: the sha256 of its secret file and of its API_KEY variable. */
async function seenByService(stack: string, withEnv = true): Promise<{ secret: string; env: string }> {
  return waitFor(`${stack}_web running`, async () => {
    const ids = (await docker(["ps", "-q", "--filter", `label=com.docker.swarm.service.name=${stack}_web`, "--filter", "status=running"]))
      .split("\n")
      .filter(Boolean);
    if (ids.length !== 1) return undefined;
    const out = await docker([
      "exec",
      ids[0]!,
      "sh",
      "-c",
      'sha256sum /run/secrets/postgres_password | cut -c1-64; printf %s "$API_KEY" | sha256sum | cut -c1-64',
    ]).catch(() => "");
    const [secret, env] = out.split("\n");
    return secret && (env || !withEnv) ? { secret, env: env ?? "" } : undefined;
  });
}

const secretOf = async (stack: string) =>
  (
    JSON.parse(await docker(["service", "inspect", `${stack}_web`, "-f", "{{json .Spec.TaskTemplate.ContainerSpec.Secrets}}"])) as {
      SecretName: string;
    }[]
  )[0]?.SecretName;
const versionIndex = async (stack: string) => Number(await docker(["service", "inspect", `${stack}_web`, "-f", "{{.Version.Index}}"]));

/** Every file under `dir` whose bytes hold one of `needles` (file paths). */
async function filesHolding(dir: string, needles: string[]): Promise<string[]> {
  const hits: string[] = [];
  const walk = async (d: string): Promise<void> => {
    for (const e of await readdir(d, { withFileTypes: true }).catch(() => [])) {
      const p = path.join(d, e.name);
      if (e.isDirectory()) await walk(p);
      else if (e.isFile()) {
        const text = (await readFile(p).catch(() => Buffer.alloc(0))).toString("latin1");
        if (needles.some((n) => text.includes(n))) hits.push(p);
      }
    }
  };
  await walk(dir);
  return hits;
}

/** Sample every process's command line until stopped: the hits of `needles` in any of them. */
function watchCmdlines(t: Ends, needles: string[]) {
  const hits: string[] = [];
  let samples = 0;
  let on = true;
  const loop = (async () => {
    while (on) {
      for (const pid of await readdir("/proc").catch(() => [])) {
        if (!/^\d+$/.test(pid)) continue;
        const cmd = await readFile(`/proc/${pid}/cmdline`).catch(() => null);
        if (cmd && needles.some((n) => cmd.includes(n))) hits.push(cmd.toString().replaceAll("\0", " "));
      }
      samples++;
      await new Promise((r) => setTimeout(r, 25));
    }
  })();
  const stop = async () => {
    on = false;
    await loop;
    return { hits, samples };
  };
  onEnd(t, () => void stop());
  return stop;
}

/** Sample the job checkouts: whenever a decrypted env_file is there, its mode and its directory's. */
function watchCheckouts(t: Ends, stateDir: string, plaintexts: string[]) {
  const seen: { file: string; job: string; at: number; mode: number; dirMode: number }[] = [];
  let on = true;
  const loop = (async () => {
    while (on) {
      for (const job of await readdir(path.join(stateDir, "jobs")).catch(() => [])) {
        const file = path.join(stateDir, "jobs", job, "app.sops.env");
        const text = await readFile(file, "utf8").catch(() => "");
        if (plaintexts.some((p) => text.includes(p))) {
          const [f, d] = await Promise.all([stat(file).catch(() => null), stat(path.dirname(file)).catch(() => null)]);
          if (f && d) seen.push({ file, job, at: Date.now(), mode: f.mode & 0o777, dirMode: d.mode & 0o777 });
        }
      }
      await new Promise((r) => setTimeout(r, 20));
    }
  })();
  onEnd(t, () => void (on = false));
  return async () => {
    on = false;
    await loop;
    return seen;
  };
}

describe("secrets in the repository", () => {
  it("a SOPS secret and env_file deploy decrypted; a commit rotates the secret; a rollback puts its version back; a pruned version is refused; another recipient's file is invalid; the plaintext is nowhere else", async (t) => {
    const s = await useTempSpool(t);
    const stack = uniqueStack(t);
    const repo = await makeRepo(t);
    const { stateDir, config } = await gitConfig(t, `file://${repo.dir}`, stack);
    await mkdir(stateDir, { recursive: true });
    const keyFile = path.join(stateDir, "age.key");
    const recipient = await writeNewIdentity(keyFile);
    const chat = await receiver(t);
    const gh = await startFakeGithub({ token: GITHUB_TOKEN });
    onEnd(t, () => gh.close());
    const agent: TestAgent = await startTestAgent(s.root, {
      GITHUB_TOKEN,
      GITHUB_API_URL: gh.url,
      AGENT_CONFIG: config,
      STATE_DIR: stateDir,
      SOPS_AGE_KEY_FILE: keyFile,
      KEEP_OBJECT_VERSIONS: "2",
      NOTIFY_URLS: `${chat.url}/hook`,
      NOTIFY_ON: "all",
    });
    onEnd(t, () => agent.stop());
    let planOutput = "";
    const passwords = [secretValue(), secretValue(), secretValue()];
    const apiKeys = [secretValue(), secretValue(), secretValue()];
    const cmdlines = watchCmdlines(t, [...passwords, ...apiKeys]);
    const checkouts = watchCheckouts(t, stateDir, apiKeys);

    const commit = async (i: number, to = [recipient], extra = "") => {
      await writeFile(path.join(repo.dir, "stack.yaml"), STACK_YAML + extra);
      await writeFile(
        path.join(repo.dir, "secrets.sops.yaml"),
        await encryptSops(Buffer.from(`postgres_password: ${passwords[i]}\nother: unused\n`), "yaml", to),
      );
      await writeFile(
        path.join(repo.dir, "app.sops.env"),
        await encryptSops(Buffer.from(`API_KEY=${apiKeys[i]}\nMODE=plain-${i}\n`), "dotenv", to),
      );
      await repo.git("add", "-A");
      await repo.git("commit", "--quiet", "-m", `secrets ${i}`);
      const sha = await repo.git("rev-parse", "HEAD");
      await buildWebImage(sha);
      return sha;
    };
    const deploy = async (sha: string) => waitForRecord(s.root, await publish(s.root, sha, { repository: REPO }));

    // 1. the first commit: the service reads the decrypted values
    const c1 = await commit(0);
    const r1 = await deploy(c1);
    assert.equal(r1.outcome, "success", r1.reason);
    assert.deepEqual(await seenByService(stack), { secret: sha256(passwords[0]!), env: sha256(apiKeys[0]!) });
    const v1 = r1.release?.secrets?.[0]?.name ?? "";
    assert.match(v1, new RegExp(`^${stack}_postgres_password_[0-9a-f]{12}$`));
    assert.ok(!v1.endsWith(sha256(passwords[0]!).slice(0, 12)), "the version's name is not the value's plain hash");
    assert.equal(await secretOf(stack), v1);

    // 2. a commit changing the encrypted value: a new version, the service restarted with it
    const c2 = await commit(1);
    // swarmhook plan, before the deploy: the secret and the variables by name, never a value
    const plan = spawnTs("bin/swarmhook.ts", ["plan", "--stack", stack, "--sha", c2], {
      SPOOL_DIR: s.root,
      AGENT_CONFIG: config,
      STATE_DIR: stateDir,
      SOPS_AGE_KEY_FILE: keyFile,
    });
    assert.equal(await plan.exited, 2, plan.err());
    assert.match(plan.out(), /web: secret postgres_password: changed\n/);
    assert.match(plan.out(), /web: environment ~API_KEY ~MODE\n/);
    planOutput = plan.out() + plan.err();
    const r2 = await deploy(c2);
    assert.equal(r2.outcome, "success", r2.reason);
    const v2 = r2.release?.secrets?.[0]?.name ?? "";
    assert.notEqual(v2, v1);
    assert.deepEqual(await seenByService(stack), { secret: sha256(passwords[1]!), env: sha256(apiKeys[1]!) });
    assert.match(r2.plan?.summary ?? "", /web: .*secret postgres_password: changed/, r2.plan?.summary);
    assert.match(r2.plan?.summary ?? "", /environment ~API_KEY ~MODE/);

    // 3. a rollback to c1: the version c1's release names is back
    const back = spawnTs("bin/swarmhook.ts", ["rollback", "--spool", s.root, "--stack", stack, "--to", c1], {});
    assert.equal(await back.exited, 0, back.err());
    const rb = await waitForRecord(s.root, /^queued (\S+):/.exec(back.out())?.[1] ?? "");
    assert.equal(rb.outcome, "success", rb.reason);
    assert.equal(await secretOf(stack), v1);
    assert.equal((await seenByService(stack)).secret, sha256(passwords[0]!));

    // 4. c3 rotates again; KEEP_OBJECT_VERSIONS=2 keeps c3's and c2's: c1's is pruned, and a rollback to it is refused
    const c3 = await commit(2);
    const r3 = await deploy(c3);
    assert.equal(r3.outcome, "success", r3.reason);
    const names = (await docker(["secret", "ls", "--filter", `label=com.docker.stack.namespace=${stack}`, "--format", "{{.Name}}"]))
      .split("\n")
      .filter(Boolean)
      .sort();
    assert.deepEqual(names, [v2, r3.release?.secrets?.[0]?.name].sort(), "the oldest version was pruned");
    const before = await versionIndex(stack);
    const refused = spawnTs("bin/swarmhook.ts", ["rollback", "--spool", s.root, "--stack", stack, "--to", c1], {});
    assert.equal(await refused.exited, 0, refused.err());
    const rr = await waitForRecord(s.root, /^queued (\S+):/.exec(refused.out())?.[1] ?? "");
    assert.equal(rr.outcome, "failed");
    assert.match(
      rr.reason ?? "",
      new RegExp(`refused before anything changed: the release's secret ${v1} is gone \\(KEEP_OBJECT_VERSIONS=2`),
    );
    assert.equal(await versionIndex(stack), before, "nothing changed");

    // 5. a file encrypted for another recipient: invalid, naming the file; nothing changed
    const other = await writeNewIdentity(path.join(stateDir, "other.key"));
    const c4 = await commit(1, [other]);
    const r4 = await deploy(c4);
    assert.equal(r4.outcome, "invalid");
    assert.match(r4.reason ?? "", /env_file app\.sops\.env: it is not encrypted for this watcher's key: its age recipients are age1/);
    assert.equal(await versionIndex(stack), before);

    // 6. a deploy that fails in docker stack deploy (an external network that is not there): the env_file is removed all the same
    const c5 = await commit(2, [recipient], `networks:\n  default:\n    external: true\n    name: no-such-net-${stack}\n`);
    const r5 = await deploy(c5);
    assert.equal(r5.outcome, "failed");
    assert.match(r5.reason ?? "", /docker stack deploy exited 1: permanent failure/);

    // the plaintext: nowhere in the spool, STATE_DIR, the log, the records, the plans, the chat bodies or any command line
    const needles = [...passwords, ...apiKeys];
    const { hits, samples } = await cmdlines();
    assert.ok(samples > 20, `command lines were sampled during the deploys (${samples})`);
    assert.deepEqual(hits, []);
    assert.deepEqual(await filesHolding(s.root, needles), []);
    assert.deepEqual(await filesHolding(stateDir, needles), []);
    const log = JSON.stringify(agent.logs);
    const records = JSON.stringify(await readRecords(s.root));
    assert.deepEqual(
      needles.filter((n) => planOutput.includes(n)),
      [],
      "nothing of them in swarmhook plan's output",
    );
    assert.deepEqual(
      needles.filter((n) => log.includes(n)),
      [],
    );
    assert.deepEqual(
      needles.filter((n) => records.includes(n)),
      [],
    );
    await waitFor("chat heard of the deploys", async () => (chat.got.length >= 5 ? true : undefined));
    assert.deepEqual(
      needles.filter((n) => chat.got.some((g) => g.body.includes(n))),
      [],
    );
    // the decrypted env_file existed only in the job's private checkout, 0600 in 0700, and is gone
    const seen = await checkouts();
    assert.ok(seen.length > 0, "the decrypted env_file was seen during a deploy");
    for (const x of seen) {
      assert.deepEqual([x.mode, x.dirMode], [0o600, 0o700], x.file);
      // removed right after docker stack deploy read it, not when the job (its verification) ended;
      // swarmhook plan's checkout (plan-<pid>) is removed when it exits (the jobs directory is empty below)
      if (x.job.startsWith("plan-")) continue;
      const removed = agent.logs.find((l) => l.jobId === x.job && /removed the decrypted env_files/.test(l.msg));
      assert.ok(removed && x.at <= removed.at + 100, `${x.job}: plaintext seen after its removal was logged`);
    }
    assert.deepEqual(await readdir(path.join(stateDir, "jobs")), []);
  });

  it("a stack file on this node: an age-encrypted secret deploys decrypted; an encrypted env_file is refused (no private checkout); a killed watcher's checkouts are removed at start", async (t) => {
    const s = await useTempSpool(t);
    const stack = uniqueStack(t);
    const stateDir = `${s.root}.state`;
    const keyFile = path.join(stateDir, "age.key");
    await mkdir(path.join(stateDir, "jobs", "dead-job"), { recursive: true });
    const recipient = await writeNewIdentity(keyFile);
    const password = secretValue();
    const dead = path.join(stateDir, "jobs", "dead-job", "app.sops.env");
    await writeFile(dead, `API_KEY=${password}\n`, { mode: 0o600 });
    const dir = path.join(stateDir, "stack");
    await mkdir(dir, { recursive: true });
    await writeFile(path.join(dir, "db.age"), await encryptAge(password, [recipient]));
    const file = path.join(dir, "stack.yaml");
    await writeFile(
      file,
      STACK_YAML.replace("    env_file: app.sops.env\n", "").replace("./secrets.sops.yaml#postgres_password", "./db.age"),
    );
    const agent = await startTestAgent(s.root, { STACK_FILE: file, STACK_NAME: stack, SOPS_AGE_KEY_FILE: keyFile });
    onEnd(t, () => agent.stop());
    await assert.rejects(stat(dead), "the decrypted env_file a killed watcher left is removed at start");
    assert.ok(agent.logs.some((l) => /removed checkouts a stopped watcher left behind/.test(l.msg)));

    const sha = randomSha();
    await buildWebImage(sha);
    const r = await waitForRecord(s.root, await publish(s.root, sha));
    assert.equal(r.outcome, "success", r.reason);
    assert.equal((await seenByService(stack, false)).secret, sha256(password));
    assert.match(r.release?.secrets?.[0]?.name ?? "", new RegExp(`^${stack}_postgres_password_[0-9a-f]{12}$`));

    // a SOPS secret whose value was changed by hand: its MAC refuses it, naming the file
    const sopsFile = await encryptSops(Buffer.from(`postgres_password: ${password}\nnote_unencrypted: a\n`), "yaml", [recipient]);
    await writeFile(path.join(dir, "db.sops.yaml"), sopsFile.replace("note_unencrypted: a", "note_unencrypted: b"));
    await writeFile(file, STACK_YAML.replace("    env_file: app.sops.env\n", "").replace("./secrets.sops.yaml", "./db.sops.yaml"));
    const tampered = await waitForRecord(s.root, await publish(s.root, randomSha()));
    assert.equal(tampered.outcome, "invalid");
    assert.match(
      tampered.reason ?? "",
      /^secret postgres_password \(db\.sops\.yaml#postgres_password\): its MAC does not match its values/,
    );

    await writeFile(path.join(dir, "app.env"), await encryptSops(Buffer.from(`API_KEY=${password}\n`), "dotenv", [recipient]));
    await writeFile(file, STACK_YAML.replace("app.sops.env", "app.env").replace("./secrets.sops.yaml#postgres_password", "./db.age"));
    const before = await versionIndex(stack);
    const refused = await waitForRecord(s.root, await publish(s.root, randomSha()));
    assert.equal(refused.outcome, "invalid");
    assert.match(refused.reason ?? "", /env_file app\.env is encrypted: an encrypted env_file is decrypted only for a stack from git/);
    assert.equal(await versionIndex(stack), before);
    assert.deepEqual(await filesHolding(s.root, [password]), []);
  });

  it("doctor checks the age key file (there, 0600, parses) and that every encrypted file a stack references decrypts", async (t) => {
    const s = await useTempSpool(t);
    const dir = `${s.root}.state`;
    await mkdir(dir, { recursive: true });
    const keyFile = path.join(dir, "age.key");
    const recipient = await writeNewIdentity(keyFile);
    const other = await writeNewIdentity(path.join(dir, "other.key"));
    const file = path.join(dir, "stack.yaml");
    await writeFile(path.join(dir, "db.sops.yaml"), await encryptSops(Buffer.from("postgres_password: x\n"), "yaml", [recipient]));
    await writeFile(path.join(dir, "api.age"), await encryptAge("y", [other]));
    await writeFile(path.join(dir, "plain.txt"), "not encrypted");
    await writeFile(
      file,
      'version: "3.8"\nservices:\n  web: { image: busybox }\nsecrets:\n  db: { file: ./db.sops.yaml#postgres_password }\n  api: { file: ./api.age }\n  plain: { file: ./plain.txt }\n',
    );
    const config = (env: Record<string, string>) =>
      loadAgentConfig({ SPOOL_DIR: s.root, STATE_DIR: dir, STACK_FILE: file, STACK_NAME: "app", ...env });
    const deps = (env: Record<string, string>) => ({ config: config(env), docker: createDockerRunner(), env: {} });

    assert.equal((await checkAgeKey(deps({}))).ok, null, "not applicable without SOPS_AGE_KEY_FILE");
    const good = await checkAgeKey(deps({ SOPS_AGE_KEY_FILE: keyFile }));
    assert.equal(good.ok, true, good.detail);
    assert.match(good.detail, new RegExp(`1 identity, recipient ${recipient}`));
    await chmod(keyFile, 0o640);
    const loose = await checkAgeKey(deps({ SOPS_AGE_KEY_FILE: keyFile }));
    assert.equal(loose.ok, false);
    assert.equal(loose.fix, `chmod 600 ${keyFile}`);
    await chmod(keyFile, 0o600);

    const files = await checkDecrypts(deps({ SOPS_AGE_KEY_FILE: keyFile }), config({}).stacks[0]!);
    assert.equal(files.ok, false);
    assert.match(files.detail, /^\.\/api\.age: it is not encrypted for this watcher's key/);
    assert.doesNotMatch(files.detail, /db\.sops|plain/, "the file that decrypts and the plain file are not named as failing");
    await writeFile(path.join(dir, "api.age"), await encryptAge("y", [recipient]));
    const fixed = await checkDecrypts(deps({ SOPS_AGE_KEY_FILE: keyFile }), config({}).stacks[0]!);
    assert.equal(fixed.ok, true, fixed.detail);
    assert.equal(fixed.detail, "2 decrypt: ./db.sops.yaml#postgres_password, ./api.age");
  });
});
