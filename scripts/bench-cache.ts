/**
 * The forwarded-answer cache, measured: `node --import tsx scripts/bench-cache.ts` (about 45 s).
 *
 * Contenders, each capped at 10,000 entries where it can be (svcdns's default --cache-size):
 *   - TtlLru (src/forward/cache.ts): svcdns's cache, lru-cache underneath, expiry checked on get;
 *   - a Map kept in LRU order by delete + set, expiry checked on get (TtlLru's first design);
 *   - lru-cache on its own, with a TTL per entry;
 *   - node-cache as it comes: useClones true (a deep copy on every get and set), a checkperiod
 *     timer (600 s) that sweeps every key, no bound at all;
 *   - node-cache with useClones false, no bound;
 *   - node-cache with useClones false and maxKeys 10,000. It has no eviction: at maxKeys, set()
 *     throws ECACHEFULL. The adapter catches that and does not cache the answer, which is the only
 *     way to keep it bounded; what it holds is then whatever came first, until that expires.
 *
 * Workload: keys as the forwarder builds them (`www.example-123.com|1|1|00`), built afresh for
 * every lookup as the forwarder does; values shaped like an UpstreamMessage holding a 100-byte
 * reply copied with Buffer.from, as checkUpstreamReply does. Popularity is Zipf (s = 1), drawn
 * from a seeded PRNG, so every contender sees the same sequence. TTLs are long enough that nothing
 * expires during the run: eviction, not expiry, is measured.
 *
 * Columns of the table:
 *   - get hits: 8,000 names, all cached, 40,000 gets (Zipf);
 *   - one name repeated: a full cache, then 20,000 gets of one cached name (one client asking
 *     the same thing in a loop);
 *   - read-through: 50,000 names (Zipf) over a cache of 10,000: get, and on a miss set (as the
 *     forwarder does after asking upstream); ops/s, hit rate, entries held at the end;
 *   - sets into a full cache: 40,000 sets of new names (eviction; for node-cache, growth or
 *     ECACHEFULL);
 *   - flood: read-through of the Zipf names interleaved 1:1 with names never seen before (an
 *     attacker's random subdomains), the hit rate of the legitimate lookups: once with the cache
 *     warmed by legitimate traffic first, once with it filled by a burst of 10,000 random names
 *     first (an attack under way when the cache fills, at a start or after a sweep); and the
 *     entries held at the end of the latter;
 *   - memory: heap used plus ArrayBuffers after 10,000 entries, after a full GC, per entry.
 * Each measurement: 5 runs with the contenders interleaved, the median printed. Writes nothing.
 *
 * Why the Map LRU is slower than lru-cache: every hit moves the entry to the back of the Map
 * (delete + set). V8's Map leaves a deleted entry in its bucket's chain until the table is
 * rehashed, so a name hit over and over drags a chain of its own dead entries, walked on every
 * lookup; and eviction's `keys().next()` walks over the deleted entries at the front of the table.
 */

import { setTimeout as sleep } from 'node:timers/promises';
import { setFlagsFromString } from 'node:v8';
import { runInNewContext } from 'node:vm';
import { LRUCache } from 'lru-cache';
import NodeCache from 'node-cache';
import { TtlLru } from '../src/forward/cache.js';
import type { UpstreamMessage } from '../src/forward/message.js';
import { mulberry32 } from '../test/support/random.js';

const CAPACITY = 10_000;
const FITTING_NAMES = 8_000;
const POPULAR_NAMES = 50_000;
const ZIPF_S = 1;
const OPS = 40_000;
const WARM_OPS = 30_000;
const HIT_WARM_OPS = 10_000;
const REPEATS = 20_000;
const RUNS = 5;
const TTL_SECONDS = 300;

/** A cache as the forwarder uses one; TTLs in seconds, as upstream answers carry them. */
interface Cache {
  get(key: string): UpstreamMessage | undefined;
  set(key: string, value: UpstreamMessage, ttlSeconds: number): void;
  readonly size: number;
  /** Sets refused (node-cache at maxKeys). */
  readonly refused: number;
  close(): void;
}

