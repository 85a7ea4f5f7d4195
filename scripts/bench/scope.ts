/**
 * A stand-in for node:test's `t` in benchmark scripts, so that the test support that starts real
 * processes (test/support/zookeeper.ts's startZooKeeper, zk-registrar.ts's startRegistrar, which
 * register their own stopping with `t.after`) can be used outside a test: a scope collects those
 * hooks and `close()` runs them, last registered first (registrars before the ZooKeeper they talk
 * to). `closeAllScopes` is for a signal handler: every scope still open is closed.
 */

const open = new Set<Scope>();

export class Scope {
  readonly #hooks: (() => Promise<void>)[] = [];

  constructor() {
    open.add(this);
  }

  after(fn: () => Promise<void>): void {
    this.#hooks.push(fn);
  }

  /** Runs every hook once, each even if an earlier one failed; the first failure is thrown after. */
  async close(): Promise<void> {
    open.delete(this);
    let failure: Error | null = null;
    for (const fn of this.#hooks.splice(0).reverse()) {
      try {
        await fn();
      } catch (err) {
        failure ??= err instanceof Error ? err : new Error(String(err));
      }
    }
    if (failure !== null) throw failure;
  }
}

/** Runs `body` with a new scope, closed after it whatever happens. */
export async function withScope<T>(body: (scope: Scope) => Promise<T>): Promise<T> {
  const scope = new Scope();
  try {
    return await body(scope);
  } finally {
    await scope.close();
  }
}

export async function closeAllScopes(): Promise<void> {
  await Promise.allSettled([...open].map((s) => s.close()));
}
