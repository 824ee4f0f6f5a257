import { serve } from "@hono/node-server";
import type { Hono } from "hono";
import type { Server } from "node:http";
import type { AddressInfo } from "node:net";

export interface RunningServer {
  url: string;
  server: Server;
  /** Stop accepting, let in-flight requests finish (at most `graceMs`), then resolve. */
  close(graceMs?: number): Promise<void>;
}

/** A client gets this long to send its headers, and this long for the whole request (GitHub sends 25 MB in far less). */
export const HEADERS_TIMEOUT_MS = 10_000;
export const REQUEST_TIMEOUT_MS = 60_000;

/** Serve `app` on host:port (port 0 picks a free one) and resolve once it listens. Slow clients are cut off (408). */
export function startServer(app: Hono, opts: { port: number; host: string }): Promise<RunningServer> {
  return new Promise((resolve, reject) => {
    const server = serve({
      fetch: app.fetch,
      port: opts.port,
      hostname: opts.host,
      // Node checks the two timeouts every connectionsCheckingInterval (30 s by default): each second
      serverOptions: { headersTimeout: HEADERS_TIMEOUT_MS, requestTimeout: REQUEST_TIMEOUT_MS, connectionsCheckingInterval: 1000 },
    }) as Server;
    server.once("error", reject);
    server.once("listening", () => {
      const { port } = server.address() as AddressInfo;
      const host = opts.host === "0.0.0.0" || opts.host === "::" ? "127.0.0.1" : opts.host;
      resolve({
        url: `http://${host.includes(":") ? `[${host}]` : host}:${port}`,
        server,
        close: (graceMs = 10_000) =>
          new Promise<void>((done) => {
            const force = setTimeout(() => server.closeAllConnections(), graceMs);
            server.close(() => {
              clearTimeout(force);
              done();
            });
            server.closeIdleConnections();
          }),
      });
    });
  });
}
