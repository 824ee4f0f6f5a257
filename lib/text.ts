/** Terminal control: OSC strings (window titles, links), CSI sequences, other escapes, C0/C1 controls but newline and tab. */
// eslint-disable-next-line no-control-regex
const CONTROL = /\x1b\][^\x07\x1b]*(?:\x07|\x1b\\)?|\x1b\[[0-9;?]*[ -/]*[@-~]|\x1b[@-_]|[\x00-\x08\x0b-\x1f\x7f\x9b]/g;

/** Strip terminal control sequences and characters (a newline and a tab stay) before text reaches a terminal. */
export const stripControl = (text: string): string => text.replace(CONTROL, "");
