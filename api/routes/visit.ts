import { Hono } from "hono";
import type { ClientAddress } from "../client-address.ts";
import type { VisitStore } from "../visits.ts";

/** GET /api/visit: count one visit and answer the totals; 503 when there is no database or it is down. */
export function createVisitRoute(deps: { visits: VisitStore | undefined; clientAddress: ClientAddress }): Hono {
  return new Hono().get("/", async (c) => {
    if (!deps.visits) return c.json({ error: "no database configured" }, 503);
    const counts = await deps.visits.record(deps.clientAddress(c));
    return c.json(counts);
  });
}
