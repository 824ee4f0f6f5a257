import { existsSync, readFileSync } from "node:fs";
import path from "node:path";

/** The package version, found by walking up from this file (src and dist/ sit at different depths). */
export function packageVersion(): string {
  let dir = import.meta.dirname;
  for (let i = 0; i < 4; i++) {
    const file = path.join(dir, "package.json");
    if (existsSync(file)) return (JSON.parse(readFileSync(file, "utf8")) as { version: string }).version;
    dir = path.dirname(dir);
  }
  return "unknown";
}
