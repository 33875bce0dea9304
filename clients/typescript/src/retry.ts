import { Code, ConnectError, type Interceptor } from "@connectrpc/connect";

/** How unary calls answered UNAVAILABLE are retried. */
export interface RetryOptions {
  /** Attempts in all, the first included; 1 turns retries off. Default 5. */
  maxAttempts?: number;
  /** Upper bound of the delay before the first retry. Default 100 ms. */
  initialBackoffMs?: number;
  /** The bound grows by this factor after each retry. Default 2. */
  multiplier?: number;
  /** The bound never grows past this. Default 5 000 ms. */
  maxBackoffMs?: number;
}

/** RetryOptions with every default applied and checked. */
export type ResolvedRetryOptions = Required<RetryOptions>;

export const DEFAULT_RETRY: ResolvedRetryOptions = {
  maxAttempts: 5,
  initialBackoffMs: 100,
  multiplier: 2,
  maxBackoffMs: 5_000,
};

export function resolveRetryOptions(options: RetryOptions = {}): ResolvedRetryOptions {
  const resolved = { ...DEFAULT_RETRY, ...definedOnly(options) };
  if (!Number.isInteger(resolved.maxAttempts) || resolved.maxAttempts < 1) {
    throw new RangeError(`hookplane: retry.maxAttempts must be an integer >= 1, got ${resolved.maxAttempts}`);
  }
  for (const key of ["initialBackoffMs", "maxBackoffMs"] as const) {
    if (!Number.isFinite(resolved[key]) || resolved[key] < 0) {
      throw new RangeError(`hookplane: retry.${key} must be a finite number >= 0, got ${resolved[key]}`);
    }
  }
  if (!Number.isFinite(resolved.multiplier) || resolved.multiplier < 1) {
    throw new RangeError(`hookplane: retry.multiplier must be >= 1, got ${resolved.multiplier}`);
  }
  return resolved;
}

/**
 * The delay before retry number `retry` (1 for the first): a random point
 * in the upper half of the exponential bound ("equal jitter"). The random
 * half keeps clients that failed together from retrying together; the
 * fixed half keeps the backoff growing, so a server that is starting up
 * is not hammered by near-zero delays.
 */
export function backoffDelayMs(options: ResolvedRetryOptions, retry: number, random: () => number = Math.random): number {
  const bound = Math.min(options.maxBackoffMs, options.initialBackoffMs * options.multiplier ** (retry - 1));
  return bound / 2 + random() * (bound / 2);
}

/**
 * Retries unary calls that failed with UNAVAILABLE, and nothing else:
 * UNAVAILABLE is the one code that says the call did not reach a working
 * server (connection refused, server starting or draining), so sending it
 * again is the expected remedy. Every other code is the server's answer and
 * would come back the same. Streams are never retried: their messages may
 * have been consumed already.
 *
 * A retried call is sent again whole. Creates are safe to repeat when they
 * carry a `requestId` (the server then returns the first result).
 */
export function retryUnavailable(options: RetryOptions = {}): Interceptor {
  const resolved = resolveRetryOptions(options);
  return (next) => async (req) => {
    if (req.stream) {
      return await next(req);
    }
    for (let attempt = 1; ; attempt++) {
      try {
        return await next(req);
      } catch (err) {
        const error = ConnectError.from(err);
        if (error.code !== Code.Unavailable || attempt >= resolved.maxAttempts || req.signal.aborted) {
          throw err;
        }
        await sleep(backoffDelayMs(resolved, attempt), req.signal);
      }
    }
  };
}

/**
 * Waits `ms`, or rejects as soon as `signal` aborts (the caller's deadline
 * or cancellation), so a backoff never outlives the call it belongs to.
 */
function sleep(ms: number, signal: AbortSignal): Promise<void> {
  return new Promise((resolve, reject) => {
    const onAbort = () => {
      clearTimeout(timer);
      reject(ConnectError.from(signal.reason, Code.Canceled));
    };
    const timer = setTimeout(() => {
      signal.removeEventListener("abort", onAbort);
      resolve();
    }, ms);
    if (signal.aborted) {
      onAbort();
      return;
    }
    signal.addEventListener("abort", onAbort, { once: true });
  });
}

/** `{ ...defaults, ...options }` would let an explicit `undefined` erase a default. */
function definedOnly(options: RetryOptions): RetryOptions {
  return Object.fromEntries(Object.entries(options).filter(([, value]) => value !== undefined));
}
