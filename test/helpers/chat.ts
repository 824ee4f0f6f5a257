// A loopback chat endpoint: every POST it receives, kept in order (Slack's path answers "ok" as Slack does).
import http from "node:http";
import type { AddressInfo } from "node:net";
import { onEnd } from "./cleanup.ts";

export interface Received {
  path: string;
  headers: http.IncomingHttpHeaders;
  body: string;
}

export async function receiver(t: Parameters<typeof onEnd>[0]): Promise<{ url: string; got: Received[] }> {
  const got: Received[] = [];
  const server = http.createServer((req, res) => {
    let body = "";
    req.on("data", (c: Buffer) => (body += c.toString()));
    req.on("end", () => {
      got.push({ path: req.url ?? "", headers: req.headers, body });
      res.writeHead(req.url === "/slack" ? 200 : 204).end(req.url === "/slack" ? "ok" : undefined);
    });
  });
  await new Promise<void>((r) => server.listen(0, "127.0.0.1", r));
  onEnd(t, () => new Promise<void>((r) => server.close(() => r())));
  return { url: `http://127.0.0.1:${(server.address() as AddressInfo).port}`, got };
}
