/** An error with the HTTP status and the public message a caller may see; mapped in app.onError. */
export class HttpError extends Error {
  override readonly name = "HttpError";
  constructor(
    readonly status: 400 | 401 | 404 | 413 | 415 | 503,
    message: string,
  ) {
    super(message);
  }
}

/** The database could not answer in time; /api/visit maps it to 503. */
export class DatabaseUnavailable extends Error {
  override readonly name = "DatabaseUnavailable";
}
