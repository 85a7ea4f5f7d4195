/**
 * "This file may have changed": a debounced callback after any event in the file's directory, and
 * in the directory of the file it links to.
 *
 * Directories are watched rather than files because files are replaced, not edited: editors write a
 * temp file and rename it, a Kubernetes ConfigMap update swaps the `..data` symlink the file points
 * through, and DHCP clients and systemd-resolved rewrite resolv.conf by rename (and /etc/resolv.conf
 * is often a symlink into /run/systemd/resolve). Callers re-read the file and ignore unchanged bytes,
 * so a spurious event costs one read.
 */

import { realpathSync, watch, type FSWatcher } from 'node:fs';
import { dirname, resolve } from 'node:path';

export interface FileWatch {
  close(): void;
}

export interface WatchFileOptions {
  /** Quiet time after the last event before `onChange`, ms. */
  debounceMs: number;
  /** A directory could not be watched (changes are then seen only on SIGHUP). */
  onError: (err: unknown) => void;
}

export function watchFile(path: string, onChange: () => void, options: WatchFileOptions): FileWatch {
  const absolute = resolve(path);
  const directories = new Set([dirname(absolute)]);
  try {
    directories.add(dirname(realpathSync(absolute)));
  } catch {
    // Not there (yet): its own directory is watched, and that is where it will appear.
  }
  let timer: NodeJS.Timeout | null = null;
  const changed = (): void => {
    if (timer) clearTimeout(timer);
    timer = setTimeout(() => {
      timer = null;
      onChange();
    }, options.debounceMs);
  };
  const watchers: FSWatcher[] = [];
  for (const directory of directories) {
    try {
      const watcher = watch(directory, { persistent: false }, changed);
      watcher.on('error', options.onError);
      watchers.push(watcher);
    } catch (err) {
      options.onError(err);
    }
  }
  return {
    close() {
      for (const w of watchers) w.close();
      if (timer) clearTimeout(timer);
      timer = null;
    },
  };
}
