// Long-running loops must not leave a listener behind per round: a registry's kept-alive
// connection serves blocking queries for hours, and a resolver retries for as long as the
// registry is down. (Node warns about emitters from the 11th listener on; about AbortSignals,
// not at all: those are counted here directly.)
import assert from 'node:assert/strict'
import { createServer, type Server } from 'node:http'
import type { AddressInfo, Socket } from 'node:net'
import { after, describe, it } from 'node:test'
import { Agent, request } from 'undici'
import { RegistryClient } from '../../src/discovery/registry-client.ts'
import { Resolver } from '../../src/discovery/resolver.ts'
import { buildRegistryApp } from '../../src/registry/server.ts'
import { silentLogger } from '../helpers/logger.ts'
import { waitFor } from '../helpers/wait.ts'

/** Runs `run` and returns, per AbortSignal, how many abort listeners it added and did not remove. */
async function abortListenersLeft(run: () => Promise<void>): Promise<number[]> {
  const net = new Map<EventTarget, number>()
  const { addEventListener, removeEventListener } = EventTarget.prototype
  const seen = new Map<EventTarget, Set<unknown>>()
  EventTarget.prototype.addEventListener = function (this: EventTarget, type: string, listener: unknown, options?: unknown) {
    if (type === 'abort' && this instanceof AbortSignal) {
      const listeners = seen.get(this) ?? new Set()
      if (!listeners.has(listener)) net.set(this, (net.get(this) ?? 0) + 1)
      listeners.add(listener)
      seen.set(this, listeners)
    }
    return addEventListener.call(this, type, listener as Parameters<EventTarget['addEventListener']>[1], options as Parameters<EventTarget['addEventListener']>[2])
  }
  EventTarget.prototype.removeEventListener = function (this: EventTarget, type: string, listener: unknown, options?: unknown) {
    if (type === 'abort' && this instanceof AbortSignal && seen.get(this)?.delete(listener)) net.set(this, (net.get(this) ?? 1) - 1)
    return removeEventListener.call(this, type, listener as Parameters<EventTarget['removeEventListener']>[1], options as Parameters<EventTarget['removeEventListener']>[2])
  }
  try {
    await run()
  } finally {
    EventTarget.prototype.addEventListener = addEventListener
    EventTarget.prototype.removeEventListener = removeEventListener
  }
  return [...net.values()].filter((count) => count > 0)
}

/** Collects the MaxListenersExceededWarning the process emits while `run` runs. */
async function leakWarnings(run: () => Promise<void>): Promise<string[]> {
  const warnings: string[] = []
  const onWarning = (warning: Error) => {
    if (warning.name === 'MaxListenersExceededWarning') warnings.push(warning.message)
  }
  process.on('warning', onWarning)
  try {
    await run()
    // Warnings are emitted on the next tick.
    await new Promise((resolve) => setImmediate(resolve))
  } finally {
    process.off('warning', onWarning)
  }
  return warnings
}

describe('listener leaks', () => {
  const servers: Server[] = []
  after(async () => {
    await Promise.all(servers.map((server) => new Promise((resolve) => server.close(resolve))))
  })

  it('50 blocking queries in a row on one kept-alive connection leave its listener count flat', async () => {
    const registry = buildRegistryApp({ logger: silentLogger(), ttlMs: 60_000, warmupMs: 0 })
    await registry.app.listen({ host: '127.0.0.1', port: 0 })
    const sockets = new Set<Socket>()
    registry.app.server.on('connection', (socket: Socket) => sockets.add(socket))
    const origin = `http://127.0.0.1:${(registry.app.server.address() as AddressInfo).port}`
    const agent = new Agent({ connections: 1, pipelining: 1 })
    try {
      const counts: number[] = []
      const warnings = await leakWarnings(async () => {
        for (let i = 0; i < 50; i++) {
          const response = await request(`${origin}/discover/product?index=0&wait=5ms`, { dispatcher: agent })
          assert.equal(response.statusCode, 200)
          await response.body.dump()
          assert.equal(sockets.size, 1, 'every query went over the same connection')
          const [socket] = sockets
          counts.push(socket!.listenerCount('close'))
        }
      })
      assert.deepEqual(warnings, [])
      assert.equal(counts.at(-1), counts[0], `close listeners on the connection: ${counts.join(',')}`)
    } finally {
      await agent.close()
      await registry.app.close()
    }
  })

  it('a resolver whose watches fail round after round leaves no abort listener behind', async () => {
    // A registry that answers the first discovery, then fails every watch after it.
    let requests = 0
    const server = createServer((_req, res) => {
      requests++
      if (requests === 1) {
        res.writeHead(200, { 'content-type': 'application/json', 'x-registry-index': '1', 'x-registry-epoch': 'e1', 'x-registry-warmup-ms': '0' })
        res.end(JSON.stringify({ service_name: 'product', instances: [] }))
        return
      }
      res.writeHead(500, { 'content-type': 'application/json' })
      res.end('{}')
    })
    servers.push(server)
    await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve))
    const url = `http://127.0.0.1:${(server.address() as AddressInfo).port}`
    const client = new RegistryClient({ urls: [url], timeoutMs: 1000 })
    const resolver = new Resolver({ client, backoff: { initialMs: 1, maxMs: 2 } })
    try {
      assert.deepEqual(await resolver.resolve('product'), [])
      const left = await abortListenersLeft(async () => {
        await waitFor(() => requests >= 60, { what: '60 failed watch rounds' })
      })
      // At most the one a watch in flight holds; not one per failed round.
      assert.ok(
        left.every((count) => count <= 1),
        `abort listeners left on a signal: ${left.join(', ')}`,
      )
    } finally {
      resolver.close()
      await client.close()
    }
  })
})
