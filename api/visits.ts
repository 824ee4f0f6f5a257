import { createHash } from "node:crypto";
import type pg from "pg";
import { DatabaseUnavailable } from "./errors.ts";

/** An answer from the database must arrive within this, so /api/visit answers 503 in under 2 s. */
export const VISIT_DEADLINE_MS = 1500;

const SCHEMA = `
CREATE TABLE IF NOT EXISTS visitors (
  hash text PRIMARY KEY,
  first_seen timestamptz NOT NULL DEFAULT now(),
  last_seen timestamptz NOT NULL DEFAULT now(),
  visits bigint NOT NULL DEFAULT 1
);
CREATE TABLE IF NOT EXISTS visit_totals (
  id int PRIMARY KEY CHECK (id = 1),
  visits bigint NOT NULL,
  unique_visitors bigint NOT NULL
);
INSERT INTO visit_totals (id, visits, unique_visitors) VALUES (1, 0, 0) ON CONFLICT (id) DO NOTHING;
`;

// one statement: count the visitor, learn whether it is new, bump the totals, read them back
const RECORD = `
WITH v AS (
  INSERT INTO visitors (hash) VALUES ($1)
  ON CONFLICT (hash) DO UPDATE SET visits = visitors.visits + 1, last_seen = now()
  RETURNING (xmax = 0) AS is_new
)
UPDATE visit_totals
   SET visits = visits + 1,
       unique_visitors = unique_visitors + (SELECT CASE WHEN is_new THEN 1 ELSE 0 END FROM v)
 WHERE id = 1
RETURNING visits::text, unique_visitors::text`;

export interface VisitCounts {
  visits: number;
  unique: number;
}

export interface VisitStore {
  ensureSchema(): Promise<void>;
  record(clientAddress: string): Promise<VisitCounts>;
}

/**
 * Visits in Postgres. A visitor is a salted SHA-256 of the client address; the address itself is
 * never stored. Every call is bounded: a database that is down or hanging gives DatabaseUnavailable.
 * @example
 * const visits = createVisitStore({ pool, salt: config.visitSalt });
 * await visits.ensureSchema();
 */
export function createVisitStore(deps: { pool: pg.Pool; salt: string; deadlineMs?: number }): VisitStore {
  const deadlineMs = deps.deadlineMs ?? VISIT_DEADLINE_MS;
  let schemaReady = false;

  const bounded = async <T>(work: Promise<T>): Promise<T> => {
    let timer: NodeJS.Timeout | undefined;
    const timeout = new Promise<never>((_, reject) => {
      timer = setTimeout(() => reject(new DatabaseUnavailable(`no answer within ${deadlineMs} ms`)), deadlineMs);
    });
    work.catch(() => undefined); // a late failure after the deadline is not unhandled
    try {
      return await Promise.race([work, timeout]);
    } catch (err) {
      if (err instanceof DatabaseUnavailable) throw err;
      throw new DatabaseUnavailable((err as Error).message, { cause: err });
    } finally {
      clearTimeout(timer);
    }
  };

  const ensureSchema = async () => {
    await bounded(deps.pool.query(SCHEMA));
    schemaReady = true;
  };

  return {
    ensureSchema,
    async record(clientAddress) {
      if (!schemaReady) await ensureSchema(); // the database was down at start-up
      const hash = createHash("sha256").update(`${deps.salt}\0${clientAddress}`).digest("hex");
      const res = await bounded(deps.pool.query<{ visits: string; unique_visitors: string }>(RECORD, [hash]));
      const row = res.rows[0];
      if (!row) throw new DatabaseUnavailable("visit_totals row missing");
      return { visits: Number(row.visits), unique: Number(row.unique_visitors) };
    },
  };
}
