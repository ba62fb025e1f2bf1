/**
 * Brute-force protection for SIP authentication, in the manner of Kamailio's pike module:
 * a source address with `maxFailures` failed authentications within `windowMs` is blocked for
 * `blockMs`; while blocked its requests are dropped (UDP) or its connection closed, so an
 * attacker learns nothing and gets no amplification. Bounded memory.
 */
export interface AuthBlockerOptions {
  maxFailures: number;
  windowMs: number;
  blockMs: number;
  maxTracked?: number;
}

export class AuthBlocker {
  private readonly failures = new Map<string, number[]>();
  private readonly blocked = new Map<string, number>();

  constructor(private readonly opts: AuthBlockerOptions, private readonly now: () => number = Date.now, private readonly onBlock: (addr: string) => void = () => {}) {}

  isBlocked(addr: string): boolean {
    const until = this.blocked.get(addr);
    if (until === undefined) return false;
    if (until <= this.now()) {
      this.blocked.delete(addr);
      return false;
    }
    return true;
  }

  /** Records a failed authentication; true when this failure blocked the address. */
  fail(addr: string): boolean {
    const now = this.now();
    const list = (this.failures.get(addr) ?? []).filter((t) => t > now - this.opts.windowMs);
    list.push(now);
    this.failures.delete(addr);
    this.failures.set(addr, list);
    const max = this.opts.maxTracked ?? 100_000;
    while (this.failures.size > max) this.failures.delete(this.failures.keys().next().value!);
    if (list.length >= this.opts.maxFailures) {
      this.failures.delete(addr);
      this.blocked.set(addr, now + this.opts.blockMs);
      while (this.blocked.size > max) this.blocked.delete(this.blocked.keys().next().value!);
      this.onBlock(addr);
      return true;
    }
    return false;
  }

  /** A success clears the address's failure count. */
  succeed(addr: string): void {
    this.failures.delete(addr);
  }
}
