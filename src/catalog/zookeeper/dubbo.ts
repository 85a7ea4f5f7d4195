/**
 * Dubbo's interface-level registry in ZooKeeper, read as Dubbo's consumers read it: under
 * `/dubbo/INTERFACE/providers` one ephemeral node per provider, named by the provider's URL
 * URL-encoded (java.net.URLEncoder: form encoding, a space as `+`); under
 * `/dubbo/INTERFACE/configurators` the override URLs (`override://HOST[:PORT]/INTERFACE?...`) that
 * change a provider's parameters at run time (`disabled=true`, `weight=...`), as the admin console
 * writes them.
 *
 * Pure functions: the node names in, providers out; src/catalog/zookeeper/source.ts reads the nodes.
 */

/** A Dubbo URL's parts (`protocol://[user[:pass]@]host[:port]/path?k=v&...`). */
export interface DubboUrl {
  protocol: string;
  /** Host as written, IPv6 without brackets. */
  host: string;
  /** 0 when absent. */
  port: number;
  /** The path: for providers and overrides, the interface name. */
  path: string;
  params: ReadonlyMap<string, string>;
}

/** One provider as DNS serves it: where it listens, and the parameters that shape its records. */
export interface DubboProvider {
  interfaceName: string;
  protocol: string;
  host: string;
  port: number;
  application: string | null;
  group: string | null;
  version: string | null;
  /** Dubbo's load-balancing weight (default 100, as Dubbo's DEFAULT_WEIGHT). */
  weight: number;
  /** False when the provider URL, or an override applying to it, disables it (Dubbo's consumers skip it). */
  enabled: boolean;
  /** Which of those the provider's URL (or an override) set: an `absent://` rule fills only the others. */
  set: { weight: boolean; enabled: boolean };
}

/** Dubbo's default provider weight (org.apache.dubbo.rpc.cluster.Constants.DEFAULT_WEIGHT). */
export const DEFAULT_WEIGHT = 100;

/** java.net.URLEncoder's encoding undone: `+` is a space, then percent-decoding. Null when not valid. */
export function decodeNodeName(name: string): string | null {
  try {
    return decodeURIComponent(name.replace(/\+/g, ' '));
  } catch {
    return null;
  }
}

/** Parses a Dubbo URL; null when it has no protocol or host. Parameter values are percent-decoded. */
export function parseDubboUrl(text: string): DubboUrl | null {
  const scheme = /^([a-z][a-z0-9+.-]*):\/\//i.exec(text);
  if (!scheme) return null;
  let rest = text.slice(scheme[0].length);
  const q = rest.indexOf('?');
  const query = q === -1 ? '' : rest.slice(q + 1);
  if (q !== -1) rest = rest.slice(0, q);
  const slash = rest.indexOf('/');
  let authority = slash === -1 ? rest : rest.slice(0, slash);
  const path = slash === -1 ? '' : rest.slice(slash + 1);
  const at = authority.lastIndexOf('@');
  if (at !== -1) authority = authority.slice(at + 1);
  let host: string;
  let portText = '';
  if (authority.startsWith('[')) {
    const close = authority.indexOf(']');
    if (close === -1) return null;
    host = authority.slice(1, close);
    if (authority[close + 1] === ':') portText = authority.slice(close + 2);
    else if (close + 1 !== authority.length) return null;
  } else {
    const colon = authority.lastIndexOf(':');
    host = colon === -1 ? authority : authority.slice(0, colon);
    if (colon !== -1) portText = authority.slice(colon + 1);
  }
  if (host === '') return null;
  let port = 0;
  if (portText !== '') {
    if (!/^\d{1,5}$/.test(portText)) return null;
    port = Number(portText);
    if (port > 65535) return null;
  }
  const params = new Map<string, string>();
  for (const pair of query.split('&')) {
    if (pair === '') continue;
    const eq = pair.indexOf('=');
    const key = eq === -1 ? pair : pair.slice(0, eq);
    const value = eq === -1 ? '' : pair.slice(eq + 1);
    try {
      params.set(decodeURIComponent(key), decodeURIComponent(value));
    } catch {
      params.set(key, value);
    }
  }
  return { protocol: scheme[1]!.toLowerCase(), host, port, path, params };
}

/** Why a provider node is skipped (logged once with its path). */
export type ProviderProblem = 'not a URL-encoded Dubbo URL' | 'no port' | 'a consumer, not a provider';

/** The provider a node of `/dubbo/INTERFACE/providers` names, or why not. */
export function readProvider(nodeName: string, interfaceName: string): DubboProvider | ProviderProblem {
  const text = decodeNodeName(nodeName);
  const url = text === null ? null : parseDubboUrl(text);
  if (url === null) return 'not a URL-encoded Dubbo URL';
  if (url.protocol === 'consumer' || url.params.get('side') === 'consumer') return 'a consumer, not a provider';
  if (url.port === 0) return 'no port';
  const weight = weightOf(url.params.get('weight'));
  const enabled = enabledBy(url.params);
  return {
    interfaceName: url.params.get('interface') || url.path || interfaceName,
    protocol: url.protocol,
    host: url.host,
    port: url.port,
    application: url.params.get('application') || null,
    group: url.params.get('group') || null,
    version: url.params.get('version') || null,
    weight: weight ?? DEFAULT_WEIGHT,
    enabled: enabled ?? true,
    set: { weight: weight !== null, enabled: enabled !== null },
  };
}

