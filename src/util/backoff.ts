export interface BackoffOptions {
  readonly initialBackoffMs: number;
  readonly maxBackoffMs: number;
}

/** Jitter spread: ±20 % so retries (webhook endpoints, settlements) that failed together do not all retry at the same instant. */
export const JITTER = 0.2;

/**
 * Delay before the next attempt after `attempt` attempts have failed (attempt ≥ 1):
 * initialBackoffMs × 2^(attempt−1), capped at maxBackoffMs, times a random factor in
 * [0.8, 1.2). `random` returns [0, 1) like Math.random (injected in tests).
 */
export function backoffMs(attempt: number, o: BackoffOptions, random: () => number = Math.random): number {
  const exponent = Math.min(Math.max(attempt, 1) - 1, 60);
  const base = Math.min(o.maxBackoffMs, o.initialBackoffMs * 2 ** exponent);
  const factor = 1 + (random() * 2 - 1) * JITTER;
  return Math.max(1, Math.round(base * factor));
}