interface Contender {
  name: string;
  make(capacity: number): Cache;
}

function ttlLru(capacity: number): Cache {
  const lru = new TtlLru<UpstreamMessage>(capacity, 2 ** 40, (m) => m.bytes.length + 200);
  return {
    get: (key) => lru.get(key)?.value,
    set: (key, value, ttlSeconds) => lru.set(key, value, ttlSeconds * 1000),
    get size() {
      return lru.size;
    },
    refused: 0,
    close: () => lru.clear(),
  };
}

/** TtlLru's first design, kept here as a contender: a Map in LRU order (delete + set on a hit). */
function mapLru(capacity: number): Cache {
  const entries = new Map<string, { value: UpstreamMessage; expiresAt: number }>();
  return {
    get: (key) => {
      const entry = entries.get(key);
      if (entry === undefined) return undefined;
      entries.delete(key);
      if (entry.expiresAt <= Date.now()) return undefined;
      entries.set(key, entry);
      return entry.value;
    },
    set: (key, value, ttlSeconds) => {
      entries.delete(key);
      entries.set(key, { value, expiresAt: Date.now() + ttlSeconds * 1000 });
      if (entries.size > capacity) entries.delete(entries.keys().next().value as string);
    },
    get size() {
      return entries.size;
    },
    refused: 0,
    close: () => entries.clear(),
  };
}

function lruCache(capacity: number): Cache {
  const lru = new LRUCache<string, UpstreamMessage>({ max: capacity });
  return {
    get: (key) => lru.get(key),
    set: (key, value, ttlSeconds) => void lru.set(key, value, { ttl: ttlSeconds * 1000 }),
    get size() {
      return lru.size;
    },
    refused: 0,
    close: () => lru.clear(),
  };
}

function nodeCache(options: NodeCache.Options): (capacity: number) => Cache {
  return () => {
    const cache = new NodeCache(options);
    let refused = 0;
    return {
      get: (key) => cache.get<UpstreamMessage>(key),
      set: (key, value, ttlSeconds) => {
        try {
          cache.set(key, value, ttlSeconds);
        } catch (err) {
          // The only way to bound node-cache: at maxKeys, do not cache.
          if (!(err instanceof Error) || err.name !== 'ECACHEFULL') throw err;
          refused++;
        }
      },
      get size() {
        return cache.getStats().keys;
      },
      get refused() {
        return refused;
      },
      close: () => cache.close(),
    };
  };
}

const contenders: Contender[] = [
  { name: 'TtlLru (svcdns)', make: ttlLru },
  { name: 'Map in LRU order (first design)', make: mapLru },
  { name: 'lru-cache alone', make: lruCache },
  { name: 'node-cache, defaults (clones, unbounded)', make: nodeCache({}) },
  { name: 'node-cache, useClones: false (unbounded)', make: nodeCache({ useClones: false }) },
  { name: 'node-cache, useClones: false, maxKeys 10,000', make: nodeCache({ useClones: false, maxKeys: CAPACITY }) },
];

// ---- the workload ----

/** A 100-byte reply: header, question, one A answer, padded with a second record's worth of bytes. */
const REPLY = Buffer.alloc(100, 0x2a);
REPLY.writeUInt16BE(0x8180, 2);

/** A fresh answer, as checkUpstreamReply makes one from each upstream reply. */
function makeMessage(): UpstreamMessage {
  return {
    rcode: 0,
    flags: 0x8180,
    truncated: false,
    bytes: Buffer.from(REPLY),
    questionEnd: 41,
    answerEnds: [57, 100],
    authorityEnd: 100,
    counts: { answer: 2, authority: 0, additional: 0 },
    ttlOffsets: [47, 63],
    cacheTtl: TTL_SECONDS,
    negative: false,
    referral: false,
  };
}

