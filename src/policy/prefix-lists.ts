import { TollgateError } from '../errors/index.js';
import { readShippedFile } from './rate-table.js';

/**
 * Blocked-prefix lists (docs/rates.md): plain text files of E.164 prefixes that no key may
 * call, shipped as config/blocked/*.txt and edited by operators. One prefix per line; "#"
 * starts a comment (whole line or after the prefix); blank lines are ignored.
 */

/** "+" then 1 to 15 digits (ITU-T E.164 §6: at most 15 digits), as policy.blockedPrefixes. */
const E164_PREFIX = /^\+[0-9]{1,15}$/;

/**
 * The prefixes in one list, in file order without repeats. `source` names the file in errors
 * ("config/blocked/high-risk.txt:12: …"); the first bad line throws CONFIG_INVALID.
 */
export function parsePrefixList(text: string, source = '(prefix list)'): string[] {
  const out = new Set<string>();
  const lines = text.replace(/^\uFEFF/, '').split(/\r?\n/);
  lines.forEach((raw, i) => {
    const hash = raw.indexOf('#');
    const entry = (hash === -1 ? raw : raw.slice(0, hash)).trim();
    if (entry === '') return;
    if (!E164_PREFIX.test(entry)) {
      throw new TollgateError(
        'CONFIG_INVALID',
        `${source}:${i + 1}: "${entry}" is not an E.164 prefix (a "+" and 1 to 15 digits, such as +1900); one prefix per line, # for comments`,
      );
    }
    out.add(entry);
  });
  return [...out];
}

/** Reads every list (relative paths as resolveShippedFile) and merges them, first occurrence kept. */
export function loadPrefixFiles(paths: readonly string[], cwd: string = process.cwd()): string[] {
  const out = new Set<string>();
  for (const path of paths) {
    const { file, text } = readShippedFile(path, 'blocked-prefix list', cwd);
    for (const p of parsePrefixList(text, file)) out.add(p);
  }
  return [...out];
}

/**
 * Every prefix blocked for every key: `policy.blockedPrefixes` then the prefixes of
 * `policy.blockedPrefixFiles`, deduplicated. Read once at start (STYLE.md §7).
 */
export function blockedPrefixes(
  config: { readonly policy: { readonly blockedPrefixes: readonly string[]; readonly blockedPrefixFiles: readonly string[] } },
  cwd: string = process.cwd(),
): string[] {
  return [...new Set([...config.policy.blockedPrefixes, ...loadPrefixFiles(config.policy.blockedPrefixFiles, cwd)])];
}
