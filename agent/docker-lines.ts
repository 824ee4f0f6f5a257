import { stripControl } from "../lib/text.ts";

/** How many recent distinct lines a repeat is looked for in: docker redraws one progress block per service. */
const WINDOW = 32;

/**
 * Wrap a line sink so that docker's redrawn progress lines reach the log once: a line equal to one of
 * the last WINDOW distinct lines is dropped, control characters are stripped, blank lines skipped.
 */
export function createLineFilter(sink: (line: string) => void): (line: string) => void {
  const recent: string[] = [];
  return (raw) => {
    const line = stripControl(raw).trim();
    if (line === "" || recent.includes(line)) return;
    recent.push(line);
    if (recent.length > WINDOW) recent.shift();
    sink(line);
  };
}
