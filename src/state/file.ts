/**
 * The persisted catalog on disk: read once at start, replaced atomically on each write.
 *
 * A write goes to a temporary file in the same directory, is fsync'ed, renamed over the old file,
 * and the directory is fsync'ed: after a crash or power loss the file is either the old catalog or
 * the new one, whole, never a mix or a truncated one.
 */

import { open, readFile, rename, rm } from 'node:fs/promises';
import { join } from 'node:path';
import { decodeState, STATE_FILE, type SavedCatalog, type StateIdentity } from './format.js';

/** The persisted catalog of `dir`; null and why when there is none this svcdns may serve. */
export async function readState(dir: string, identity: StateIdentity): Promise<SavedCatalog | { problem: string; missing?: true }> {
  let text: string;
  try {
    text = await readFile(join(dir, STATE_FILE), 'utf8');
  } catch (err) {
    const code = (err as NodeJS.ErrnoException).code;
    if (code === 'ENOENT') return { problem: 'no file', missing: true };
    return { problem: `unreadable (${code ?? String(err)})` };
  }
  return decodeState(text, identity);
}

/** Replaces `dir`'s state file with `text`, atomically (see the header). */
export async function writeStateAtomically(dir: string, text: string): Promise<void> {
  const target = join(dir, STATE_FILE);
  const temp = join(dir, `.${STATE_FILE}.${process.pid}.tmp`);
  try {
    const file = await open(temp, 'w', 0o644);
    try {
      await file.writeFile(text, 'utf8');
      await file.sync();
    } finally {
      await file.close();
    }
    await rename(temp, target);
  } catch (err) {
    await rm(temp, { force: true }).catch(() => undefined);
    throw err;
  }
  // The rename itself is durable once the directory is synced; some filesystems refuse to open a
  // directory for this (EISDIR, EPERM): the file is whole either way.
  const d = await open(dir, 'r').catch(() => null);
  if (d) await d.sync().catch(() => undefined).finally(() => d.close());
}
