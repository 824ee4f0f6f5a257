import type { FSWatcher } from "node:fs";
import type { Outcome, ResultRecord } from "../spool/index.ts";
import type { Pending } from "./coalesce.ts";
import type { AgentConfig, StackConfig } from "./config.ts";

export interface StackRuntime {
  config: StackConfig;
  /** Claimed jobs waiting for this stack's next deploy. */
  pending: Pending[];
  /** The deploy loop of this stack while it runs (one at a time per stack). */
  running: Promise<void> | null;
  /** The job that deploy loop is deploying now. */
  current: Pending | null;
  /** How many deploy loops of this stack have started (the reconcile loop tells a comparison a deploy overlapped). */
  runs: number;
  /** The outcome of its latest jobs by commit (the newest OUTCOMES_KEPT): a dependent stack's deploy of the same commit reads it. */
  outcomes: Map<string, { outcome: Outcome; reason?: string | undefined }>;
}

/** How many commits' outcomes a stack keeps for the stacks that depend on it. */
export const OUTCOMES_KEPT = 50;

/** Work that must run inside a tick, right after new/ was claimed (the reconcile loop's decisions); cancelled when the tick cannot get there. */
export interface InTick {
  run(): Promise<void>;
  cancel(reason: string): void;
}

/** Everything the watcher remembers between ticks, in one place (octokit/webhooks.js passes `state` the same way). */
export interface AgentState {
  stacks: Map<string, StackRuntime>;
  /** Records the spool refused; written again by every tick. */
  unrecorded: ResultRecord[];
  stopping: boolean;
  /** A tick is running; `again` asks it to scan once more when it ends. */
  ticking: boolean;
  again: boolean;
  /** `work/` was recovered (false until the spool is there). */
  recovered: boolean;
  /** When stale temp files were last removed, and old delivery markers (ms since the epoch). */
  lastClean: number;
  lastPrune: number;
  /** The spool problem last logged, so it is logged once until it changes. */
  spoolProblem: string | undefined;
  /** Per spool entry, the problem last logged for it (one bad entry never stops the others, nor floods the log). */
  entryProblems: Map<string, string>;
  /** Until when the last good engine check is trusted (ms since the epoch); 0 = check before claiming. */
  engineOkUntil: number;
  /** How often a problem with the engine is logged again while it lasts (a minute; tests shorten it). */
  engineLogEveryMs: number;
  /** The engine problem being waited out: since when, and when it was last logged. */
  engineWait: { since: Date; problem: string; loggedAt: number } | undefined;
  timer: NodeJS.Timeout | undefined;
  watcher: FSWatcher | undefined;
  /** Run by the next tick once it has claimed new/. */
  inTick: InTick[];
}

/** Jobs claimed into work/ and waiting for their stack's next deploy, over all stacks. */
export const claimedCount = (state: AgentState): number => [...state.stacks.values()].reduce((n, s) => n + s.pending.length, 0);

export function createState(config: Readonly<AgentConfig>, engineLogEveryMs = 60_000): AgentState {
  return {
    stacks: new Map(
      config.stacks.map((s) => [s.name, { config: s, pending: [], running: null, current: null, runs: 0, outcomes: new Map() }]),
    ),
    unrecorded: [],
    stopping: false,
    ticking: false,
    again: false,
    recovered: false,
    lastClean: 0,
    lastPrune: 0,
    spoolProblem: undefined,
    entryProblems: new Map(),
    engineOkUntil: 0,
    engineLogEveryMs,
    engineWait: undefined,
    timer: undefined,
    watcher: undefined,
    inTick: [],
  };
}
