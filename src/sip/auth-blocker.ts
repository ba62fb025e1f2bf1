/**
 * Brute-force protection for SIP authentication, keyed by (source address, username) rather than
 * by address alone: a carrier's shared address (a NAT, an SBC many customers sit behind) is not
 * locked out because someone else behind it guesses passwords.
 *
 * - A (source, username) pair with `maxFailures` failed authentications within `windowMs` is
 *   blocked for `blockMs`: its requests are dropped without an answer (as Kamailio's pike does),
 *   so the guesser learns nothing and gets no amplification.
 * - A source whose failures name more than `maxUsernamesPerSource` distinct usernames within
 *   `windowMs` is scanning: for `blockMs` it may use only usernames that authenticated from it
 *   before (within `knownGoodMs`); requests naming any other are dropped unread. The carrier that
 *   called from that address keeps calling; the scanner behind it gets nothing.
 *
 * Per node and in memory, every table bounded (`maxTracked` entries, the eldest dropped first).
 */
export interface AuthBlockerOptions {
  maxFailures: number;
  windowMs: number;
  blockMs: number;
  maxUsernamesPerSource: number;
  /** How long a successful (source, username) stays known good. Default 24 h. */
  knownGoodMs?: number;
  /** Bound of each table. Default 100,000. */
  maxTracked?: number;
}

export type AuthBlock = 'brute-force' | 'username-scan';

const pairKey = (addr: string, username: string): string => `${addr}\n${username}`;

/** Sets `key` as the newest entry of a bounded insertion-ordered map. */
function setNewest<V>(m: Map<string, V>, key: string, value: V, max: number): void {
  m.delete(key);
  m.set(key, value);
  while (m.size > max) m.delete(m.keys().next().value!);
}

export class AuthBlocker {
  /** (source, username) → times of its recent failures. */
  private readonly failures = new Map<string, number[]>();
  /** (source, username) → blocked until. */
  private readonly blocked = new Map<string, number>();
  /** source → username → time of its last failure. */
  private readonly failingUsers = new Map<string, Map<string, number>>();
  /** source → scanning until. */
  private readonly scanning = new Map<string, number>();
  /** (source, username) → known good until. */
  private readonly knownGood = new Map<string, number>();
  private readonly max: number;

  constructor(
    private readonly opts: AuthBlockerOptions,
    private readonly now: () => number = Date.now,
    private readonly onBlock: (addr: string, username: string | null, block: AuthBlock) => void = () => {},
  ) {
    this.max = opts.maxTracked ?? 100_000;
  }

  /** Why requests from `addr` naming `username` are dropped now, or null when they are not. */
  isBlocked(addr: string, username: string): AuthBlock | null {
    const now = this.now();
    const key = pairKey(addr, username);
    const until = this.blocked.get(key);
    if (until !== undefined) {
      if (until > now) return 'brute-force';
      this.blocked.delete(key);
    }
    const scanUntil = this.scanning.get(addr);
    if (scanUntil !== undefined) {
      if (scanUntil <= now) this.scanning.delete(addr);
      else if ((this.knownGood.get(key) ?? 0) <= now) return 'username-scan';
    }
    return null;
  }

  /** Records a failed authentication; returns the block it started, if any. */
  fail(addr: string, username: string | null): AuthBlock | null {
    const now = this.now();
    const user = username ?? '';
    const key = pairKey(addr, user);
    const list = (this.failures.get(key) ?? []).filter((t) => t > now - this.opts.windowMs);
    list.push(now);
    let started: AuthBlock | null = null;
    if (list.length >= this.opts.maxFailures) {
      this.failures.delete(key);
      setNewest(this.blocked, key, now + this.opts.blockMs, this.max);
      this.onBlock(addr, username, 'brute-force');
      started = 'brute-force';
    } else {
      setNewest(this.failures, key, list, this.max);
    }
    const users = this.failingUsers.get(addr) ?? new Map<string, number>();
    for (const [u, t] of users) if (t <= now - this.opts.windowMs) users.delete(u);
    users.delete(user);
    users.set(user, now);
    // The set per source never needs more than one entry past the ceiling.
    while (users.size > this.opts.maxUsernamesPerSource + 1) users.delete(users.keys().next().value!);
    setNewest(this.failingUsers, addr, users, this.max);
    if (users.size > this.opts.maxUsernamesPerSource && (this.scanning.get(addr) ?? 0) <= now) {
      setNewest(this.scanning, addr, now + this.opts.blockMs, this.max);
      this.onBlock(addr, null, 'username-scan');
      started ??= 'username-scan';
    }
    return started;
  }

  /** A success clears the pair's failures and makes the username known good from this source. */
  succeed(addr: string, username: string): void {
    const key = pairKey(addr, username);
    this.failures.delete(key);
    setNewest(this.knownGood, key, this.now() + (this.opts.knownGoodMs ?? 86_400_000), this.max);
  }
}
