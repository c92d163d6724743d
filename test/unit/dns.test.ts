import assert from 'node:assert/strict'
import { createSocket } from 'node:dgram'
import { connect } from 'node:net'
import { after, before, describe, it } from 'node:test'
import * as dnsPacket from 'dns-packet'
import { DnsAnswerer, type DnsServer, hexOf, startDnsServer } from '../../src/registry/dns.ts'
import { MemoryStore } from '../../src/registry/memory-store.ts'
import { capturingLogger } from '../helpers/logger.ts'
import { freePorts } from '../helpers/system.ts'

const HOST = '127.0.0.1'

/** A decoded answer with its rcode (which dns-packet decodes but its typings omit). */
type Reply = dnsPacket.DecodedPacket & { rcode: string }

function query(name: string, type: dnsPacket.RecordType, extra: Partial<dnsPacket.Packet> = {}): dnsPacket.Packet {
  return { type: 'query', id: Math.floor(Math.random() * 65_535), flags: dnsPacket.RECURSION_DESIRED, questions: [{ name, type, class: 'IN' }], ...extra }
}

/** Sends one datagram, resolves with the decoded answer (or undefined after `timeoutMs`). */
async function udp(port: number, message: dnsPacket.Packet | Buffer, timeoutMs = 2000): Promise<Reply | undefined> {
  const socket = createSocket('udp4')
  try {
    return await new Promise((resolve, reject) => {
      const timer = setTimeout(() => resolve(undefined), timeoutMs)
      socket.on('error', reject)
      socket.on('message', (data) => {
        clearTimeout(timer)
        resolve(dnsPacket.decode(data) as Reply)
      })
      socket.send(Buffer.isBuffer(message) ? message : dnsPacket.encode(message), port, HOST)
    })
  } finally {
    socket.close()
  }
}

/** Sends length-prefixed queries over one TCP connection; resolves with the answers, or how it ended. */
async function tcp(port: number, payload: Buffer, expected: number, timeoutMs = 3000): Promise<{ answers: Reply[]; closed: boolean }> {
  const socket = connect(port, HOST)
  const answers: Reply[] = []
  try {
    return await new Promise((resolve, reject) => {
      const timer = setTimeout(() => reject(new Error(`no ${expected} answers over TCP in ${timeoutMs} ms`)), timeoutMs)
      let pending = Buffer.alloc(0)
      socket.on('error', reject)
      socket.on('close', () => {
        clearTimeout(timer)
        resolve({ answers, closed: true })
      })
      socket.on('data', (chunk: Buffer) => {
        pending = Buffer.concat([pending, chunk])
        while (pending.length >= 2 && pending.length >= 2 + pending.readUInt16BE(0)) {
          answers.push(dnsPacket.decode(pending.subarray(2, 2 + pending.readUInt16BE(0))) as Reply)
          pending = pending.subarray(2 + pending.readUInt16BE(0))
        }
        if (answers.length >= expected && expected > 0) {
          clearTimeout(timer)
          resolve({ answers, closed: false })
        }
      })
      socket.write(payload)
    })
  } finally {
    socket.destroy()
  }
}

const framed = (packet: dnsPacket.Packet) => dnsPacket.streamEncode(packet)
const EDNS = { type: 'OPT', name: '.', udpPayloadSize: 4096 } as dnsPacket.OptAnswer