const nameKey = (i: number): string => `www.example-${i}.com|1|1|00`;
let floodSerial = 0;
const floodKey = (): string => `${(floodSerial++).toString(36)}.victim.example|1|1|00`;


/** `count` draws from a Zipf(s) popularity over `names` names (name 0 the most popular). */
function zipfStream(names: number, count: number, random: () => number): Int32Array {
  const cdf = new Float64Array(names);
  let total = 0;
  for (let i = 0; i < names; i++) cdf[i] = total += 1 / (i + 1) ** ZIPF_S;
  const out = new Int32Array(count);
  for (let n = 0; n < count; n++) {
    const u = random() * total;
    let lo = 0;
    let hi = names - 1;
    while (lo < hi) {
      const mid = (lo + hi) >>> 1;
      if (cdf[mid]! < u) lo = mid + 1;
      else hi = mid;
    }
    out[n] = lo;
  }
  return out;
}

const random = mulberry32(0x5dc5);
const fittingStream = zipfStream(FITTING_NAMES, HIT_WARM_OPS + OPS, random);
const popularStream = zipfStream(POPULAR_NAMES, WARM_OPS + OPS, random);

/** The forwarder's path: a hit, or a miss that asks upstream and stores the answer. */
function lookup(cache: Cache, key: string): boolean {
  if (cache.get(key) !== undefined) return true;
  cache.set(key, makeMessage(), TTL_SECONDS);
  return false;
}

// ---- measurements ----

const gc = findGc();

/** global.gc, exposed here when node was started without --expose-gc. */
function findGc(): () => void {
  const exposed = (globalThis as { gc?: () => void }).gc;
  if (exposed) return exposed;
  setFlagsFromString('--expose-gc');
  return runInNewContext('gc') as () => void;
}

/** Two full collections: what the first leaves for finalization, the second takes. */
function fullGc(): void {
  gc();
  gc();
}

interface Sample {
  opsPerSec: number;
  hitRate: number;
  size: number;
  refused: number;
}

function timed(cache: Cache, ops: number, body: () => number): Sample {
  gc();
  const started = performance.now();
  const hits = body();
  const seconds = (performance.now() - started) / 1000;
  const sample = { opsPerSec: ops / seconds, hitRate: hits / ops, size: cache.size, refused: cache.refused };
  cache.close();
  return sample;
}

function getHits(contender: Contender): Sample {
  const cache = contender.make(CAPACITY);
  for (let i = 0; i < FITTING_NAMES; i++) cache.set(nameKey(i), makeMessage(), TTL_SECONDS);
  for (let n = 0; n < HIT_WARM_OPS; n++) cache.get(nameKey(fittingStream[n]!));
  return timed(cache, OPS, () => {
    let hits = 0;
    for (let n = HIT_WARM_OPS; n < HIT_WARM_OPS + OPS; n++) if (cache.get(nameKey(fittingStream[n]!)) !== undefined) hits++;
    return hits;
  });
}

function oneNameRepeated(contender: Contender): Sample {
  const cache = contender.make(CAPACITY);
  for (let i = 0; i < CAPACITY; i++) cache.set(nameKey(i), makeMessage(), TTL_SECONDS);
  return timed(cache, REPEATS, () => {
    let hits = 0;
    for (let n = 0; n < REPEATS; n++) if (cache.get(nameKey(0)) !== undefined) hits++;
    return hits;
  });
}

function readThrough(contender: Contender): Sample {
  const cache = contender.make(CAPACITY);
  for (let n = 0; n < WARM_OPS; n++) lookup(cache, nameKey(popularStream[n]!));
  return timed(cache, OPS, () => {
    let hits = 0;
    for (let n = WARM_OPS; n < WARM_OPS + OPS; n++) if (lookup(cache, nameKey(popularStream[n]!))) hits++;
    return hits;
  });
}

function setsWhenFull(contender: Contender): Sample {
  const cache = contender.make(CAPACITY);
  for (let i = 0; i < CAPACITY; i++) cache.set(floodKey(), makeMessage(), TTL_SECONDS);
  return timed(cache, OPS, () => {
    for (let n = 0; n < OPS; n++) cache.set(floodKey(), makeMessage(), TTL_SECONDS);
    return 0;
  });
}

