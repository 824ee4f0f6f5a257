import { pino, type Logger } from "pino";
import { z } from "zod";

/** `auto`: pretty when stdout is a terminal, JSON otherwise (journald keeps JSON); `pretty` or `json` to force. */
export const logFormatVar = z.enum(["auto", "pretty", "json"], { error: "LOG_FORMAT must be auto, pretty or json" }).default("auto");
export type LogFormat = z.infer<typeof logFormatVar>;

/**
 * The one root logger of a program: JSON lines to stdout for journald, or pino-pretty for a person at
 * a terminal (colours only when stdout is a terminal, so a piped pretty log stays plain text).
 * @example
 * const log = createLogger({ service: "webhook-watcher", level: config.logLevel, format: config.logFormat });
 */
export function createLogger(o: { service?: string; level: string; format: LogFormat; isTTY?: boolean }): Logger {
  const tty = o.isTTY ?? process.stdout.isTTY === true;
  const pretty = o.format === "pretty" || (o.format === "auto" && tty);
  const base = o.service ? { service: o.service } : {};
  if (!pretty) return pino({ level: o.level, base });
  const transport = pino.transport({
    target: "pino-pretty",
    options: { colorize: tty, translateTime: "SYS:HH:MM:ss.l", ignore: "pid,hostname", singleLine: false, destination: 1 },
  });
  return pino({ level: o.level, base }, transport);
}
