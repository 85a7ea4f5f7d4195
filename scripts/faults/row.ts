/**
 * What every row of the fault suite shares: the row contract (a name, the target, a run
 * that returns the figure and whether the target is met), what a row is given (the flags svcdns
 * supports, a scratch directory), and asking svcdns one question with the time it took.
 */

import { buildQuery, decode, frame, tcpExchange, udpExchange } from '../../test/support/client.js';

export interface RowContext {
  /** Long flags the svcdns under test has (`--help`): pass a mechanism's flag only if listed. */
  readonly flags: ReadonlySet<string>;
  /** A fresh directory for this row's files. */
  readonly dir: string;
  /** Lines for the run's notes (printed as the row runs; the table keeps the figure). */
  note(text: string): void;
}

export interface RowResult {
  /** The figure the table names, in words and numbers. */
  figure: string;
  /** Whether the target is met; null where the row has no numeric target. */
  met: boolean | null;
}

export interface FaultRow {
  /** Short id, matched by --only. */
  readonly id: string;
  /** The fault, as the table says it. */
  readonly fault: string;
  readonly target: string;
  run(ctx: RowContext): Promise<RowResult>;
}

export const RCODE_NAMES = ['NOERROR', 'FORMERR', 'SERVFAIL', 'NXDOMAIN', 'NOTIMP', 'REFUSED'];

export interface Asked {
  /** 'timeout' when no reply came, 'malformed' when the reply does not decode (dns-packet), an errno code (ECONNRESET) when the socket failed. */
  rcode: string;
  /** Answer records as `TYPE data` (A: the address), sorted. */
  answers: string[];
  /** TTL of the first answer record, if any. */
  ttl: number | null;
  ms: number;
}

let nextId = 1;

/** One question over UDP (or TCP), bounded by `timeoutMs`. */
export async function ask(port: number, name: string, type = 'A', options: { timeoutMs?: number; tcp?: boolean; from?: string } = {}): Promise<Asked> {
  const timeoutMs = options.timeoutMs ?? 5000;
  const id = nextId++ & 0xffff;
  const query = buildQuery(name, type, { id });
  const t0 = performance.now();
  let reply: Buffer | null;
  try {
    reply = options.tcp
      ? ((await tcpExchange(port, frame(query), 1, timeoutMs)).replies[0] ?? null)
      : await udpExchange(port, query, timeoutMs, '127.0.0.1', options.from);
  } catch (err) {
    // A connection reset or refused is an answer of its own: the client got nothing.
    return { rcode: (err as NodeJS.ErrnoException).code ?? 'error', answers: [], ttl: null, ms: performance.now() - t0 };
  }
  const ms = performance.now() - t0;
  if (!reply) return { rcode: 'timeout', answers: [], ttl: null, ms };
  let p: ReturnType<typeof decode>;
  try {
    p = decode(reply);
  } catch {
    return { rcode: 'malformed', answers: [], ttl: null, ms };
  }
  const answers = (p.answers ?? []).map((a) => `${a.type} ${typeof (a as { data?: unknown }).data === 'string' ? (a as { data: string }).data : JSON.stringify((a as { data?: unknown }).data)}`).sort();
  const rcode = RCODE_NAMES[(p.flags ?? 0) & 0xf] ?? `rcode ${(p.flags ?? 0) & 0xf}`;
  const first = p.answers?.[0] as { ttl?: number } | undefined;
  return { rcode, answers, ttl: first?.ttl ?? null, ms };
}

/** Asks every `intervalMs` until `done(answer)` or `boundMs` have passed; returns the last answer and when it came, or null at the bound. */
export async function pollUntil(
  port: number,
  name: string,
  done: (a: Asked) => boolean,
  boundMs: number,
  intervalMs = 50,
): Promise<{ asked: Asked; at: number } | null> {
  const end = performance.now() + boundMs;
  while (performance.now() < end) {
    const asked = await ask(port, name, 'A', { timeoutMs: Math.min(1000, Math.max(50, end - performance.now())) });
    if (done(asked)) return { asked, at: performance.now() };
    await new Promise((r) => setTimeout(r, intervalMs));
  }
  return null;
}

export const median = (values: readonly number[]): number => {
  const s = [...values].sort((a, b) => a - b);
  if (s.length === 0) return NaN;
  const mid = s.length >> 1;
  return s.length % 2 ? s[mid]! : (s[mid - 1]! + s[mid]!) / 2;
};

export const seconds = (ms: number): string => `${(ms / 1000).toFixed(1)} s`;

/** 'NOERROR ×3, SERVFAIL ×2' */
export function tally(values: readonly string[]): string {
  const counts = new Map<string, number>();
  for (const v of values) counts.set(v, (counts.get(v) ?? 0) + 1);
  return [...counts].map(([v, n]) => `${v} ×${n}`).join(', ');
}

export const sleep = (ms: number): Promise<void> => new Promise((r) => setTimeout(r, ms));
