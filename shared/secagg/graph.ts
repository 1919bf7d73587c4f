/**
 * The SecAgg+ communication graph (Bell, Bonawitz, Gascón, Lepoint, Raykova, "Secure Single-Server
 * Aggregation with (Poly)Logarithmic Overhead", CCS 2020): instead of every pair of clients
 * agreeing on a mask (Bonawitz et al. 2017, n − 1 neighbours each), each client is joined to
 * k = O(log n) others in a random k-regular graph, and shares its secrets only with them.
 *
 * Construction: a Harary graph H(k, n) on a random cyclic order of the clients — each client is
 * joined to the k/2 nearest on either side — as in Bell et al. §4. The order is a Fisher–Yates
 * shuffle driven by an AES-CTR keystream whose seed is SHA-256(round id ‖ sorted participant ids),
 * so every client can recompute the graph and check the neighbours it is given.
 * (Indices are drawn as 32-bit words mod i; the bias, i/2^32, is negligible for i ≤ 10^5.)
 */
import { createHash } from 'node:crypto';
import { FedtlError } from '../core/errors.ts';
import { expandMask } from './prg.ts';

/**
 * Default degree k: the even number 2·⌈1.5·log2 n⌉, capped at n − 1 (then the graph is complete
 * and the protocol is the original SecAgg). Bell et al. show O(log n) suffices; the constant 3
 * (k ≈ 3·log2 n) gives 20 neighbours at n = 100 and 30 at n = 1000.
 */
export function defaultDegree(n: number): number {
  if (n <= 1) return 0;
  const k = 2 * Math.ceil(1.5 * Math.log2(n));
  return Math.min(n - 1, k);
}

/**
 * Default Shamir threshold for degree k: ⌈2(k+1)/3⌉ of the k + 1 share holders (the neighbours and
 * the client itself) — a strict majority, so the coordinator cannot collect both of a client's
 * secrets from honest holders, tolerating k + 1 − t missing holders.
 */
export function defaultThreshold(k: number): number {
  return Math.max(1, Math.ceil((2 * (k + 1)) / 3));
}

/** The graph of one round: each participant's sorted neighbour list. */
export type Neighbourhoods = ReadonlyMap<string, readonly string[]>;

/** The public seed of a round's graph. */
export function graphSeed(roundId: string, participants: readonly string[]): Uint8Array {
  const sorted = [...participants].sort();
  return new Uint8Array(createHash('sha256').update(`fedtl/secagg-graph/v1|${roundId}|${sorted.join(',')}`).digest());
}

/** Builds the random Harary graph of degree `degree` over `participants` (distinct ids). */
export function buildGraph(roundId: string, participants: readonly string[], degree: number): Neighbourhoods {
  const n = participants.length;
  const sorted = [...participants].sort();
  if (new Set(sorted).size !== n) throw new FedtlError('BAD_CONFIG', 'secure aggregation participants must be distinct');
  if (!Number.isInteger(degree) || degree < 1 || degree > n - 1) {
    throw new FedtlError('BAD_CONFIG', `secure aggregation degree must be an integer in [1, ${n - 1}] for ${n} clients, got ${degree}`);
  }
  const words = expandMask(graphSeed(roundId, sorted), 'graph', n, 32);
  const order = sorted.slice();
  for (let i = n - 1; i > 0; i--) {
    const j = (words[i] as number) % (i + 1);
    const tmp = order[i] as string;
    order[i] = order[j] as string;
    order[j] = tmp;
  }
  const sets = new Map<string, Set<string>>(sorted.map((id) => [id, new Set<string>()]));
  if (degree >= n - 1) {
    for (const id of sorted) for (const other of sorted) if (other !== id) sets.get(id)?.add(other);
  } else {
    // Each node joins the ⌊k/2⌋ next ones on the cycle; for odd k also the one diametrically opposite (Harary's construction).
    const half = Math.floor(degree / 2);
    for (let i = 0; i < n; i++) {
      const a = order[i] as string;
      const links = [];
      for (let d = 1; d <= half; d++) links.push(order[(i + d) % n] as string);
      if (degree % 2 === 1) links.push(order[(i + Math.floor(n / 2)) % n] as string);
      for (const b of links) {
        sets.get(a)?.add(b);
        sets.get(b)?.add(a);
      }
    }
  }
  const out = new Map<string, readonly string[]>();
  for (const [id, set] of sets) out.set(id, [...set].sort());
  return out;
}
