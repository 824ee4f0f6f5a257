import { Hono } from "hono";

/** GET /health: liveness plus the deployed commit; never touches the database. */
export function createHealthRoute(deps: { version: string; commit: string | undefined }): Hono {
  const body = Object.freeze({ status: "ok", version: deps.version, commit: deps.commit ?? "unknown" });
  return new Hono().get("/health", (c) => c.json(body));
}
