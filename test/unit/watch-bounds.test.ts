// Watchers are bounded: how many there may be, how much an event stream may hold unsent, and how
// much one change costs to tell them all. HEAD on a watch answers at once and holds nothing.
import assert from 'node:assert/strict'
import type { ServerResponse } from 'node:http'
import { connect, type AddressInfo, type Socket } from 'node:net'
import { afterEach, describe, it } from 'node:test'
import { capturingLogger } from '../helpers/logger.ts'
import type { RegistryApp } from '../../src/registry/server.ts'
import type { InstanceRecord, ServiceSnapshot } from '../../src/registry/store.ts'
import { changeEvent, instanceSerializations, snapshotEvent, snapshotJson, snapshotView } from '../../src/registry/views.ts'
import { WatchHub, type EventStream } from '../../src/registry/watch.ts'
import { closeRegistries, registry } from '../helpers/registry-app.ts'
import { STORE_KINDS } from '../helpers/stores.ts'
import { rawConnect, type RawConnection } from '../helpers/raw-http.ts'
import { waitFor } from '../helpers/wait.ts'

const sockets: Socket[] = []
afterEach(async () => {
  for (const socket of sockets.splice(0)) socket.destroy()
  await closeRegistries()
})

async function listening(built: RegistryApp): Promise<number> {
  await built.app.listen({ host: '127.0.0.1', port: 0 })
  return (built.app.server.address() as AddressInfo).port
}

async function connection(port: number): Promise<RawConnection> {
  const raw = await rawConnect(port)
  sockets.push(raw.socket)
  return raw
}

/** An event stream read as it comes, counting its events. */
async function reader(url: string) {
  const controller = new AbortController()
  const response = await fetch(url, { signal: controller.signal })
  assert.equal(response.status, 200)
  const body = response.body!.getReader()
  const decoder = new TextDecoder()
  let text = ''
  let changes = 0
  let ended = false
  const reading = (async () => {
    for (;;) {
      const { value, done } = await body.read()
      if (done) break
      text += decoder.decode(value, { stream: true })
      // Count whole events only; keep the unfinished tail.
      const cut = text.lastIndexOf('\n\n')
      if (cut < 0) continue
      changes += text.slice(0, cut).split('event: change\n').length - 1
      text = text.slice(cut + 2)
    }
  })()
    .catch(() => {})
    .finally(() => {
      ended = true
    })
  return {
    changes: () => changes,
    ended: () => ended,
    close: async () => {
      controller.abort()
      await reading
    },
  }
}

const metricValue = async (built: RegistryApp, pattern: RegExp) => (await built.app.inject({ method: 'GET', url: '/metrics' })).body.match(pattern)?.[1]

/** Metadata of about `bytes` bytes (values of at most 512 characters, as the schema allows). */
function bulk(bytes: number): Record<string, string> {
  const metadata: Record<string, string> = {}
  for (let i = 0; i * 500 < bytes; i++) metadata[`k${i}`] = String(i).padEnd(500, 'x')
  return metadata
}

/** A response that holds what it is given, for the hub's rules alone. */
function fakeResponse() {
  const response = {
    writableLength: 0,
    destroyed: false,
    ended: false,
    written: [] as string[],
    write(text: string) {
      response.written.push(text)
      response.writableLength += text.length
      return true
    },
    end() {
      response.ended = true
    },
    destroy() {
      response.destroyed = true
    },
  }
  return response
}

/**
 * Sends `HEAD path` and then a GET of /health/live on the same connection: returns the HEAD's
 * status line and headers, and what followed them before the GET's answer (nothing, for a HEAD).
 */
