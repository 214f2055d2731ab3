import { createWriteStream } from 'node:fs';
import type { Readable, Writable } from 'node:stream';
import { pipeline } from 'node:stream/promises';

/**
 * Copies a stream to stdout (without ending it) or to a file. A closed pipe on stdout
 * (`sluice scan ... | head`) ends the copy quietly: the reader has what it wanted.
 */
export async function writeOut(source: Readable, file?: string): Promise<void> {
  if (file !== undefined) {
    await pipeline(source, createWriteStream(file));
    return;
  }
  await copyTo(source, process.stdout);
}

async function copyTo(source: Readable, out: Writable): Promise<void> {
  let closed = false;
  const onError = (err: NodeJS.ErrnoException): void => {
    if (err.code === 'EPIPE') {
      closed = true;
      source.destroy();
    }
  };
  out.on('error', onError);
  try {
    for await (const chunk of source) {
      if (closed) break;
      if (!out.write(chunk)) {
        await new Promise<void>((resolve) => {
          const done = (): void => {
            out.off('drain', done);
            out.off('close', done);
            resolve();
          };
          out.on('drain', done);
          out.on('close', done);
        });
      }
    }
  } catch (err) {
    if (!closed) throw err;
  } finally {
    out.off('error', onError);
  }
}

/** Writes text to stdout and waits until it is handed to the OS. */
export function print(text: string): Promise<void> {
  return new Promise((resolve, reject) => {
    process.stdout.write(text, (err) => (err ? reject(err) : resolve()));
  });
}
