import { existsSync, readFileSync } from 'node:fs';
import { createRequire } from 'node:module';
import path from 'node:path';

// Small helpers shared by the adapters.

/** Wraps an async function so calls run one at a time, in call order (one connection, one writer). */
export function serialize(fn) {
  let tail = Promise.resolve();
  return (...args) => {
    const run = tail.then(() => fn(...args));
    tail = run.catch(() => undefined);
    return run;
  };
}

/** The rows with duplicate ids removed, keeping each id's last row (what an upsert batch means). */
export function dedupeLast(rows) {
  const last = new Map();
  for (let i = 0; i < rows.length; i++) last.set(rows[i].id, i);
  if (last.size === rows.length) return rows;
  const out = [];
  for (let i = 0; i < rows.length; i++) if (last.get(rows[i].id) === i) out.push(rows[i]);
  return out;
}

/** The installed version of a package, read from its package.json (whatever its "exports" say). */
export function pkgVersion(name, from = import.meta.url) {
  const require = createRequire(from);
  for (const dir of require.resolve.paths(name) ?? []) {
    const file = path.join(dir, name, 'package.json');
    if (existsSync(file)) return JSON.parse(readFileSync(file, 'utf8')).version;
  }
  return 'unknown';
}
