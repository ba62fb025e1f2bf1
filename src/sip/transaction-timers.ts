/**
 * RFC 3261 §17 timer values. T1 is the RTT estimate (500 ms), T2 the largest retransmit
 * interval for non-INVITE requests and INVITE responses (4 s), T4 how long the network keeps
 * a message (5 s). Every other timer derives from these (Table 4, RFC 3261 Appendix A).
 */
export interface TimerValues {
  readonly t1: number;
  readonly t2: number;
  readonly t4: number;
}

export const RFC3261_TIMERS: TimerValues = Object.freeze({ t1: 500, t2: 4000, t4: 5000 });

export const timerB = (t: TimerValues): number => 64 * t.t1; // INVITE client transaction timeout
export const timerF = (t: TimerValues): number => 64 * t.t1; // non-INVITE client transaction timeout
export const timerH = (t: TimerValues): number => 64 * t.t1; // wait for ACK
export const timerJ = (t: TimerValues, reliable: boolean): number => (reliable ? 0 : 64 * t.t1); // non-INVITE server retransmissions
export const timerD = (t: TimerValues, reliable: boolean): number => (reliable ? 0 : Math.max(32_000, 64 * t.t1)); // response retransmissions to INVITE client
export const timerI = (t: TimerValues, reliable: boolean): number => (reliable ? 0 : t.t4); // ACK retransmissions
export const timerK = (t: TimerValues, reliable: boolean): number => (reliable ? 0 : t.t4); // non-INVITE client response retransmissions
/** RFC 6026 §8.7/8.4: how long an INVITE transaction lingers after a 2xx (Timers L and M). */
export const timerL = (t: TimerValues): number => 64 * t.t1; // INVITE server, Accepted
export const timerM = (t: TimerValues): number => 64 * t.t1; // INVITE client, Accepted
/** RFC 3261 §9.1: a CANCELled INVITE with no final response after this long counts as cancelled. */
export const cancelWait = (t: TimerValues): number => 64 * t.t1;
