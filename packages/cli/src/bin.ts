#!/usr/bin/env node
import { runCli } from './cli.js';

// `pnpm sluice ...` runs this from the repository root; resolve paths from where the user typed
// the command instead, as the installed binary would.
if (process.env.npm_lifecycle_event === 'sluice' && process.env.INIT_CWD) process.chdir(process.env.INIT_CWD);

// `sluice scan ... | head` closes our stdout early: that is the reader's choice, not an error.
process.stdout.on('error', (err: NodeJS.ErrnoException) => {
  if (err.code === 'EPIPE') process.exit(0);
  throw err;
});

process.exitCode = await runCli(process.argv);
