#!/usr/bin/env node
// The `tollgate` executable: runs the CLI and exits with its code.
import { main } from './index.js';

process.exitCode = await main(process.argv);
