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

/** Lines of docker's output that say why it failed, most telling first. */
const DECISIVE = [
  /Cannot connect to the Docker daemon[^\n]*/i,
  /error during connect[^\n]*/i,
  /permission denied[^\n]*/i,
  /Error response from daemon:[^\n]*/i,
  /[^\n]*\b(not found|no such [a-z]+|undefined (network|volume|secret|config))\b[^\n]*/i,
  /[^\n]*\b(invalid|failed to|error)\b[^\n]*/i,
];

/**
 * The one line of docker's output that says why a command failed ("Cannot connect to the Docker
 * daemon at …", "network … not found"), or its last line; control characters stripped, at most 300
 * characters. Records and `swarmhook jobs` carry it, so the reason is readable without the log.
 */
export function decisiveLine(output: string): string | undefined {
  const text = stripControl(output);
  for (const re of DECISIVE) {
    const m = re.exec(text);
    if (m) return m[0].trim().slice(0, 300);
  }
  return text
    .split("\n")
    .map((l) => l.trim())
    .filter(Boolean)
    .at(-1)
    ?.slice(0, 300);
}
