/** A clock that can be replaced in tests. Milliseconds since the epoch. */
export type Clock = () => number;
export const systemClock: Clock = () => Date.now();
export const toIso = (ms: number): string => new Date(ms).toISOString();
