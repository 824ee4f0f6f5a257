import { z } from "zod";

/** An ISO 8601 timestamp with its offset, the one time format in jobs, records and state. */
export const isoTime = z.iso.datetime({ offset: true });

/** One line per zod issue, `path: message`, joined by "; ": quarantine reasons, HTTP errors, config errors. */
export function describeIssues(error: z.ZodError, root = "(root)"): string {
  return error.issues.map((issue) => `${issue.path.length > 0 ? issue.path.join(".") : root}: ${issue.message}`).join("; ");
}
