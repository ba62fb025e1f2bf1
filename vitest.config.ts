import { defineConfig } from 'vitest/config';

export default defineConfig({
  test: {
    // In CI, also write a JSON report: .ci/run prints a plain "N passed, N failed" line from it.
    reporters: process.env.CI ? ['default', 'json'] : ['default'],
    outputFile: { json: 'coverage/vitest-report.json' },
    projects: [
      {
        test: {
          name: 'unit',
          include: ['src/**/*.test.ts', 'test/helpers/**/*.test.ts'],
          testTimeout: 15_000,
        },
      },
      {
        test: {
          name: 'integration',
          include: ['test/integration/**/*.test.ts'],
          globalSetup: ['test/integration/global-setup.ts'],
          testTimeout: 60_000,
          hookTimeout: 60_000,
          // Integration files start real servers and share PostgreSQL/Redis: one file at a time.
          fileParallelism: false,
        },
      },
    ],
  },
});
