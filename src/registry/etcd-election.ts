import type { Etcd3 } from 'etcd3'
import type { Logger } from '../lib/logger.ts'
import type { LeaseKeepAlive } from './etcd-keepalive.ts'

export interface LeaderElectionOptions {
  client: Etcd3
  /** Renews this candidate's lease (a stream of the election's own, apart from heartbeats). */
  keepAlive: LeaseKeepAlive
  /** Names the election; every replica of one registry uses the same. */
  name: string
  /** The candidate's lease, in seconds: how long a dead leader keeps the role. */
  ttlSeconds: number
  /** This candidate, as the value of its key and in logs. */
  candidate: string
  logger: Logger
}

/**
 * Leader election over etcd, by etcd's own recipe: each candidate puts a key on a lease of its own
 * under one prefix, and the candidate whose key was created first leads. The keys are those of
 * etcd3's `Election` (`election/<name>/<lease id>`), so a replica running this and one running
 * the earlier code agree on one leader.
 *
 * Each `step` (the store calls it on an interval a third of the TTL or shorter) renews the lease
 * and reads the candidates. When a leader dies, its lease expires and its key goes; the next
 * candidate leads from its next step. No watch: etcd3's `Campaign` waits for its predecessor
 * with a watch that nothing can cancel, and once the client is closed etcd3 retries that watch
 * for ever, so a process that closed its store never exited.
 *
 * A candidate that cannot renew its lease steps down at once: the lease may run out, and another
 * replica may lead, while it cannot tell.
 */
export class LeaderElection {
  readonly #options: LeaderElectionOptions
  readonly #prefix: string
  #lease: string | undefined
  #leader = false
  #stepping: Promise<void> | undefined
  #closed = false

  constructor(options: LeaderElectionOptions) {
    this.#options = options
    this.#prefix = `election/${options.name}/`
  }

  /** Whether this candidate led at its latest step. */
  get leader(): boolean {
    return this.#leader
  }

  /** Renews the lease (standing again if it is gone) and reads who leads. Never throws. */
  step(): Promise<void> {
    this.#stepping ??= this.#step().finally(() => {
      this.#stepping = undefined
    })
    return this.#stepping
  }

  /** Steps down and withdraws: the next candidate leads from its next step. */
  async close(): Promise<void> {
    this.#closed = true
    await this.#stepping
    // Not a loss to warn about: the store is closing, and says so.
    this.#leader = false
    const lease = this.#lease
    this.#lease = undefined
    if (lease !== undefined) await this.#options.client.leaseClient.leaseRevoke({ ID: lease })
  }

  async #step(): Promise<void> {
    const { client, keepAlive } = this.#options
    try {
      // Lease gone (expired while this process or etcd was away): stand again, at the back.
      if (this.#lease !== undefined && (await keepAlive.renew(this.#lease)) === 0) {
        this.#lease = undefined
        this.#set(false, 'its lease expired')
      }
      if (this.#closed) return
      if (this.#lease === undefined) await this.#stand()
      const lease = this.#lease
      if (lease === undefined || this.#closed) return
      const candidates = await client.getAll().prefix(this.#prefix).sort('Create', 'Ascend').keys()
      const own = this.#prefix + lease
      if (!candidates.includes(own)) {
        // Its key was deleted under a live lease (by hand): stand again at the next step.
        this.#lease = undefined
        void client.leaseClient.leaseRevoke({ ID: lease }).catch(() => {})
        return this.#set(false, 'its election key was deleted')
      }
      this.#set(candidates[0] === own)
    } catch (error) {
      this.#set(false, error instanceof Error ? error.message : String(error))
    }
  }

  async #stand(): Promise<void> {
    const { client, ttlSeconds, candidate } = this.#options
    const { ID: lease } = await client.leaseClient.leaseGrant({ TTL: ttlSeconds, ID: 0 })
    try {
      if (this.#closed) throw new Error('closed')
      await client
        .put(this.#prefix + lease)
        .value(candidate)
        .lease(lease)
        .exec()
    } catch (error) {
      void client.leaseClient.leaseRevoke({ ID: lease }).catch(() => {})
      throw error
    }
    this.#lease = lease
  }

  #set(leader: boolean, reason?: string): void {
    if (leader === this.#leader) return
    this.#leader = leader
    const { logger, candidate } = this.#options
    if (leader) logger.info({ event: 'leader_elected', replica: candidate }, 'this replica runs the health checks')
    else logger.warn({ event: 'leader_lost', replica: candidate, err: reason }, 'no longer the replica that runs the health checks')
  }
}
