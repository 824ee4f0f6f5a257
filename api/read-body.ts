import { HttpError } from "./errors.ts";

/**
 * Read a request body into memory, refusing with 413 as soon as it would pass `limit` bytes:
 * a declared Content-Length over the limit is refused before reading, and a chunked body is cut
 * off at the first chunk past it. Nothing beyond the limit is buffered.
 */
export async function readBodyLimited(req: Request, limit: number): Promise<Buffer> {
  const declared = req.headers.get("content-length");
  if (declared !== null && Number(declared) > limit) throw new HttpError(413, `payload over ${limit} bytes`);
  if (!req.body) return Buffer.alloc(0);
  const reader = req.body.getReader();
  const chunks: Uint8Array[] = [];
  let total = 0;
  for (;;) {
    const { done, value } = await reader.read();
    if (done) break;
    total += value.byteLength;
    if (total > limit) {
      await reader.cancel().catch(() => undefined);
      throw new HttpError(413, `payload over ${limit} bytes`);
    }
    chunks.push(value);
  }
  return Buffer.concat(chunks, total);
}
