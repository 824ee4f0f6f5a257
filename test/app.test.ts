// Every route in-process through app.request (no port), beside the real-port tests in api-*.test.ts.
import assert from "node:assert/strict";
import { randomUUID } from "node:crypto";
import { describe, it } from "node:test";
import { pino } from "pino";
import { createApp } from "../api/app.ts";
import { createClientAddress } from "../api/client-address.ts";
import { loadApiConfig } from "../api/config.ts";
import { openSpool } from "../spool/index.ts";
import { SECRET } from "./helpers/api.ts";
import { randomSha } from "./helpers/jobs.ts";
import { pushPayload, sign } from "./helpers/payloads.ts";
import { assertPrometheusText } from "./helpers/prometheus.ts";
import { readPendingDeploy, useTempSpool } from "./helpers/spool.ts";

function appOn(root: string, env: Record<string, string> = {}) {
  const config = loadApiConfig({
    SPOOL_DIR: root,
    GITHUB_WEBHOOK_SECRET: SECRET,
    DEPLOY_BRANCHES: "main",
    WEBHOOK_BODY_LIMIT: "65536",
    ...env,
  });
  return createApp({
    config,
    spool: openSpool(root, "api"),
    log: pino({ level: "silent" }),
    visits: undefined,
    clientAddress: createClientAddress([]),
    version: "test",
  });
}

function post(body: string, headers: Record<string, string> = {}): RequestInit {
  return {
    method: "POST",
    headers: {
      "content-type": "application/json",
      "x-github-event": "push",
      "x-github-delivery": randomUUID(),
      "x-hub-signature-256": sign(SECRET, body),
      ...headers,
    },
    body,
  };
}

describe("the app in-process (app.request)", () => {
  it("GET /health answers the version and commit", async (t) => {
    const s = await useTempSpool(t);
    const res = await appOn(s.root, { GIT_SHA: "a".repeat(40) }).request("/health");
    assert.equal(res.status, 200);
    assert.deepEqual(await res.json(), { status: "ok", version: "test", commit: "a".repeat(40) });
  });

  it("GET /api/visit without a database answers 503 saying so", async (t) => {
    const s = await useTempSpool(t);
    const res = await appOn(s.root).request("/api/visit");
    assert.equal(res.status, 503);
    assert.deepEqual(await res.json(), { error: "no database configured" });
  });

  it("an unknown path is a JSON 404", async (t) => {
    const s = await useTempSpool(t);
    const res = await appOn(s.root).request("/nope");
    assert.deepEqual([res.status, await res.json()], [404, { error: "not found" }]);
  });

  it("POST /api/webhook/github: 202 and a job for a signed push (JSON or form), 401, 413, 415 otherwise", async (t) => {
    const s = await useTempSpool(t);
    const app = appOn(s.root);
    const sha = randomSha();
    const body = JSON.stringify(pushPayload({ ref: "refs/heads/main", after: sha }));
    const init = post(body);
    const res = await app.request("/api/webhook/github", init);
    assert.equal(res.status, 202, await res.clone().text());
    const { jobId } = (await res.json()) as { jobId: string };
    assert.equal((await readPendingDeploy(s.root, jobId)).sha, sha);
    const form = new URLSearchParams({ payload: JSON.stringify(pushPayload({ ref: "refs/heads/main", after: randomSha() })) }).toString();
    assert.equal(
      (await app.request("/api/webhook/github", post(form, { "content-type": "application/x-www-form-urlencoded" }))).status,
      202,
    );
    assert.equal(
      (await app.request("/api/webhook/github", post(body, { "x-hub-signature-256": sign("another-secret-0123456789abcdef0123", body) })))
        .status,
      401,
    );
    const big = JSON.stringify({ ...pushPayload(), padding: "x".repeat(70_000) });
    assert.equal((await app.request("/api/webhook/github", post(big))).status, 413, "a body read as a stream is cut at the limit");
    assert.equal((await app.request("/api/webhook/github", post(body, { "content-type": "text/plain" }))).status, 415);
  });

  it("GET /metrics counts webhook answers by status, in Prometheus text", async (t) => {
    const s = await useTempSpool(t);
    const app = appOn(s.root);
    const body = JSON.stringify(pushPayload({ ref: "refs/heads/main", after: randomSha() }));
    assert.equal((await app.request("/api/webhook/github", post(body))).status, 202);
    const wrong = post(body, { "x-hub-signature-256": sign("another-secret-0123456789abcdef0123", body) });
    assert.equal((await app.request("/api/webhook/github", wrong)).status, 401);
    const res = await app.request("/metrics");
    assert.equal(res.status, 200);
    assert.match(res.headers.get("content-type") ?? "", /^text\/plain; version=0\.0\.4/);
    const text = await res.text();
    assertPrometheusText(text);
    assert.match(text, /^swarmhook_webhook_requests_total\{status="202"\} 1$/m);
    assert.match(text, /^swarmhook_webhook_requests_total\{status="401"\} 1$/m);
    assert.match(text, /^swarmhook_webhook_duration_seconds_count 2$/m);
    assert.match(text, /^swarmhook_webhook_bytes_in_flight 0$/m);
    assert.match(text, /^swarmhook_spool_write_errors_total 0$/m);
  });

  it("POST /api/webhook/github with the spool gone: 503, the job not queued, said once by app.onError", async (t) => {
    const s = await useTempSpool(t);
    const app = appOn(`${s.root}/missing`);
    const body = JSON.stringify(pushPayload({ ref: "refs/heads/main", after: randomSha() }));
    const res = await app.request("/api/webhook/github", post(body));
    assert.equal(res.status, 503);
    assert.match(
      ((await res.json()) as { error: string }).error,
      /^spool unavailable \(root_missing\): the job was not queued, redeliver later$/,
    );
    assert.match(await (await app.request("/metrics")).text(), /^swarmhook_spool_write_errors_total 1$/m);
  });
});