/**
 * Legitimate lookups interleaved 1:1 with never-seen names, after the cache was warmed by
 * legitimate traffic or filled by a burst of never-seen names; the hit rate of the legitimate ones.
 */
function flood(first: 'warm' | 'burst'): (contender: Contender) => Sample {
  return (contender) => {
    const cache = contender.make(CAPACITY);
    if (first === 'warm') for (let n = 0; n < WARM_OPS; n++) lookup(cache, nameKey(popularStream[n]!));
    else for (let i = 0; i < CAPACITY; i++) lookup(cache, floodKey());
    const legitimate = OPS / 2;
    const sample = timed(cache, OPS, () => {
      let hits = 0;
      for (let n = WARM_OPS; n < WARM_OPS + legitimate; n++) {
        if (lookup(cache, nameKey(popularStream[n]!))) hits++;
        lookup(cache, floodKey());
      }
      return hits;
    });
    return { ...sample, hitRate: (sample.hitRate * OPS) / legitimate };
  };
}

const usedBytes = (): number => {
  const m = process.memoryUsage();
  return m.heapUsed + m.arrayBuffers;
};

/** Bytes per entry, all in (key, value, the cache's own bookkeeping), after a full GC. */
function memoryPerEntry(contender: Contender): number {
  fullGc();
  const before = usedBytes();
  const cache = contender.make(CAPACITY);
  for (let i = 0; i < CAPACITY; i++) cache.set(floodKey(), makeMessage(), TTL_SECONDS);
  fullGc();
  const bytes = usedBytes() - before;
  const size = cache.size;
  cache.close();
  return bytes / size;
}

/** The same keys and values in two plain arrays: what any cache must hold, before its own overhead. */
function payloadPerEntry(): number {
  fullGc();
  const before = usedBytes();
  const keys = new Array<string>(CAPACITY);
  const values = new Array<UpstreamMessage>(CAPACITY);
  for (let i = 0; i < CAPACITY; i++) {
    keys[i] = floodKey();
    values[i] = makeMessage();
  }
  fullGc();
  const bytes = usedBytes() - before;
  // Read both arrays after measuring, so both are alive when measured.
  return bytes / Math.min(keys.length, values.length);
}

// ---- node-cache's options, shown one by one ----

