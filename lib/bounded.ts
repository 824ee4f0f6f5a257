/**
 * All the bytes of `chunks` (a node stream, a fetch body), as long as they stay within `max`: one
 * byte more throws `tooLarge()` at once, never a truncation, and leaving the loop ends the stream.
 * @example
 * const body = await readAtMost(res, 4 << 20, () => new Error("answer over 4 MiB"));
 */
export async function readAtMost(chunks: AsyncIterable<Uint8Array>, max: number, tooLarge: () => Error): Promise<Buffer> {
  const parts: Uint8Array[] = [];
  let size = 0;
  for await (const chunk of chunks) {
    size += chunk.byteLength;
    if (size > max) throw tooLarge();
    parts.push(chunk);
  }
  return Buffer.concat(parts, size);
}
