/** An error with the HTTP status and the public message a caller may see; mapped in app.onError. */
export class HttpError extends Error {
  override readonly name = "HttpError";
  readonly retryAfter: number | undefined;
  /** The client went away: there is nobody to answer, and nothing went wrong here. */
  readonly clientGone: boolean;
  /** What the log says, when the public message names a header (logs never name signature headers). */
  readonly logAs: string;
  constructor(
    readonly status: 400 | 401 | 404 | 408 | 413 | 415 | 503,
    message: string,
    o: { retryAfter?: number; clientGone?: boolean; logAs?: string } = {},
  ) {
    super(message);
    this.retryAfter = o.retryAfter;
    this.clientGone = o.clientGone ?? false;
    this.logAs = o.logAs ?? message;
  }
}

/** The database could not answer in time; /api/visit maps it to 503. */
export class DatabaseUnavailable extends Error {
  override readonly name = "DatabaseUnavailable";
}
