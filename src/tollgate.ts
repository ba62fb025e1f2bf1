#!/usr/bin/env node
// The `tollgate` executable: the CLI, handed the composition root, exits with its code.
import { main } from './cli/index.js';
import { cliApp } from './main.js';

process.exitCode = await main(process.argv, cliApp);
