import { mkdtemp, rm } from "node:fs/promises";
import os from "node:os";
import path from "node:path";
import { ensureSpool, openSpool, type Spool } from "../../spool/index.ts";

export interface TempSpool {
  root: string;
  spool: Spool;
  cleanup(): Promise<void>;
}

/** A real spool in a fresh temp directory, laid out as the API and agent expect. */
export async function tempSpool(prefix = "swarmhook-spool-"): Promise<TempSpool> {
  const root = await mkdtemp(path.join(os.tmpdir(), prefix));
  const spool = openSpool(root);
  await ensureSpool(spool);
  return { root, spool, cleanup: () => rm(root, { recursive: true, force: true }) };
}
