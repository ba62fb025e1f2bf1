import { defineConfig } from 'vitest/config';

/** Tests against a real PostgreSQL or Redis: they run with the integration tests, so the unit project needs nothing but npm. */
const SERVICE_TESTS = ['src/store/postgres-store.test.ts', 'src/policy/redis-counters.test.ts'];

export default defineConfig({
  test: {
    // In CI, also write a JSON report: .ci/run prints a plain "N passed, N failed" line from it.
    reporters: process.env.CI ? ['default', 'json'] : ['default'],
    outputFile: { json: 'coverage/vitest-report.json' },
    projects: [
      {
        test: {
          name: 'unit',
          include: ['src/**/*.test.ts', 'test/helpers/**/*.test.ts', 'scripts/**/*.test.ts'],
          exclude: SERVICE_TESTS,
          testTimeout: 15_000,
        },
      },
      {
        test: {
          name: 'integration',
          include: ['test/integration/**/*.test.ts', ...SERVICE_TESTS],
          globalSetup: ['test/integration/global-setup.ts'],
          // Only a guard against hangs: tests wait for events with their own deadlines. Generous,
          // because a CPU-starved machine runs a test that spawns ten CLI processes 3–4× slower
          // (the CLI test: 15–21 s quiet, over 60 s beside two CPU hogs).
          testTimeout: 180_000,
          hookTimeout: 180_000,
          // Integration files start real servers and share PostgreSQL/Redis: one file at a time.
          fileParallelism: false,
        },
      },
    ],
  },
});
