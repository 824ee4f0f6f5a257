import assert from "node:assert/strict";

/** One sample of the text exposition format: `name{label="value",…} value`. */
const SAMPLE = /^[a-zA-Z_:][\w:]*(\{(\w+="[^"]*",?)*\})? (-?[\d.]+(e[+-]?\d+)?|NaN|\+Inf|-Inf)$/;

/** Every line of `text` is a HELP or TYPE comment or one sample, as Prometheus parses it. */
export function assertPrometheusText(text: string): void {
  for (const line of text.split("\n").filter(Boolean)) assert.ok(/^# (HELP|TYPE) \w+ .+$/.test(line) || SAMPLE.test(line), line);
}
