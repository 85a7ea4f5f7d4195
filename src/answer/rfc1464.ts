/**
 * Node meta as the text of TXT records, the way Consul writes it (agent/dns.go
 * `encodeKVasRFC1464` and `makeTXTRecordFromNodeMeta`): `key=value` in RFC 1464 form, where a key
 * escapes its backquotes (```` `` ````), its `=` signs (`` `= ``), and each leading or trailing space
 * (`` ` ``) with a backquote, and a value escapes its backquotes; a key starting `rfc1035-`, in any
 * case, gives its bare value instead.
 */

/** One string per meta pair, in the meta's order. */
export function metaTxtStrings(meta: Readonly<Record<string, string>>): string[] {
  return Object.entries(meta).map(([key, value]) => (key.toLowerCase().startsWith('rfc1035-') ? value : encodeRfc1464(key, value)));
}

/**
 * `key=value`, escaped in the order Consul escapes: backquotes, then `=`, then the leading spaces,
 * then the trailing spaces of what that left (so a key of spaces only comes out as Consul's does).
 */
export function encodeRfc1464(key: string, value: string): string {
  let k = key.replaceAll('`', '``').replaceAll('=', '`=');
  k = k.replace(/^ +/, (spaces) => '` '.repeat(spaces.length));
  k = k.replace(/ +$/, (spaces) => '` '.repeat(spaces.length));
  return `${k}=${value.replaceAll('`', '``')}`;
}
