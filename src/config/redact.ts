/**
 * Credentials kept out of messages. A configuration problem or a usage error shows the text the user
 * gave, so they can find the mistake; when that text is an address it may carry a secret: HTTP
 * userinfo (`https://user:password@consul:8501`, or a token as the user name) or a query string
 * (Consul's HTTP API takes `?token=`). Both are replaced before the text reaches any message:
 *
 *   https://user:secret@consul:bad     ->  https://[credentials]@consul:bad
 *   tok:secret@consul                  ->  [credentials]@consul
 *   http://consul:8500/?token=secret   ->  http://consul:8500/?[query]
 *
 * The text is untrusted and need not parse as a URL (that is often why it is shown), so this reads
 * it by its characters, not with `new URL`, and errs towards hiding: the userinfo runs to the last
 * '@' (a password may hold '@' or '/'), the query from the first '?', and where a '?' comes before
 * that '@' (which one is the secret cannot be told) all but the scheme is hidden.
 */

const SCHEME = /^\s*[a-z][a-z0-9+.-]*:\/\//i;

/** `text`, an address as given, with its userinfo and query replaced (see the module comment). */
export function redactAddress(text: string): string {
  const scheme = SCHEME.exec(text)?.[0] ?? '';
  const rest = text.slice(scheme.length);
  const at = rest.lastIndexOf('@');
  const query = rest.indexOf('?');
  if (query >= 0 && query < at) return `${scheme}[redacted]`;
  const host = rest.slice(at + 1, query >= 0 ? query : undefined);
  return `${scheme}${at >= 0 ? '[credentials]@' : ''}${host}${query >= 0 ? '?[query]' : ''}`;
}

/**
 * A free-text message (a usage error naming the arguments it could not use) with every word that
 * looks like an address carrying a secret (it holds '@', or a scheme and a '?') redacted.
 */
export function redactMessage(message: string): string {
  return message.replace(/[^\s,]+/g, (word) => (word.includes('@') || (SCHEME.test(word) && word.includes('?')) ? redactAddress(word) : word));
}
