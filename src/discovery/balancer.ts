// Load-balancing strategies behind one interface: `select(instances, context)` picks one of the
// candidates (already filtered to those allowed to take traffic), or none if there are none.

export interface Candidate {
  readonly id: string
  readonly metadata: Readonly<Record<string, string>>
}

export interface SelectContext {
  /** Requests this client has in flight to the instance right now. */
  outstanding(instanceId: string): number
}

export interface Balancer {
  readonly name: LbStrategy
  select<T extends Candidate>(instances: readonly T[], context?: SelectContext): T | undefined
}

export const LB_STRATEGIES = ['round_robin', 'random', 'least_outstanding', 'weighted'] as const
export type LbStrategy = (typeof LB_STRATEGIES)[number]

const none: SelectContext = { outstanding: () => 0 }

/** The seed's strategy: each call takes the next instance in turn. */
export function roundRobin(): Balancer {
  let counter = 0
  return {
    name: 'round_robin',
    select(instances) {
      if (instances.length === 0) return undefined
      const index = counter % instances.length
      counter = (counter + 1) % Number.MAX_SAFE_INTEGER
      return instances[index]
    },
  }
}

export function random(rng: () => number = Math.random): Balancer {
  return {
    name: 'random',
    select(instances) {
      return instances.length === 0 ? undefined : instances[Math.floor(rng() * instances.length)]
    },
  }
}

/**
 * Least outstanding requests by the power of two choices: pick two at random, take the one with
 * fewer requests in flight. Nearly as good as scanning all, without herding onto one instance.
 */
export function leastOutstanding(rng: () => number = Math.random): Balancer {
  return {
    name: 'least_outstanding',
    select(instances, context = none) {
      if (instances.length <= 1) return instances[0]
      const i = Math.floor(rng() * instances.length)
      let j = Math.floor(rng() * (instances.length - 1))
      if (j >= i) j++
      const a = instances[i]!
      const b = instances[j]!
      return context.outstanding(b.id) < context.outstanding(a.id) ? b : a
    },
  }
}

/** An instance's weight from its metadata (`weight`: an integer 0-1000); 1 when absent or invalid. */
export function weightOf(instance: Candidate): number {
  const raw = instance.metadata.weight
  if (raw === undefined || !/^\d{1,4}$/.test(raw)) return 1
  return Math.min(1000, Number(raw))
}

/**
 * Smooth weighted round-robin (as nginx does it): over any window, each instance is chosen in
 * proportion to its `weight` metadata, and the choices are spread out rather than bunched.
 * Instances with weight 0 get traffic only when every instance has weight 0.
 */
export function weighted(): Balancer {
  const current = new Map<string, number>()
  return {
    name: 'weighted',
    select(instances) {
      if (instances.length === 0) return undefined
      const weights = instances.map(weightOf)
      if (weights.every((w) => w === 0)) return instances[0]
      let total = 0
      let best: (typeof instances)[number] | undefined
      let bestScore = Number.NEGATIVE_INFINITY
      const present = new Set<string>()
      instances.forEach((instance, k) => {
        const weight = weights[k]!
        present.add(instance.id)
        if (weight === 0) return
        total += weight
        const score = (current.get(instance.id) ?? 0) + weight
        current.set(instance.id, score)
        if (score > bestScore) {
          bestScore = score
          best = instance
        }
      })
      for (const id of current.keys()) if (!present.has(id)) current.delete(id)
      if (best) current.set(best.id, bestScore - total)
      return best
    },
  }
}

export function balancerFor(strategy: LbStrategy): Balancer {
  switch (strategy) {
    case 'round_robin':
      return roundRobin()
    case 'random':
      return random()
    case 'least_outstanding':
      return leastOutstanding()
    case 'weighted':
      return weighted()
  }
}
