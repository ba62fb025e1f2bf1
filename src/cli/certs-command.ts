import { resolve } from 'node:path';
import type { Command } from 'commander';
import type { Config } from '../config/index.js';
import { createDevStirCertificates, devStirDir } from '../stir/index.js';
import { makeOut } from './output.js';

/**
 * `tollgate certs …`: STIR/SHAKEN certificates (docs/stir.md).
 *
 *   tollgate certs dev [--dir D] [--spc 1234] [--force]
 *
 * Errors are thrown to main(), which prints them and exits 2 for bad usage (VALIDATION_FAILED,
 * unknown options) and 1 otherwise (CONFLICT when some files exist, openssl failures).
 */
export function registerCertsCommands(program: Command, opts: { json: () => boolean; loadConfig: () => Config }): Command {
  const certs = program.command('certs').description('STIR/SHAKEN signing certificates');
  certs
    .command('dev')
    .description('create a development STI-CA and a SHAKEN signing certificate (TNAuthList with one SPC) for labs and tests')
    .option('--dir <dir>', 'where to write ca.pem, ca-key.pem, cert.pem, key.pem, chain.pem (default: <dataDir>/stir, where the gateway looks)')
    .option('--spc <code>', 'service provider code in the TNAuthList extension', '1234')
    .option('--force', 'replace existing files')
    .action(async (o: { dir?: string; spc: string; force?: boolean }) => {
      const dir = o.dir !== undefined ? resolve(o.dir) : devStirDir(opts.loadConfig());
      const r = await createDevStirCertificates({ dir, spc: o.spc, force: !!o.force });
      const human = [
        r.created ? `STIR development certificates created in ${r.dir}` : `STIR development certificates already in ${r.dir} (--force replaces them)`,
        `  signing certificate  ${r.files.cert} (SPC ${r.spcs.join(', ') || '-'}, valid until ${r.notAfter})`,
        `  signing key          ${r.files.key} (mode 0600)`,
        `  chain                ${r.files.chain}`,
        `  development STI-CA   ${r.files.ca} (key ${r.files.caKey})`,
        'The gateway signs with these when stir.keyFile/certFile are empty and the files are under <dataDir>/stir;',
        'verifiers must trust ca.pem (tollgate does so itself when stir.verify.trustFile is empty). Labs only.',
      ].join('\n');
      makeOut(opts.json()).print(human, r);
    });
  return certs;
}