/** An override of `/dubbo/INTERFACE/configurators`, as far as DNS cares: whom it applies to, and what it sets. */
export interface DubboOverride {
  /** `0.0.0.0`: every provider. */
  host: string;
  /** 0: no port, which for a specific host means a consumer's address (see `applies`). */
  port: number;
  /** `absent://`: fills only the parameters a provider's URL does not set. */
  absent: boolean;
  /** Applies only to this application's providers; null or `*`: any. */
  application: string | null;
  weight: number | null;
  enabled: boolean | null;
}

/**
 * The override a configurators node names; null when it is not an override URL, or says nothing DNS
 * serves, or is itself switched off (`enabled=false` on an override disables the rule, not the
 * provider: as Dubbo's AbstractConfigurator ignores it).
 */
export function readOverride(nodeName: string): DubboOverride | null {
  const text = decodeNodeName(nodeName);
  const url = text === null ? null : parseDubboUrl(text);
  if (url === null || (url.protocol !== 'override' && url.protocol !== 'absent')) return null;
  const p = url.params;
  // The rule's own switch: an override with enabled=false is off.
  if (p.get('enabled') === 'false') return null;
  const side = p.get('side');
  if (side !== undefined && side !== 'provider') return null;
  const weight = weightOf(p.get('weight'));
  const enabled = p.has('disabled') ? p.get('disabled') !== 'true' : null;
  if (weight === null && enabled === null) return null;
  return { host: url.host, port: url.port, absent: url.protocol === 'absent', application: p.get('application') || null, weight, enabled };
}

/**
 * Whether an override changes what consumers see of `provider`, by Dubbo's rules for rules without a
 * `configVersion` (AbstractConfigurator.configureDeprecated, provider side): with a port, its host is
 * the provider's (or `0.0.0.0`) and so is its port; without one, only `0.0.0.0` reaches providers (a
 * specific host without a port names a consumer, whose own view it changes: not DNS's business).
 * `anyhost=true` makes nothing global (Dubbo strips it as added automatically).
 */
function applies(o: DubboOverride, provider: DubboProvider): boolean {
  const hostMatches = o.host === '0.0.0.0' || o.host === provider.host;
  if (o.port !== 0 ? !hostMatches || o.port !== provider.port : o.host !== '0.0.0.0') return false;
  return o.application === null || o.application === '*' || o.application === provider.application;
}

/**
 * `provider` with every override that applies to it, applied as Dubbo orders them
 * (Configurator.compareTo: `0.0.0.0` rules first, a specific host's after, so they win; then as
 * listed): an `override://` sets, an `absent://` fills what is not set yet.
 */
export function applyOverrides(provider: DubboProvider, overrides: readonly DubboOverride[]): DubboProvider {
  const ordered = overrides.filter((o) => applies(o, provider)).sort((a, b) => Number(a.host !== '0.0.0.0') - Number(b.host !== '0.0.0.0'));
  let out = provider;
  for (const o of ordered) {
    const weight = o.weight !== null && !(o.absent && out.set.weight);
    const enabled = o.enabled !== null && !(o.absent && out.set.enabled);
    out = {
      ...out,
      ...(weight && { weight: o.weight! }),
      ...(enabled && { enabled: o.enabled! }),
      set: { weight: out.set.weight || weight, enabled: out.set.enabled || enabled },
    };
  }
  return out;
}

/** Dubbo's rule: `disabled` when present decides; else `enabled` (default true). Null: neither is set. */
function enabledBy(params: ReadonlyMap<string, string>): boolean | null {
  if (params.has('disabled')) return params.get('disabled') !== 'true';
  if (params.has('enabled')) return params.get('enabled') !== 'false';
  return null;
}

/** A weight parameter: a whole number 0..65535 (an SRV weight's range); null when absent or not one. */
function weightOf(text: string | undefined): number | null {
  if (text === undefined || !/^\d+$/.test(text)) return null;
  return Math.min(Number(text), 65535);
}

/**
 * The DNS label of a Java interface name: dots become dashes, lower case
 * (`org.apache.dubbo.demo.DemoService` → `org-apache-dubbo-demo-demoservice`); `$` (inner
 * classes) and `_` become dashes too. Null when the result is not a DNS label (longer than 63 bytes).
 */
export function interfaceLabel(interfaceName: string): string | null {
  const label = interfaceName
    .toLowerCase()
    .replace(/[.$_]/g, '-')
    .replace(/[^a-z0-9-]/g, '');
  return label === '' || label.length > 63 ? null : label;
}
