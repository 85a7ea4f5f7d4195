/**
 * What a component's part of the configuration is: the keys it declares and a builder from the
 * merged raw values to its typed options. src/config.ts gathers every component's keys (the CLI's
 * flags, the env vars and the config file's keys all come from them) and layers the values.
 */

/**
 * What a key's value is, as --help shows it: `number` (a whole number), `duration` (Go-style: 500ms,
 * 10s, 5m, 87600h), an address form, a file path, a domain or a DNS label (`name`), or free `text`.
 */
export type ValueType = 'number' | 'duration' | 'HOST:PORT' | 'HOST:PORT[,HOST:PORT...]' | 'ZNODE PATH' | 'IP[:PORT]' | 'CIDR' | 'URL' | 'file' | 'directory' | 'domain' | 'name' | 'text' | '[PATTERN=]SECONDS';

/** One configuration key, documented once. */
export interface KeySpec {
  describe: string;
  /** Its value's type for --help (the component's builder validates it); switches have none. */
  type?: ValueType;
  /** The values it takes, when they are a fixed few (--help lists them; the builder checks them). */
  choices?: readonly string[];
  list?: boolean;
  /**
   * A list of `NAME=VALUE` items (set `list` too) that the config file, and the embedding API, may
   * also write as a mapping `{NAME: VALUE}`: src/config.ts turns the mapping into those items.
   */
  map?: boolean;
  /** A switch: a bare flag (`--query-log`, `--no-query-log`); true/false/1/0 elsewhere. */
  boolean?: boolean;
  default?: string | string[];
  /**
   * Another tool's env var that sets this key too, as that tool's own CLI reads it (Consul's
   * CONSUL_HTTP_ADDR for `consul`); it ranks above the config file, below SVCDNS_* env vars and flags.
   */
  foreignEnv?: string;
}

export type KeyTable = Readonly<Record<string, KeySpec>>;

/** Values by key after layering: a string, a list of strings (list keys, repeated flags), or unset. */
export type RawConfig = Record<string, string | string[] | undefined>;

export interface ConfigComponent<T> {
  /**
   * The heading its keys appear under in --help (`Listening`, `Consul`...); components with the same
   * title share one group.
   */
  group: string;
  /** Its keys, in the order --help lists them. */
  keys: KeyTable;
  /**
   * Its options from the merged values; every problem goes onto `problems` and the build goes on
   * with a placeholder. `env` is for env vars that are not keys (CONSUL_HTTP_SSL).
   */
  build(raw: RawConfig, problems: Problems, env: NodeJS.ProcessEnv): T;
}

/**
 * Every problem the components find, all reported at once. Each is about one key and reads
 * `key: what is wrong`. Those found by weighing a component's values together (no listen address
 * at all) are added with `addOverall` and come after every key's own.
 */
export class Problems {
  private readonly own: { key: string; what: string }[] = [];
  private readonly overall: string[] = [];

  add(key: string, what: string): void {
    this.own.push({ key, what });
  }

  addOverall(key: string, what: string): void {
    this.overall.push(`${key}: ${what}`);
  }

  /** Whether a problem with this key's own value has been found. */
  has(key: string): boolean {
    return this.own.some((p) => p.key === key);
  }

  /**
   * Each key's own problems ordered by `rank` (those of equal rank as found), then the overall ones;
   * `origin` names where a key's value came from when that was not its flag (an env var, the config
   * file), so the operator knows what to fix: `domain (SVCDNS_DOMAIN): must be ...`.
   */
  list(rank: (key: string) => number, origin: (key: string) => string | undefined = () => undefined): string[] {
    const own = [...this.own].sort((a, b) => rank(a.key) - rank(b.key));
    return [
      ...own.map((p) => {
        const from = origin(p.key);
        return `${p.key}${from === undefined ? '' : ` (${from})`}: ${p.what}`;
      }),
      ...this.overall,
    ];
  }
}
