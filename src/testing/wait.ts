/**
 * Polls `cond` until it gives a truthy value and returns that value: tests wait for what they
 * expect to happen, not for a fixed time. The deadline only bounds a failing test, so it is
 * generous: a slow or loaded machine is not a failure.
 */
type Falsy = false | 0 | '' | null | undefined;

export async function until<T>(what: string, cond: () => T | Falsy | Promise<T | Falsy>, timeoutMs = 10_000, everyMs = 20): Promise<T> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    const v = await cond();
    if (v) return v;
    if (Date.now() > deadline) throw new Error(`timed out after ${timeoutMs} ms waiting for ${what}`);
    await new Promise((r) => setTimeout(r, everyMs));
  }
}
