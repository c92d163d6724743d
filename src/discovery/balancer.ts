/** A load-balancing strategy: picks one of the candidate instances, or none if there are none. */
export interface Balancer {
  select<T>(instances: readonly T[]): T | undefined
}

/** The seed's strategy: each call takes the next instance in turn. */
export function roundRobin(): Balancer {
  let counter = 0
  return {
    select<T>(instances: readonly T[]): T | undefined {
      if (instances.length === 0) return undefined
      const index = counter % instances.length
      counter = (counter + 1) % Number.MAX_SAFE_INTEGER
      return instances[index]
    },
  }
}