function nodeCacheNotes(): string[] {
  const notes: string[] = [];

  // useClones: every get returns a deep copy (the Buffer included), every set stores one.
  const cloning = new NodeCache();
  const stored = makeMessage();
  cloning.set('k', stored, TTL_SECONDS);
  const a = cloning.get<UpstreamMessage>('k');
  const b = cloning.get<UpstreamMessage>('k');
  notes.push(
    `useClones (default true): get() returned the stored object: ${a === stored}; two gets the same object: ${a === b}; ` +
      `the same reply Buffer: ${a?.bytes === stored.bytes}. Every set and every hit deep-copies the answer, Buffer and arrays included.`,
  );
  cloning.close();

  // stdTTL and ttl 0: 0 means "never expires" to node-cache, "do not cache" to DNS.
  const zero = new NodeCache({ useClones: false });
  zero.set('ttl-0', makeMessage(), 0);
  zero.set('no-ttl', makeMessage());
  const lru = new TtlLru<UpstreamMessage>(CAPACITY, 2 ** 40, (m) => m.bytes.length + 200);
  lru.set('ttl-0', makeMessage(), 0);
  notes.push(
    `stdTTL (default 0) and ttl 0: node-cache getTtl() after set(k, v, 0) = ${zero.getTtl('ttl-0')}, after set(k, v) = ${zero.getTtl('no-ttl')} ` +
      `(0 = kept forever); a DNS TTL of 0 means do not cache (TtlLru stores ${lru.size} entries). Using node-cache, the forwarder ` +
      `would have to skip ttl 0 itself, and stdTTL must not be left at 0.`,
  );
  zero.close();

  // checkperiod: a timer per cache, and a sweep over every key that blocks the event loop.
  const swept = new NodeCache({ useClones: false });
  // The timer is not part of the typed API either.
  const timer = (swept as unknown as { checkTimeout?: NodeJS.Timeout }).checkTimeout;
  const sweeps: number[] = [];
  for (const keys of [CAPACITY, 10 * CAPACITY]) {
    for (let i = swept.getStats().keys; i < keys; i++) swept.set(floodKey(), makeMessage(), TTL_SECONDS);
    const times: number[] = [];
    for (let r = 0; r < RUNS; r++) {
      const started = performance.now();
      // What the checkperiod timer runs every checkperiod seconds (not part of the typed API).
      (swept as unknown as { _checkData(startPeriod: boolean): void })._checkData(false);
      times.push(performance.now() - started);
    }
    sweeps.push(median(times));
  }
  swept.close();
  notes.push(
    `checkperiod (default 600 s): new NodeCache() armed a timer: ${timer !== undefined} (keeps the process alive: ${timer?.hasRef() ?? false}; ` +
      `close() stops it). ` +
      `One sweep, every key checked, blocks the event loop for ${sweeps[0]!.toFixed(1)} ms at ${CAPACITY.toLocaleString('en')} keys, ` +
      `${sweeps[1]!.toFixed(1)} ms at ${(10 * CAPACITY).toLocaleString('en')} (median of ${RUNS}). Expired keys are also removed when read.`,
  );
  return notes;
}

// ---- running and printing ----

function median(xs: number[]): number {
  const sorted = [...xs].sort((x, y) => x - y);
  const mid = sorted.length >> 1;
  return sorted.length % 2 ? sorted[mid]! : (sorted[mid - 1]! + sorted[mid]!) / 2;
}

const measurements = {
  getHits,
  oneNameRepeated,
  readThrough,
  setsWhenFull,
  floodWarm: flood('warm'),
  floodBurst: flood('burst'),
} as const;
type Measurement = keyof typeof measurements;
const measurementNames = Object.keys(measurements) as Measurement[];

interface Result {
  samples: Record<Measurement, Sample[]>;
  memory: number[];
}

type Medians = Record<Measurement, Sample> & { memory: number };

function medianSample(samples: Sample[]): Sample {
  return {
    opsPerSec: median(samples.map((s) => s.opsPerSec)),
    hitRate: median(samples.map((s) => s.hitRate)),
    size: median(samples.map((s) => s.size)),
    refused: median(samples.map((s) => s.refused)),
  };
}

const ops = (n: number): string => (n >= 1e6 ? `${(n / 1e6).toFixed(2)} M` : `${(n / 1e3).toFixed(0)} k`);
const ratio = (n: number, base: number): string => `${(n / base).toFixed(2)}×`;
const percent = (x: number): string => `${(x * 100).toFixed(1)} %`;
const count = (n: number): string => Math.round(n).toLocaleString('en');

