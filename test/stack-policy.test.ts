// What a stack's policy refuses, read from stacks as Docker's own `docker stack config` renders
// them (the real CLI; no engine is needed to render).
import assert from "node:assert/strict";
import { mkdtemp, rm, writeFile } from "node:fs/promises";
import os from "node:os";
import path from "node:path";
import { describe, it } from "node:test";
import { execa } from "execa";
import { parse as parseYaml } from "yaml";
import { loadAgentConfig } from "../agent/config.ts";
import { ConfigError } from "../lib/config.ts";
import { ALLOW_ALL, policyRefusals } from "../agent/prepare/stack-policy.ts";

const NONE = { bindMounts: false, hostPorts: false, privileged: false };

async function rendered(text: string): Promise<unknown> {
  const dir = await mkdtemp(path.join(os.tmpdir(), "swarmhook-policy-"));
  try {
    await writeFile(path.join(dir, "stack.yaml"), text);
    return parseYaml((await execa("docker", ["stack", "config", "-c", path.join(dir, "stack.yaml")])).stdout);
  } finally {
    await rm(dir, { recursive: true, force: true });
  }
}

describe("stack policy", () => {
  it("names every way a service asks for the host, service by service, and only those the policy refuses", async () => {
    const doc = await rendered(
      [
        'version: "3.8"',
        "services:",
        "  a:",
        "    image: x",
        '    volumes: ["/etc:/host/etc:ro", "data:/data", "disguised:/d", { type: bind, source: ./here, target: /here }]',
        '    ports: ["8080:80", { target: 443, published: 443, mode: host }]',
        "  b:",
        "    image: x",
        "    privileged: true",
        "    cap_add: [SYS_ADMIN]",
        '    devices: ["/dev/sda:/dev/sda"]',
        "    pid: host",
        "    networks: [hostnet]",
        "  c:",
        "    image: x",
        "    ports: [{ target: 80 }]",
        "    volumes: [data:/data]",
        "volumes:",
        "  data: {}",
        "  disguised: { driver_opts: { type: none, o: bind, device: /etc } }",
        "networks:",
        "  hostnet: { external: true, name: host }",
        "",
      ].join("\n"),
    );
    const all = policyRefusals(doc, NONE);
    assert.deepEqual(
      all.map((l) => l.replace(/ \/tmp\/\S+/, " DIR")),
      [
        "service a: bind mount /etc → /host/etc (policy.bindMounts: false)",
        "service a: volume disguised mounts /etc from the host (policy.bindMounts: false)",
        "service a: bind mount DIR → /here (policy.bindMounts: false)",
        "service a: publishes port 8080 (ingress mode) (policy.hostPorts: false)",
        "service a: publishes port 443 (host mode) (policy.hostPorts: false)",
        "service b: joins the host network (policy.hostPorts: false)",
        "service b: privileged: true (policy.privileged: false)",
        "service b: cap_add SYS_ADMIN (policy.privileged: false)",
        "service b: devices /dev/sda:/dev/sda (policy.privileged: false)",
        "service b: pid: host (policy.privileged: false)",
      ],
      "service c (an unpublished port, a plain named volume) passes",
    );
    assert.deepEqual(policyRefusals(doc, ALLOW_ALL), []);
    assert.deepEqual(
      policyRefusals(doc, { ...ALLOW_ALL, privileged: false }).map((l) => l.split(":")[0]),
      ["service b", "service b", "service b", "service b"],
    );
  });

  it("AGENT_CONFIG policy: each key defaults to allowed; an unknown key is a config error naming it", async () => {
    const dir = await mkdtemp(path.join(os.tmpdir(), "swarmhook-policy-"));
    try {
      const config = (policy: string) =>
        writeFile(
          path.join(dir, "stacks.yaml"),
          `stacks:\n  - name: app\n    file: stack.yaml\n    repository: acme/app\n${policy ? `    policy: ${policy}\n` : ""}`,
        );
      const load = () => loadAgentConfig({ SPOOL_DIR: dir, AGENT_CONFIG: path.join(dir, "stacks.yaml") }).stacks[0]?.policy;
      await config("");
      assert.deepEqual(load(), ALLOW_ALL);
      await config("{ bindMounts: false }");
      assert.deepEqual(load(), { bindMounts: false, hostPorts: true, privileged: true });
      await config("{ mounts: false }");
      assert.throws(load, (err: unknown) => err instanceof ConfigError && /AGENT_CONFIG=.*policy.*mounts/.test(err.message));
    } finally {
      await rm(dir, { recursive: true, force: true });
    }
  });
});
