import { Writable } from "node:stream";
import { pino } from "pino";
import { createApp } from "../../api/app.ts";
import { createClientAddress } from "../../api/client-address.ts";
import { loadApiConfig, type ApiConfig } from "../../api/config.ts";
import { startServer, type RunningServer } from "../../api/server.ts";
import type { VisitStore } from "../../api/visits.ts";
import { openSpool } from "../../spool/index.ts";
import { sign } from "./payloads.ts";

export const SECRET = "test-secret-0123456789abcdef-0123456789abcdef";

export interface TestApi extends RunningServer {
  config: Readonly<ApiConfig>;
  logs: string[];
}

/** The real app on a real port, logging into memory so tests can read what was logged. */
export async function startTestApi(
  spoolDir: string,
  env: Record<string, string> = {},
  visits?: VisitStore,
  override: Partial<ApiConfig> = {},
): Promise<TestApi> {
  const config = { ...loadApiConfig({ SPOOL_DIR: spoolDir, GITHUB_WEBHOOK_SECRET: SECRET, HOST: "127.0.0.1", ...env }), ...override };
  const logs: string[] = [];
  const sink = new Writable({
    write(chunk: Buffer, _enc, cb) {
      logs.push(chunk.toString());
      cb();
    },
  });
  const log = pino({ level: "debug" }, sink);
  const app = createApp({
    config,
    spool: openSpool(spoolDir, "api"),
    log,
    visits,
    clientAddress: createClientAddress(config.trustedProxies),
    version: "test",
  });
  const running = await startServer(app, { port: 0, host: "127.0.0.1" });
  return { ...running, config, logs };
}

export interface Delivery {
  event: string;
  body: string | Buffer;
  deliveryId?: string;
  secret?: string;
  headers?: Record<string, string>;
}

/** POST a delivery exactly as GitHub does: JSON body, signed over its bytes, GitHub's headers. */
export async function deliver(url: string, d: Delivery): Promise<{ status: number; json: Record<string, unknown>; text: string }> {
  const res = await fetch(`${url}/api/webhook/github`, {
    method: "POST",
    headers: {
      "content-type": "application/json",
      "user-agent": "GitHub-Hookshot/test",
      "x-github-event": d.event,
      "x-github-delivery": d.deliveryId ?? crypto.randomUUID(),
      "x-hub-signature-256": sign(d.secret ?? SECRET, d.body),
      ...d.headers,
    },
    body: d.body,
  });
  const text = await res.text();
  let json: Record<string, unknown> = {};
  try {
    json = JSON.parse(text) as Record<string, unknown>;
  } catch {
    // not JSON: keep the text
  }
  return { status: res.status, json, text };
}
