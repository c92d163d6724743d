import type { Etcd3, ILeaseKeepAliveRequest, ILeaseKeepAliveResponse, IDuplexStream } from 'etcd3'

interface Pending {
  resolve: (ttlSeconds: number) => void
  reject: (error: Error) => void
  timer: NodeJS.Timeout
}

/**
 * Renews leases over one LeaseKeepAlive stream shared by every heartbeat of the process, as
 * etcd's own clients do: a heartbeat is one small message on an open stream, not a new gRPC call
 * (etcd3's `Lease.keepaliveOnce` opens a stream per call, and only for leases it granted itself;
 * here any replica renews a lease another one granted). etcd answers each renewal with the lease's
 * new TTL, or 0 when the lease no longer exists, in the order they were sent.
 *
 * A renewal not answered within `timeoutMs` fails, and the stream is dropped so that the next
 * renewal opens a fresh one on the next member: a stream to a member that has lost its leader (or
 * its life, or is frozen: connections open, nothing comes back) would otherwise swallow every
 * renewal. The members are taken in turn, each through a client of its own, rather than through
 * etcd3's pool: the pool picks a member at random for each stream, so a retry could open its
 * stream on the very member that had just stayed silent.
 */
export class LeaseKeepAlive {
  readonly #members: readonly Etcd3[]
  readonly #timeoutMs: number
  /** The member the next stream opens on; a stream that fails moves it on. */
  #member: number
  readonly #pending = new Map<string, Pending[]>()
  #stream: Promise<IDuplexStream<ILeaseKeepAliveRequest, ILeaseKeepAliveResponse>> | undefined
  #closed = false

  /** `members`: one client per etcd member. `first`: the member to start with (replicas spread out). */
  constructor(members: readonly Etcd3[], timeoutMs: number, first = 0) {
    if (members.length === 0) throw new RangeError('a lease keep-alive needs at least one etcd member')
    this.#members = members
    this.#timeoutMs = timeoutMs
    this.#member = first % members.length
  }

  /** Renews the lease; resolves to its TTL in seconds, 0 when etcd no longer has it. */
  renew(leaseId: string): Promise<number> {
    if (this.#closed) return Promise.reject(new Error('lease keep-alive closed'))
    const opening = this.#open()
    return new Promise((resolve, reject) => {
      const queue = this.#pending.get(leaseId) ?? []
      // One deadline from now, opening included: a stream that never opens (a member that does
      // not answer) is dropped like one that never answers.
      const entry: Pending = {
        resolve,
        reject,
        timer: setTimeout(() => this.#fail(opening, new Error(`no answer from etcd to a lease renewal within ${this.#timeoutMs} ms`)), this.#timeoutMs),
      }
      queue.push(entry)
      this.#pending.set(leaseId, queue)
      opening.then(
        (stream) => {
          // Failed (and answered) while the stream was opening: nothing to send.
          if (this.#stream === opening && queue.includes(entry)) stream.write({ ID: leaseId })
        },
        () => {},
      )
    })
  }

  close(): void {
    this.#closed = true
    if (this.#stream) this.#fail(this.#stream, new Error('lease keep-alive closed'))
  }

  #open(): Promise<IDuplexStream<ILeaseKeepAliveRequest, ILeaseKeepAliveResponse>> {
    if (this.#stream) return this.#stream
    const opening = this.#members[this.#member]!.leaseClient.leaseKeepAlive()
    this.#stream = opening
    opening.then(
      (stream) => {
        stream.on('data', (response: ILeaseKeepAliveResponse) => this.#answer(response))
        stream.on('error', (error: Error) => this.#fail(opening, error))
        stream.on('end', () => this.#fail(opening, new Error('etcd ended the lease keep-alive stream')))
      },
      (error: Error) => this.#fail(opening, error),
    )
    return opening
  }

  #answer(response: ILeaseKeepAliveResponse): void {
    const id = String(response.ID)
    const queue = this.#pending.get(id)
    const entry = queue?.shift()
    if (!entry) return
    if (queue!.length === 0) this.#pending.delete(id)
    clearTimeout(entry.timer)
    entry.resolve(Number(response.TTL))
  }

  /** Fails every renewal in flight and forgets the stream, if it is still the current one. */
  #fail(stream: Promise<IDuplexStream<ILeaseKeepAliveRequest, ILeaseKeepAliveResponse>>, error: Error): void {
    if (this.#stream !== stream) return
    this.#stream = undefined
    if (!this.#closed) this.#member = (this.#member + 1) % this.#members.length
    const pending = [...this.#pending.values()].flat()
    this.#pending.clear()
    for (const entry of pending) {
      clearTimeout(entry.timer)
      entry.reject(error)
    }
    stream.then(
      (open) => open.cancel(),
      () => {},
    )
  }
}
