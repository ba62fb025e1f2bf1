import { pino, type Logger, type DestinationStream } from 'pino';

/**
 * Paths pino replaces with "[redacted]" (STYLE.md §13). Log a key's id or prefix, never its
 * secret; these paths are the safety net for the cases where a whole object gets logged.
 */
export const REDACT_PATHS = [
  'secret',
  'token',
  'password',
  'pepper',
  'masterKey',
  'authorization',
  '*.secret',
  '*.token',
  '*.password',
  '*.authorization',
  '*.Authorization',
  '*.proxyAuthorization',
  '*.identity',
  'req.headers.authorization',
  'req.headers["proxy-authorization"]',
  'req.headers.identity',
  'req.headers.cookie',
  'req.headers["sec-websocket-protocol"]',
  'headers.authorization',
  'headers["proxy-authorization"]',
  'headers.identity',
  'config.secrets',
];

/** Patterns scrubbed from free-text messages as a last line of defence. */
const SECRET_PATTERNS: RegExp[] = [
  /tg_(?:live|test)_[0-9A-Za-z]{20,}/g,
  /eyJ[0-9A-Za-z_-]{8,}\.[0-9A-Za-z_-]{8,}\.[0-9A-Za-z_-]{8,}/g,
];

export function scrubSecrets(text: string): string {
  // Fast path: most lines hold neither a key prefix nor a JWT header.
  if (!text.includes('tg_') && !text.includes('eyJ')) return text;
  let out = text;
  for (const re of SECRET_PATTERNS) out = out.replace(re, '[redacted]');
  return out;
}

export interface LoggerOptions {
  level: string;
  destination?: DestinationStream | undefined;
  base?: Record<string, unknown>;
}

/**
 * Wraps the log destination so every serialised line passes through scrubSecrets: the last
 * net, for secrets that reach a log by a path the redact paths and hooks do not see (an Error
 * logged alone, whose message pino copies into msg; an object's own msg field).
 */
function scrubbingDestination(dest: DestinationStream): DestinationStream {
  return { write: (line: string) => dest.write(scrubSecrets(line)) };
}

export function createLogger(opts: LoggerOptions): Logger {
  const destination = scrubbingDestination(opts.destination ?? pino.destination({ dest: 1, sync: false }));
  return pino(
    {
      level: opts.level,
      base: opts.base ?? {},
      redact: { paths: REDACT_PATHS, censor: '[redacted]' },
      timestamp: pino.stdTimeFunctions.isoTime,
      formatters: { level: (label) => ({ level: label }) },
      hooks: {
        // Scrub anything that looks like a key or token from message strings.
        logMethod(args, method) {
          for (let i = 0; i < args.length; i++) {
            const a: unknown = args[i];
            if (typeof a === 'string') (args as unknown[])[i] = scrubSecrets(a);
          }
          method.apply(this, args);
        },
      },
      serializers: {
        err: (err: unknown) => {
          const s = pino.stdSerializers.err(err as Error);
          if (typeof s.message === 'string') s.message = scrubSecrets(s.message);
          if (typeof s.stack === 'string') s.stack = scrubSecrets(s.stack);
          return s;
        },
      },
    },
    destination,
  );
}

export type { Logger };
