import { getConnInfo } from "@hono/node-server/conninfo";
import type { Context } from "hono";
import { BlockList, isIP } from "node:net";

/** The address a visit is counted for. */
export type ClientAddress = (c: Context) => string;

function normalize(addr: string): string {
  return addr.startsWith("::ffff:") && isIP(addr.slice(7)) === 4 ? addr.slice(7) : addr;
}

/** A BlockList of the trusted proxies (addresses or CIDRs, IPv4 or IPv6). */
export function trustList(proxies: readonly string[]): BlockList {
  const list = new BlockList();
  for (const p of proxies) {
    const [addr = "", bits] = p.split("/");
    const family = isIP(addr) === 6 ? "ipv6" : "ipv4";
    if (bits === undefined) list.addAddress(addr, family);
    else list.addSubnet(addr, Number(bits), family);
  }
  return list;
}

/**
 * The client address for a request from `peer`: X-Forwarded-For is believed only when the peer is a
 * trusted proxy (Traefik), and then read right to left, skipping further trusted proxies, so a
 * client cannot choose its own address by sending the header itself.
 */
export function resolveClientAddress(peer: string, forwardedFor: string | undefined, trusted: BlockList): string {
  const isTrusted = (a: string) => {
    const n = normalize(a);
    const family = isIP(n);
    return family !== 0 && trusted.check(n, family === 6 ? "ipv6" : "ipv4");
  };
  let addr = normalize(peer);
  if (!isTrusted(addr) || !forwardedFor) return addr;
  const hops = forwardedFor
    .split(",")
    .map((s) => s.trim())
    .filter(Boolean);
  while (hops.length > 0) {
    const hop = normalize(hops.pop() as string);
    if (isIP(hop) === 0) return addr; // garbage in the header: stop at the last address we know
    addr = hop;
    if (!isTrusted(hop)) return hop;
  }
  return addr;
}

/** The ClientAddress for requests served by @hono/node-server. */
export function createClientAddress(trustedProxies: readonly string[]): ClientAddress {
  const trusted = trustList(trustedProxies);
  return (c) => {
    let peer = "unknown";
    try {
      peer = getConnInfo(c).remote.address ?? "unknown";
    } catch {
      // an in-process request (app.request) has no socket
    }
    return resolveClientAddress(peer, c.req.header("x-forwarded-for"), trusted);
  };
}
