import { spawnSync } from 'node:child_process';

/**
 * Some unit tests drive a system tool (sox, openssl, git, a C compiler with libsrtp2).
 * `npm run test:unit` needs nothing but npm, so those tests skip where the tool is missing.
 * `npm test` makes sure every tool is there first (scripts/test-setup.ts) and sets
 * TOLLGATE_TEST_REQUIRE_TOOLS=1: then a missing tool fails the file instead, so the full suite
 * never passes by skipping.
 */
export function optionalTool(present: boolean, what: string): boolean {
  if (!present && process.env.TOLLGATE_TEST_REQUIRE_TOOLS === '1') {
    throw new Error(`${what} is missing, and the full suite needs it: run npm run test:setup (docs/testing.md)`);
  }
  return present;
}

/** Whether `cmd` can be started here (see optionalTool). Only a missing executable counts: the exit status is not read. */
export function hasCommand(cmd: string, args: readonly string[] = ['--version']): boolean {
  return optionalTool(spawnSync(cmd, args, { stdio: 'ignore', timeout: 10_000 }).error === undefined, cmd);
}