describe('registry DNS (A, SRV, .addr., NXDOMAIN, REFUSED, truncation, garbage)', () => {
  const store = new MemoryStore({ ttlMs: 60_000 })
  const { logger, lines } = capturingLogger('debug')
  let server: DnsServer
  let port: number

  before(async () => {
    ;[port] = (await freePorts(1)) as [number]
    await store.register({ service_name: 'product', url: 'http://10.0.0.1:8081' })
    await store.register({ service_name: 'product', url: 'http://10.0.0.2' })
    await store.register({ service_name: 'product', url: 'https://10.0.0.3' })
    // Down: its health check fails (the registry's view), so discovery leaves it out.
    const down = await store.register({ service_name: 'product', url: 'http://10.0.0.4:8084' })
    assert.ok(down.kind === 'created')
    await store.setHealth(down.instance.id, 'failing')
    await store.register({ service_name: 'product', url: 'http://product.internal:8085' })
    await store.register({ service_name: 'product', url: 'http://[fd00::5]:8086' })
    for (let i = 0; i < 60; i++) await store.register({ service_name: 'many', url: `http://10.1.${i >> 8}.${i & 255}:${9000 + i}` })
    server = (await startDnsServer({ store, logger, host: HOST, port, domain: 'consul' }))!
    assert.ok(server)
    assert.equal(server.port, port)
  })
  after(async () => {
    await server?.close()
    await store.close()
  })

  it('is disabled by port 0', async () => {
    assert.equal(await startDnsServer({ store, logger, host: HOST, port: 0, domain: 'consul' }), undefined)
  })

  it('answers A with one record per live IPv4 instance (not down, not hostnames, not IPv6), case-insensitively, TTL 0', async () => {
    const answer = (await udp(port, query('PrOdUcT.service.Consul', 'A')))!
    assert.equal(answer.rcode, 'NOERROR')
    assert.ok(answer.flag_aa)
    assert.deepEqual(answer.answers?.map((a) => (a.type === 'A' ? a.data : a.type)).sort(), ['10.0.0.1', '10.0.0.2', '10.0.0.3'])
    assert.ok(answer.answers?.every((a) => a.type === 'A' && a.ttl === 0 && a.name === 'PrOdUcT.service.Consul'))
    const aaaa = (await udp(port, query('product.service.consul', 'AAAA')))!
    assert.deepEqual(
      aaaa.answers?.map((a) => a.type === 'AAAA' && a.data),
      ['fd00::5'],
    )
  })

  for (const name of ['product.service.consul', '_product._tcp.service.consul']) {
    it(`answers SRV for ${name}: priority 1, weight 1, the URL's port, .addr. targets with their A in the additional section`, async () => {
      // dns-packet does not compress names: five SRV records with their targets pass 512 bytes,
      // so this asks as dig and HAProxy do, with EDNS.
      const answer = (await udp(port, query(name, 'SRV', { additionals: [EDNS] })))!
      assert.equal(answer.rcode, 'NOERROR')
      assert.equal(answer.flag_tc, false)
      const srv = (answer.answers ?? []).flatMap((a) => (a.type === 'SRV' ? [a.data] : []))
      assert.deepEqual(
        srv.map((s) => `${s.priority} ${s.weight} ${s.port} ${s.target}`).sort(),
        [
          '1 1 443 0a000003.addr.consul',
          '1 1 80 0a000002.addr.consul',
          '1 1 8081 0a000001.addr.consul',
          '1 1 8085 product.internal',
          `1 1 8086 ${hexOf('fd00::5')}.addr.consul`,
        ].sort(),
      )
      const additional = new Map((answer.additionals ?? []).flatMap((a) => (a.type === 'A' || a.type === 'AAAA' ? [[a.name, a.data]] : [])))
      assert.equal(additional.get('0a000001.addr.consul'), '10.0.0.1')
      assert.equal(additional.get('0a000002.addr.consul'), '10.0.0.2')
      assert.equal(additional.get('0a000003.addr.consul'), '10.0.0.3')
      assert.equal(additional.get('fd000000000000000000000000000005.addr.consul'), 'fd00::5')
      assert.equal(additional.size, 4)
    })
  }

  it('gives every SRV record its own additional record, even for instances sharing an IP (HAProxy pairs them)', async () => {
    await store.register({ service_name: 'pair', url: 'http://10.9.9.9:1001' })
    await store.register({ service_name: 'pair', url: 'http://10.9.9.9:1002' })
    const answer = (await udp(port, query('_pair._tcp.service.consul', 'SRV')))!
    assert.deepEqual((answer.answers ?? []).map((a) => (a.type === 'SRV' ? `${a.data.port} ${a.data.target}` : a.type)).sort(), [
      '1001 0a090909.addr.consul',
      '1002 0a090909.addr.consul',
    ])
    assert.deepEqual(
      (answer.additionals ?? []).map((a) => `${a.name} ${a.type === 'A' ? a.data : a.type}`),
      ['0a090909.addr.consul 10.9.9.9', '0a090909.addr.consul 10.9.9.9'],
    )
    // A and ANY answer the address once.
    assert.equal((await udp(port, query('pair.service.consul', 'A')))!.answers?.length, 1)
  })

  it('answers A (and AAAA) for .addr. names', async () => {
    const a = (await udp(port, query('0A000001.addr.consul', 'A')))!
    assert.equal(a.rcode, 'NOERROR')
    assert.deepEqual(
      a.answers?.map((r) => r.type === 'A' && r.data),
      ['10.0.0.1'],
    )
    const aaaa = (await udp(port, query('fd000000000000000000000000000005.addr.consul', 'AAAA')))!
    assert.deepEqual(
      aaaa.answers?.map((r) => r.type === 'AAAA' && r.data),
      ['fd00::5'],
    )
    // The name exists, but has no AAAA: NOERROR and nothing (NODATA), with the SOA.
    const none = (await udp(port, query('0a000001.addr.consul', 'AAAA')))!
    assert.equal(none.rcode, 'NOERROR')
    assert.equal(none.answers?.length, 0)
    assert.equal(none.authorities?.[0]?.type, 'SOA')
  })

  it('answers NXDOMAIN (with the SOA) for an unknown service, a service with no live instance, or an unknown name', async () => {
    await store.register({ service_name: 'sleepy', url: 'http://10.0.0.9:80', status: 'starting' })
    for (const name of ['nothing.service.consul', 'sleepy.service.consul', '_nothing._tcp.service.consul', 'what.node.consul', 'zz.addr.consul']) {
      const answer = (await udp(port, query(name, 'SRV')))!
      assert.equal(answer.rcode, 'NXDOMAIN', name)
      assert.equal(answer.authorities?.[0]?.type, 'SOA', name)
      assert.equal(answer.authorities?.[0]?.name, 'consul', name)
    }
  })

  it('refuses names outside its domain', async () => {
    for (const name of ['example.com', 'product.service.consul.example.com', 'notconsul']) {
      const answer = (await udp(port, query(name, 'A')))!
      assert.equal(answer.rcode, 'REFUSED', name)
      assert.equal(answer.answers?.length, 0)
    }
  })

  it('truncates a UDP answer beyond 512 bytes (TC set, what fits), answers in full over TCP and with a large EDNS size', async () => {
    const udpAnswer = (await udp(port, query('many.service.consul', 'SRV')))!
    assert.ok(udpAnswer.flag_tc, 'TC set')
    assert.equal(udpAnswer.rcode, 'NOERROR')
    const partial = udpAnswer.answers?.length ?? 0
    assert.ok(partial > 0 && partial < 60, `${partial} answers fit`)
    assert.ok(dnsPacket.encode(udpAnswer).length <= 512)

    const { answers } = await tcp(port, framed(query('many.service.consul', 'SRV')), 1)
    const full = answers[0]!
    assert.equal(full.flag_tc, false)
    assert.equal(full.answers?.length, 60)
    assert.equal(full.additionals?.length, 60)

    // A larger EDNS size is honoured up to 4096 bytes, not beyond (a UDP answer to a forged
    // source must not make the registry an amplifier): more than without EDNS, still truncated.
    const edns = (await udp(port, query('many.service.consul', 'SRV', { additionals: [{ type: 'OPT', name: '.', udpPayloadSize: 8192 } as dnsPacket.OptAnswer] })))!
    assert.equal(edns.flag_tc, true)
    assert.ok((edns.answers?.length ?? 0) > partial, `${edns.answers?.length} answers with EDNS, ${partial} without`)
    assert.ok(dnsPacket.encode(edns).length <= 4096)
    assert.ok(edns.additionals?.some((a) => a.type === 'OPT'))
  })

  it('disconnects a TCP client that sends queries and never reads the answers', async () => {
    const socket = connect(port, '127.0.0.1')
    await new Promise((resolve) => socket.once('connect', resolve))
    socket.pause()
    socket.on('error', () => {})
    // 3000 queries whose answers are about 6 KB each (18 MB): more than the kernel buffers and the
    // registry's allowance together.
    const query60 = framed(query('many.service.consul', 'SRV'))
    const queries = 3000
    for (let n = 0; n < queries; n++) socket.write(query60)
    const oneAnswer = (await tcp(port, query60, 1)).answers[0]!
    const expected = queries * (dnsPacket.encode(oneAnswer).length + 2)
    // Let the registry fill what it may, then read: the connection ends before every answer came.
    await new Promise((resolve) => setTimeout(resolve, 1500))
    let received = 0
    socket.on('data', (chunk: Buffer) => {
      received += chunk.length
    })
    socket.resume()
    const outcome = await Promise.race([
      new Promise((resolve) => socket.once('close', () => resolve('closed'))),
      new Promise((resolve) => setTimeout(resolve, 10_000, 'still open')),
    ])
    socket.destroy()
    assert.equal(outcome, 'closed')
    assert.ok(received < expected, `received ${received} of ${expected} bytes`)
  })

  it('answers several queries on one TCP connection', async () => {
    const payload = Buffer.concat([framed(query('product.service.consul', 'A')), framed(query('example.org', 'A')), framed(query('_product._tcp.service.consul', 'SRV'))])
    const { answers } = await tcp(port, payload, 3)
    assert.deepEqual(
      answers.map((a) => a.rcode),
      ['NOERROR', 'REFUSED', 'NOERROR'],
    )
    assert.equal(answers[2]!.answers?.length, 5)
  })

  it('ignores garbage over UDP, closes a TCP connection that sends it, and keeps answering', async () => {
    const before = lines.length
    assert.equal(await udp(port, Buffer.from([1, 2, 3]), 300), undefined)
    assert.equal(await udp(port, Buffer.alloc(0), 300), undefined)
    // A header that promises a question which is not there.
    assert.equal(await udp(port, Buffer.from([0, 1, 0, 0, 0, 1, 0, 0, 0, 0, 0, 0]), 300), undefined)
    // A response is never answered (no loops).
    assert.equal(await udp(port, dnsPacket.encode({ ...query('product.service.consul', 'A'), type: 'response' }), 300), undefined)
    const closed = await tcp(port, Buffer.concat([Buffer.from([0, 3]), Buffer.from([9, 9, 9])]), 0)
    assert.ok(closed.closed)
    assert.equal(closed.answers.length, 0)
    assert.ok(lines.slice(before).some((line) => line.event === 'dns_malformed' && line.level === 'debug'))
    const still = (await udp(port, query('product.service.consul', 'A')))!
    assert.equal(still.rcode, 'NOERROR')
  })

  it('follows the store: a deregistered instance leaves the answer', async () => {
    await store.deregister({ service_name: 'product', url: 'http://10.0.0.2' })
    const answer = (await udp(port, query('product.service.consul', 'A')))!
    assert.deepEqual(answer.answers?.map((a) => a.type === 'A' && a.data).sort(), ['10.0.0.1', '10.0.0.3'])
  })

  it('fails to start, naming REGISTRY_DNS_PORT, when the port is taken', async () => {
    const { logger: log, lines: logged } = capturingLogger('debug')
    await assert.rejects(startDnsServer({ store, logger: log, host: HOST, port, domain: 'consul' }), /REGISTRY_DNS_PORT \d+ is in use/)
    assert.ok(logged.some((line) => line.event === 'dns_bind_failed' && line.level === 'error' && String(line.msg).includes(`REGISTRY_DNS_PORT ${port}`)))
  })

  it('closes idle TCP connections and refuses beyond its connection limit', async () => {
    const [other] = (await freePorts(1)) as [number]
    const small = (await startDnsServer({ store, logger, host: HOST, port: other, domain: 'consul', tcpIdleTimeoutMs: 200, maxTcpConnections: 1 }))!
    try {
      const first = connect(other, HOST)
      const firstClosed = new Promise<number>((resolve) => first.on('close', () => resolve(Date.now())))
      await new Promise((resolve) => first.once('connect', resolve))
      const started = Date.now()
      // The second connection is accepted by the kernel, then closed by the server (limit 1).
      const second = await tcp(other, framed(query('product.service.consul', 'A')), 1, 2000)
      assert.ok(second.closed)
      assert.equal(second.answers.length, 0)
      const closedAt = await Promise.race([firstClosed, new Promise<number>((_, reject) => setTimeout(() => reject(new Error('idle connection kept')), 3000))])
      assert.ok(closedAt - started < 2500)
    } finally {
      await small.close()
    }
  })
})

describe('registry DNS before the store has loaded', () => {
  it('answers SERVFAIL, not NXDOMAIN (which resolvers would cache)', () => {
    const notLoaded = { status: () => ({ ready: false, stale: true, detail: 'loading' }) } as unknown as ConstructorParameters<typeof DnsAnswerer>[0]
    const answerer = new DnsAnswerer(notLoaded, 'consul')
    const response = answerer.respond(dnsPacket.encode(query('product.service.consul', 'A')), 'udp', () => {})
    assert.ok(response)
    assert.equal((dnsPacket.decode(response) as Reply).rcode, 'SERVFAIL')
  })
})