async function main(): Promise<void> {
  const started = performance.now();
  const results = new Map<Contender, Result>(
    contenders.map((c) => [c, { samples: Object.fromEntries(measurementNames.map((name): [Measurement, Sample[]] => [name, []])) as Result['samples'], memory: [] }]),
  );
  const payload: number[] = [];
  for (let run = 0; run < RUNS; run++) {
    process.stderr.write(`run ${run + 1}/${RUNS}\n`);
    // Rotate the order each run, so no contender always follows the same one.
    const order = contenders.map((_, i) => contenders[(i + run) % contenders.length]!);
    payload.push(payloadPerEntry());
    // Before each measurement, a turn of the event loop: lru-cache's clock timer (ttlResolution)
    // holds its cache until it fires, as it would in the server.
    for (const contender of order) {
      await sleep(2);
      results.get(contender)!.memory.push(memoryPerEntry(contender));
    }
    for (const name of measurementNames) {
      for (const contender of order) {
        await sleep(2);
        results.get(contender)!.samples[name].push(measurements[name](contender));
      }
    }
  }

  const notes = nodeCacheNotes();
  const medians = new Map<Contender, Medians>(
    contenders.map((c) => {
      const r = results.get(c)!;
      const samples = Object.fromEntries(measurementNames.map((name) => [name, medianSample(r.samples[name])])) as Record<Measurement, Sample>;
      return [c, { ...samples, memory: median(r.memory) }];
    }),
  );
  const base = medians.get(contenders[0]!)!;

  console.log(`\nnode ${process.version}; cache of ${count(CAPACITY)} entries; medians of ${RUNS} runs; ${((performance.now() - started) / 1000).toFixed(0)} s\n`);
  for (const note of notes) console.log(`- ${note}`);
  const payloadBytes = median(payload);
  console.log(`- Memory: the keys and values alone (two plain arrays) take ${count(payloadBytes)} B per entry; the rest of each cache's figure is its own bookkeeping.`);
  const unbounded = medians.get(contenders.find((c) => c.name === 'node-cache, useClones: false (unbounded)')!)!;
  console.log(
    `- Unbounded node-cache keeps every new name until its TTL runs out, and an attacker sets the TTL of its own zone's ` +
      `answers (svcdns caps it at --cache-max-ttl, 3,600 s by default). At ${count(unbounded.memory)} B per entry, 1,000 ` +
      `random names a second for an hour is 3.6 M entries, about ${((3.6e6 * unbounded.memory) / 2 ** 30).toFixed(1)} GiB.`,
  );
  const bounded = medians.get(contenders.find((c) => c.name.includes('maxKeys'))!)!;
  console.log(
    `- node-cache with maxKeys refused (ECACHEFULL, caught, not cached) ${count(bounded.setsWhenFull.refused)} of ${count(OPS)} ` +
      `sets into a full cache, ${count(bounded.readThrough.refused)} in read-through, ${count(bounded.floodWarm.refused)} and ` +
      `${count(bounded.floodBurst.refused)} in the two floods. What it holds is what came first; a slot frees only when ` +
      `an expired entry is read again or swept.\n`,
  );

  const columns: [string, (m: Medians) => string][] = [
    ['get hits (fits) ops/s', (m) => `${ops(m.getHits.opsPerSec)} (${ratio(m.getHits.opsPerSec, base.getHits.opsPerSec)})`],
    ['one name repeated ops/s', (m) => `${ops(m.oneNameRepeated.opsPerSec)} (${ratio(m.oneNameRepeated.opsPerSec, base.oneNameRepeated.opsPerSec)})`],
    ['read-through, 50k names ops/s', (m) => `${ops(m.readThrough.opsPerSec)} (${ratio(m.readThrough.opsPerSec, base.readThrough.opsPerSec)})`],
    ['hit rate', (m) => percent(m.readThrough.hitRate)],
    ['entries', (m) => count(m.readThrough.size)],
    ['sets into a full cache ops/s', (m) => `${ops(m.setsWhenFull.opsPerSec)} (${ratio(m.setsWhenFull.opsPerSec, base.setsWhenFull.opsPerSec)})`],
    ['flood, warm first: legit hit rate', (m) => percent(m.floodWarm.hitRate)],
    ['flood, burst first: legit hit rate', (m) => percent(m.floodBurst.hitRate)],
    ['entries after', (m) => count(m.floodBurst.size)],
    ['memory B/entry', (m) => `${count(m.memory)} (${ratio(m.memory, base.memory)})`],
  ];
  console.log(`| cache | ${columns.map(([title]) => title).join(' | ')} |`);
  console.log(`| --- | ${columns.map(() => '---:').join(' | ')} |`);
  for (const c of contenders) {
    const m = medians.get(c)!;
    console.log(`| ${c.name} | ${columns.map(([, cell]) => cell(m)).join(' | ')} |`);
  }
}

await main();
