export interface BackoffOptions {
  initialMs: number
  maxMs: number
}

export const DEFAULT_BACKOFF: BackoffOptions = { initialMs: 200, maxMs: 10_000 }

/**
 * Exponential backoff with "full jitter": a uniformly random delay up to the exponential cap,
 * so that many instances restarting together do not retry in lockstep.
 */
export function backoffDelay(attempt: number, options: BackoffOptions = DEFAULT_BACKOFF, random: () => number = Math.random): number {
  const cap = Math.min(options.maxMs, options.initialMs * 2 ** Math.max(0, attempt))
  return Math.max(1, Math.round(cap / 2 + (random() * cap) / 2))
}

/** `ms` varied by up to ±fraction, so that periodic timers of many instances spread out. */
export function jitter(ms: number, fraction = 0.1, random: () => number = Math.random): number {
  return Math.max(1, Math.round(ms * (1 - fraction + 2 * fraction * random())))
}