async function head(port: number, path: string) {
  const raw = await connection(port)
  await raw.write(`HEAD ${path} HTTP/1.1\r\nhost: registry\r\n\r\nGET /health/live HTTP/1.1\r\nhost: registry\r\n\r\n`)
  const data = await waitFor(
    () => {
      const text = raw.received()
      const second = text.indexOf('HTTP/1.1', 1)
      return second > 0 && text.endsWith('}') ? text : undefined
    },
    { timeoutMs: 3000, what: `the answers to HEAD ${path} and the GET after it` },
  )
  const end = data.indexOf('\r\n\r\n')
  const [statusLine = '', ...headerLines] = data.slice(0, end).split('\r\n')
  const headers: Record<string, string> = {}
  for (const line of headerLines) headers[line.slice(0, line.indexOf(':')).toLowerCase()] = line.slice(line.indexOf(':') + 1).trim()
  const rest = data.slice(end + 4)
  return { status: Number(statusLine.split(' ')[1]), headers, between: rest.slice(0, rest.indexOf('HTTP/1.1')) }
}

for (const kind of STORE_KINDS) {
  describe(`a slow event stream consumer (${kind.name})`, () => {
    it('is dropped once over 1 MiB waits unsent, logged and counted once, while a reading one keeps its stream', async () => {
      const { lines, logger } = capturingLogger('info')
      const built = await registry(kind, { logger })
      const { store, hub } = built
      const port = await listening(built)
      // About 100 KB an event: each change to the service sends all of its members.
      const urls: string[] = []
      for (let i = 0; i < 30; i++) {
        urls.push(`http://10.0.0.1:${1000 + i}`)
        await store.register({ service_name: 'big', url: urls[i]!, metadata: bulk(3500) })
      }
      const eventBytes = changeEvent(store.members('big')).length
      assert.ok(eventBytes > 90_000 && eventBytes < 150_000, `event of ${eventBytes} bytes`)

      const healthy = await reader(`http://127.0.0.1:${port}/events?service=big`)
      const accepted: Socket[] = []
      built.app.server.on('connection', (socket: Socket) => accepted.push(socket))
      // A client that asks for the stream and never reads a byte of it.
      const stalled = connect(port, '127.0.0.1')
      sockets.push(stalled)
      await new Promise<void>((resolve, reject) => stalled.once('connect', resolve).once('error', reject))
      stalled.pause()
      const stalledPort = stalled.localPort
      let stalledClosed = false
      stalled.once('close', () => (stalledClosed = true))
      stalled.on('error', () => {})
      stalled.write('GET /events?service=big HTTP/1.1\r\nhost: registry\r\n\r\n')
      await waitFor(() => hub.streams === 2, { what: 'both streams open' })
      assert.equal(await metricValue(built, /registry_watchers_dropped_total\{reason="slow_consumer"[^}]*\} (\d+)/), '0', 'counted from the start')

      // Change the service until the stalled stream is dropped (bounded: 400 changes, ~40 MB),
      // each change once the reading client has it.
      let changes = 0
      while (hub.streams === 2 && changes < 400) {
        changes++
        await store.heartbeat({ service_name: 'big', url: urls[0]!, status: changes % 2 === 1 ? 'draining' : 'up' })
        await waitFor(() => healthy.changes() >= changes, { timeoutMs: 5000, what: `change ${changes} at the reading client` })
      }
      assert.equal(hub.streams, 1, `the stalled stream is dropped (after ${changes} changes)`)
      // The registry's end of the connection is gone at once; the client learns it once it reads
      // what had reached its kernel, then the end.
      const registrySide = accepted.find((socket) => socket.remotePort === stalledPort)
      assert.equal(registrySide?.destroyed, true, "the registry closed the stalled client's connection")
      stalled.resume()
      await waitFor(() => stalledClosed, { what: 'the stalled client to see its connection closed' })
      assert.equal(healthy.ended(), false, 'the reading client keeps its stream')

      const dropped = lines.filter((line) => line.event === 'watcher_dropped')
      assert.equal(dropped.length, 1, 'logged once')
      assert.equal(dropped[0]!.peer, `127.0.0.1:${stalledPort}`)
      assert.equal(dropped[0]!.reason, 'slow_consumer')
      assert.equal(dropped[0]!.service, 'big')
      // What the registry held for it: at most the bound plus the latest event plus the one refused.
      const held = dropped[0]!.buffered_bytes as number
      assert.ok(held > 1024 * 1024 && held <= 1024 * 1024 + 2 * eventBytes + 1024, `held ${held} bytes`)

      // More changes reach the reader, and nothing more is logged for the dropped one.
      await store.heartbeat({ service_name: 'big', url: urls[1]!, status: 'draining' })
      await waitFor(() => healthy.changes() > changes, { what: 'the next change at the reading client' })
      assert.equal(lines.filter((line) => line.event === 'watcher_dropped').length, 1)
      assert.equal(await metricValue(built, /registry_watchers_dropped_total\{reason="slow_consumer"[^}]*\} (\d+)/), '1')
      assert.equal(await metricValue(built, /registry_watchers\{kind="event_stream"[^}]*\} (\d+)/), '1')
      await healthy.close()
      await waitFor(() => hub.streams === 0, { what: 'no stream left' })
      assert.equal(hub.watchers, 0)
    })
  })

  describe(`the watch hub (${kind.name})`, () => {
    const store = () => kind.make()

    it('counts keep-alive comments against the bound, and lets a stream take its one big latest event', async () => {
      const dropped: string[] = []
      const hub = new WatchHub(await store(), { changeEvent: () => '', maxStreamBufferBytes: 1000, onDropped: (stream, reason) => dropped.push(`${stream.peer} ${reason}`) })
      const response = fakeResponse()
      const stream: EventStream = { service: undefined, response: response as unknown as ServerResponse, peer: '127.0.0.1:5' }
      hub.addStream(stream, 'x'.repeat(5000)) // a snapshot five times the bound, all unsent
      hub.send(stream, ': keep-alive\n\n')
      assert.deepEqual(dropped, [], 'a client may still be reading its latest event')
      assert.equal(hub.streams, 1)
      hub.send(stream, ': keep-alive\n\n') // ... but not for ever: nothing was read since
      assert.deepEqual(dropped, ['127.0.0.1:5 slow_consumer'])
      assert.equal(response.destroyed, true)
      assert.equal(hub.streams, 0)
      hub.send(stream, ': keep-alive\n\n')
      assert.equal(dropped.length, 1, 'dropped once')
      hub.close()
    })

    it('follows no response that is already gone, and counts every watcher against the cap', async () => {
      const hub = new WatchHub(await store(), { changeEvent: () => '', maxWatchers: 2 })
      const gone = fakeResponse()
      gone.destroyed = true
      hub.addStream({ service: undefined, response: gone as unknown as ServerResponse, peer: 'x' }, 'snapshot')
      assert.equal(hub.streams, 0)
      const live = fakeResponse()
      hub.addStream({ service: undefined, response: live as unknown as ServerResponse, peer: 'y' }, 'snapshot')
      assert.equal(hub.full, false)
      const waiting = hub.waitForChange('product', 60_000, new AbortController().signal)
      assert.equal(hub.watchers, 2)
      assert.equal(hub.full, true)
      hub.close()
      await waiting
      assert.equal(live.ended, true)
      assert.equal(hub.watchers, 0)
    })
  })

  describe(`the watcher cap (${kind.name})`, () => {
    it('refuses a blocking query or event stream beyond it with 503 TOO_MANY_WATCHERS and Retry-After, never a plain discover', async () => {
      const built = await registry(kind, { maxWatchers: 2 })
      const { app, store, hub, epoch } = built
      await store.register({ service_name: 'product', url: 'http://10.0.0.1:1' })
      const port = await listening(built)
      const base = `http://127.0.0.1:${port}`
      const index = store.discover('product').index
      const blocking = `/discover/product?index=${index}&epoch=${epoch}&wait=60s`
      const first = app.inject({ method: 'GET', url: blocking })
      const stream = await reader(`${base}/events`)
      await waitFor(() => hub.watchers === 2, { what: 'two watchers' })

      for (const [method, url] of [
        ['GET', blocking],
        ['GET', '/events'],
        ['GET', '/events?service=product'],
      ] as const) {
        const refused = await fetch(`${base}${url}`, { method })
        assert.equal(refused.status, 503, url)
        assert.match(refused.headers.get('content-type') ?? '', /^application\/problem\+json/)
        const retryAfter = Number(refused.headers.get('retry-after'))
        assert.ok(Number.isInteger(retryAfter) && retryAfter >= 1, `Retry-After: ${refused.headers.get('retry-after')}`)
        assert.equal(((await refused.json()) as { code: string }).code, 'TOO_MANY_WATCHERS', url)
      }
      assert.equal(hub.watchers, 2, 'the refused ones hold nothing')
      // Not watchers: a plain discover (the fast path and the route), one that answers at once, the list.
      for (const url of ['/discover/product', '/discover/product?index=0', `/discover/product?index=${index}&epoch=elsewhere`, '/services']) {
        const answered = await fetch(`${base}${url}`)
        assert.equal(answered.status, 200, url)
        await answered.arrayBuffer()
      }

      // A place frees up when a watcher ends.
      await store.register({ service_name: 'product', url: 'http://10.0.0.1:2' })
      assert.equal((await first).statusCode, 200)
      await waitFor(() => hub.watchers === 1, { what: 'the blocking query to end' })
      const next = app.inject({ method: 'GET', url: `/discover/product?index=${store.discover('product').index}&wait=60s` })
      await waitFor(() => hub.watchers === 2, { what: 'a new blocking query admitted' })
      await stream.close()
      await waitFor(() => hub.watchers === 1, { what: 'the stream to end' })
      await store.register({ service_name: 'product', url: 'http://10.0.0.1:3' })
      assert.equal((await next).statusCode, 200)
    })
  })

  describe(`HEAD (${kind.name})`, () => {
    it("answers at once with the GET's status and headers and no body, and watches nothing", async () => {
      const built = await registry(kind)
      const { store, hub, epoch } = built
      await store.register({ service_name: 'product', url: 'http://10.0.0.1:1', metadata: { zone: 'é-ü' } })
      const port = await listening(built)
      const base = `http://127.0.0.1:${port}`
      const index = store.discover('product').index

      for (const path of ['/discover/product', `/discover/product?index=${index}&epoch=${epoch}&wait=60s`, '/services']) {
        const started = Date.now()
        const answer = await head(port, path)
        assert.ok(Date.now() - started < 2000, `${path} answered at once`)
        const get = await fetch(`${base}${path.replace(/&wait=60s$/, '&wait=1ms')}`)
        const body = Buffer.from(await get.arrayBuffer())
        assert.equal(answer.status, get.status, path)
        assert.equal(answer.between, '', `${path}: no body`)
        assert.equal(answer.headers['content-length'], String(body.length), path)
        for (const header of ['content-type', 'x-registry-index', 'x-registry-epoch'])
          assert.equal(answer.headers[header], get.headers.get(header) ?? undefined, `${path} ${header}`)
      }

      for (const path of ['/events', '/events?service=product']) {
        const answer = await head(port, path)
        assert.equal(answer.status, 200, path)
        assert.equal(answer.between, '', `${path}: no body, no stream`)
        assert.equal(answer.headers['content-type'], 'text/event-stream; charset=utf-8')
        assert.equal(answer.headers['cache-control'], 'no-cache')
        assert.equal(answer.headers['x-registry-epoch'], epoch)
        assert.equal(answer.headers['content-length'], undefined, 'a stream has no length')
      }
      assert.equal(hub.watchers, 0, 'no HEAD left a watcher behind')
    })
  })

  describe(`discovery bodies and change events (${kind.name})`, () => {
    it('are exactly the JSON of the views', async () => {
      const store = await kind.make()
      await store.register({ service_name: 'product', url: 'http://10.0.0.1:1', metadata: { zone: 'é-ü "quoted" \\ \u2028', b: '' } })
      await store.register({ service_name: 'product', url: 'http://10.0.0.1:2', health_url: 'http://10.0.0.1:2/health', status: 'starting' })
      const empty: ServiceSnapshot = { serviceName: 'none', index: 0, instances: [] }
      for (const snapshot of [store.members('product'), store.discover('product'), empty]) {
        assert.equal(snapshotJson(snapshot), JSON.stringify(snapshotView(snapshot)))
        assert.equal(changeEvent(snapshot), `event: change\ndata: ${JSON.stringify({ index: snapshot.index, ...snapshotView(snapshot) })}\n\n`)
      }
      const all = [store.members('product'), empty]
      assert.equal(snapshotEvent('e1', all), `event: snapshot\ndata: ${JSON.stringify({ epoch: 'e1', services: all.map(snapshotView) })}\n\n`)
      assert.equal(snapshotEvent('e1', []), `event: snapshot\ndata: ${JSON.stringify({ epoch: 'e1', services: [] })}\n\n`)
    })

    it('cost one instance serialization per changed instance, however many watchers and instances', async () => {
      const built = await registry(kind, { maxInstancesPerService: 2000 })
      const { app, store, hub, epoch } = built
      const records: InstanceRecord[] = []
      // A hundred at a time: on etcd each registration is a round trip.
      for (let from = 0; from < 2000; from += 100) {
        const batch = Array.from({ length: 100 }, (_, k) => from + k)
        const results = await Promise.all(batch.map((i) => store.register({ service_name: 'big', url: `http://10.0.${i >> 8}.${i & 255}:8080`, metadata: { zone: `z${i % 3}` } })))
        for (const result of results) {
          assert.ok(result.kind === 'created')
          records.push(result.instance)
        }
      }
      const port = await listening(built)
      // 25 event streams and 25 blocking queries on the service, and a stream on another service.
      const streams = await Promise.all(Array.from({ length: 25 }, () => connection(port)))
      for (const stream of streams) await stream.write('GET /events?service=big HTTP/1.1\r\nhost: registry\r\n\r\n')
      const elsewhere = await connection(port)
      await elsewhere.write('GET /events?service=other HTTP/1.1\r\nhost: registry\r\n\r\n')
      const index = store.discover('big').index
      const queries = Array.from({ length: 25 }, () => app.inject({ method: 'GET', url: `/discover/big?index=${index}&epoch=${epoch}&wait=60s` }))
      await waitFor(() => hub.streams === 26 && hub.blockingQueries === 25, { what: '51 watchers' })

      // A change to a service no stream follows and no one asks for: nothing to build.
      let before = instanceSerializations()
      await store.register({ service_name: 'unwatched', url: 'http://10.9.9.9:1' })
      assert.equal(instanceSerializations() - before, 0, 'no event built for a service no stream follows')

      before = instanceSerializations()
      await store.heartbeat({ instance_id: records[1234]!.id, status: 'draining' })
      const answers = await Promise.all(queries)
      await waitFor(() => streams.every((stream) => stream.received().includes('event: change')), { what: 'the change event on all 25 streams' })
      const cost = instanceSerializations() - before
      for (const answer of answers) {
        assert.equal(answer.statusCode, 200)
        assert.equal(answer.json().instances.length, 1999, 'the draining instance is no longer discovered')
      }
      assert.ok(cost >= 1 && cost <= 2, `one change to one of 2000 instances, told to 50 watchers, serialized ${cost} instances`)
      assert.equal(elsewhere.received().includes('event: change'), false)
    })
  })
}
