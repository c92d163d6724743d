// The registry's DNS interface, as Consul's: `<service>.service.<domain>` (A, AAAA, SRV) and
// `_<service>._tcp.service.<domain>` (SRV, RFC 2782) answer the live instances `discover` returns;
// SRV targets are `<hex ip>.addr.<domain>`, whose A (AAAA) records ride in the additional section
// and are answered on their own too. UDP (512 bytes, or the client's EDNS size, else TC) and TCP
// (length-prefixed, bounded: idle timeout, connection limit). TTL 0, as Consul's default: a
// resolver asks again rather than keeps a departed instance.
import { createSocket, type RemoteInfo, type Socket as UdpSocket } from 'node:dgram'
import { isIPv4, isIPv6, createServer as createTcpServer, type Server as TcpServer, type Socket as TcpSocket } from 'node:net'
import * as dnsPacket from 'dns-packet'
import type { Logger } from '../lib/logger.ts'
import type { InstanceRecord, RegistryStore } from './store.ts'

export interface DnsOptions {
  store: RegistryStore
  logger: Logger
  host: string
  /** REGISTRY_DNS_PORT: UDP and TCP; 0 disables. */
  port: number
  /** REGISTRY_DNS_DOMAIN, e.g. `consul`: names are `<service>.service.<domain>`. */
  domain: string
  /** TCP connections idle longer than this are closed (default 10 s). */
  tcpIdleTimeoutMs?: number
  /** TCP connections beyond this are refused (default 100). */
  maxTcpConnections?: number
}

export interface DnsServer {
  /** The port bound (UDP and TCP). */
  readonly port: number
  close(): Promise<void>
}

/** Every record's TTL: 0, as Consul's default (resolvers such as HAProxy keep their own hold times). */
export const DNS_TTL_SECONDS = 0
/**
 * A UDP answer without EDNS fits 512 bytes (RFC 1035); with EDNS, what the client offers, at most
 * this (what the registry itself advertises). Not more: UDP answers go to whatever source address
 * a packet claims, and a large one to a forged address makes the registry an amplifier.
 */
const MAX_UDP_PAYLOAD = 4096
const MAX_TCP_MESSAGE = 65_535
/** Answers a TCP client may leave unread before it is disconnected. */
const MAX_TCP_UNREAD_BYTES = 1024 * 1024

const RCODE = { NOERROR: 0, FORMERR: 1, SERVFAIL: 2, NXDOMAIN: 3, NOTIMP: 4, REFUSED: 5 } as const

export interface Resolution {
  rcode: number
  answers: dnsPacket.Answer[]
  additionals: dnsPacket.Answer[]
  /** The SOA, for NXDOMAIN and empty (NODATA) answers. */
  withSoa: boolean
}

/** Serves A, AAAA and SRV records of live instances; undefined when disabled (port 0). */
export async function startDnsServer(options: DnsOptions): Promise<DnsServer | undefined> {
  if (options.port === 0) return undefined
  const { logger, host, port } = options
  const answerer = new DnsAnswerer(options.store, options.domain)
  const udp = createSocket({ type: isIPv6(host) ? 'udp6' : 'udp4' })
  const tcp = createTcpServer()
  tcp.maxConnections = options.maxTcpConnections ?? 100
  const connections = new Set<TcpSocket>()
  try {
    await new Promise<void>((resolve, reject) => {
      udp.once('error', reject)
      udp.bind({ port, address: host, exclusive: true }, () => {
        udp.off('error', reject)
        resolve()
      })
    })
    await new Promise<void>((resolve, reject) => {
      tcp.once('error', reject)
      tcp.listen({ port, host }, () => {
        tcp.off('error', reject)
        resolve()
      })
    })
  } catch (error) {
    await closeQuietly(udp, tcp)
    const code = (error as NodeJS.ErrnoException).code
    const why = code === 'EADDRINUSE' ? 'is in use' : `cannot be bound (${code ?? String(error)})`
    const message = `REGISTRY_DNS_PORT ${port} ${why} on ${host} (UDP or TCP): free it, choose another port, or set REGISTRY_DNS_PORT=0 to disable DNS`
    logger.error({ event: 'dns_bind_failed', port, host, code }, message)
    throw new Error(message, { cause: error })
  }

  udp.on('error', (error) => logger.warn({ event: 'dns_udp_error', err: error }, 'DNS UDP socket error'))
  // Whatever a packet holds, answering it must not take the registry down: a fault here is logged.
  const respond = (message: Buffer, transport: 'udp' | 'tcp', peer: string | undefined): Buffer | undefined => {
    try {
      return answerer.respond(message, transport, (detail) =>
        logger.debug({ event: 'dns_malformed', transport, peer, detail }, transport === 'udp' ? 'malformed DNS query ignored' : 'malformed DNS query: connection closed'),
      )
    } catch (error) {
      logger.error({ event: 'dns_answer_failed', transport, peer, err: error }, 'could not answer a DNS query')
      return undefined
    }
  }
  udp.on('message', (message: Buffer, peer: RemoteInfo) => {
    const response = respond(message, 'udp', peer.address)
    if (response) udp.send(response, peer.port, peer.address)
  })

  const idleMs = options.tcpIdleTimeoutMs ?? 10_000
  tcp.on('error', (error) => logger.warn({ event: 'dns_tcp_error', err: error }, 'DNS TCP server error'))
  tcp.on('connection', (socket) => {
    connections.add(socket)
    socket.setTimeout(idleMs, () => socket.destroy())
    socket.on('error', () => {})
    socket.on('close', () => connections.delete(socket))
    let pending: Buffer = Buffer.alloc(0)
    socket.on('data', (chunk: Buffer) => {
      pending = pending.length === 0 ? chunk : Buffer.concat([pending, chunk])
      while (pending.length >= 2) {
        const length = pending.readUInt16BE(0)
        if (pending.length < 2 + length) return
        const message = pending.subarray(2, 2 + length)
        pending = pending.subarray(2 + length)
        const response = respond(message, 'tcp', socket.remoteAddress)
        // Malformed, or a client that sends queries without reading the answers: cut it off.
        if (!response || socket.writableLength > MAX_TCP_UNREAD_BYTES) {
          socket.destroy()
          return
        }
        const framed = Buffer.allocUnsafe(2 + response.length)
        framed.writeUInt16BE(response.length, 0)
        response.copy(framed, 2)
        socket.write(framed)
      }
    })
  })

  logger.info({ event: 'dns_listening', host, port, domain: answerer.domain }, `DNS on ${host}:${port} (UDP and TCP) for .${answerer.domain}`)
  return {
    port,
    close: async () => {
      for (const socket of connections) socket.destroy()
      await closeQuietly(udp, tcp)
    },
  }
}

async function closeQuietly(udp: UdpSocket, tcp: TcpServer): Promise<void> {
  await Promise.all([
    new Promise<void>((resolve) => {
      try {
        udp.close(() => resolve())
      } catch {
        resolve() // never bound, or closed already
      }
    }),
    new Promise<void>((resolve) => (tcp.listening ? tcp.close(() => resolve()) : resolve())),
  ])
}

/** Turns a query into its answer: the transport-free half, for tests too. */
export class DnsAnswerer {
  readonly domain: string
  private readonly store: RegistryStore

  constructor(store: RegistryStore, domain: string) {
    this.store = store
    this.domain = domain.toLowerCase().replace(/^\.+|\.+$/g, '')
  }

  /** The encoded response, or undefined for what gets no answer (malformed, or not a query). */
  respond(message: Buffer, transport: 'udp' | 'tcp', onMalformed: (detail: string) => void): Buffer | undefined {
    let query: dnsPacket.DecodedPacket
    try {
      query = dnsPacket.decode(message)
    } catch (error) {
      onMalformed(error instanceof Error ? error.message : String(error))
      return undefined
    }
    if (query.type !== 'query') return undefined // never answer an answer (no loops between servers)
    try {
      return this.answer(query, transport)
    } catch (error) {
      onMalformed(error instanceof Error ? error.message : String(error))
      return undefined
    }
  }

  private answer(query: dnsPacket.DecodedPacket, transport: 'udp' | 'tcp'): Buffer {
    const questions = query.questions ?? []
    const opt = (query.additionals ?? []).find((record): record is dnsPacket.OptAnswer => record.type === 'OPT')
    const opcode = (query as { opcode?: string }).opcode
    const question = questions[0]
    let resolution: Resolution
    if (opcode !== 'QUERY') resolution = { rcode: RCODE.NOTIMP, answers: [], additionals: [], withSoa: false }
    else if (questions.length !== 1 || !question) resolution = { rcode: RCODE.FORMERR, answers: [], additionals: [], withSoa: false }
    // An etcd replica that has not loaded its state knows nothing yet: NXDOMAIN would be a lie
    // that resolvers cache; SERVFAIL makes them ask again (or ask another server).
    else if (!this.store.status().ready) resolution = { rcode: RCODE.SERVFAIL, answers: [], additionals: [], withSoa: false }
    else resolution = this.resolve(question.name, question.type)

    const limit = transport === 'tcp' ? MAX_TCP_MESSAGE : opt ? Math.min(Math.max(opt.udpPayloadSize ?? 512, 512), MAX_UDP_PAYLOAD) : 512
    const build = (answers: dnsPacket.Answer[], additionals: dnsPacket.Answer[], truncated: boolean): Buffer => {
      const flags = dnsPacket.AUTHORITATIVE_ANSWER | (query.flag_rd ? dnsPacket.RECURSION_DESIRED : 0) | (truncated ? dnsPacket.TRUNCATED_RESPONSE : 0) | resolution.rcode
      return dnsPacket.encode({
        type: 'response',
        id: query.id ?? 0,
        flags,
        questions: question && questions.length === 1 ? [question] : [],
        answers,
        authorities: resolution.withSoa ? [this.soa()] : [],
        additionals: opt
          ? [
              ...additionals,
              { type: 'OPT', name: '.', udpPayloadSize: 4096, extendedRcode: 0, ednsVersion: 0, flags: 0, flag_do: false, options: [] } satisfies dnsPacket.OptAnswer,
            ]
          : additionals,
      })
    }
    const full = build(resolution.answers, resolution.additionals, false)
    if (full.length <= limit) return full
    // Too big: as many answers as fit (with the additional records their SRV targets need), TC set,
    // and the client asks again over TCP.
    const fits = (count: number) => {
      const answers = resolution.answers.slice(0, count)
      // One additional record per SRV record kept (HAProxy pairs them one to one).
      const wanted = new Map<string, number>()
      for (const a of answers) if (a.type === 'SRV') wanted.set(a.data.target, (wanted.get(a.data.target) ?? 0) + 1)
      const additionals = resolution.additionals.filter((a) => {
        const left = wanted.get(a.name) ?? 0
        if (left > 0) wanted.set(a.name, left - 1)
        return left > 0
      })
      const encoded = build(answers, additionals, true)
      return encoded.length <= limit ? encoded : undefined
    }
    let low = 0
    let high = resolution.answers.length - 1
    let best = fits(0) ?? build([], [], true)
    while (low < high) {
      const middle = Math.ceil((low + high) / 2)
      const encoded = fits(middle)
      if (encoded) {
        best = encoded
        low = middle
      } else high = middle - 1
    }
    return best
  }

  /** What a name and type answer; names compare case-insensitively. */
  resolve(queryName: string, type: string): Resolution {
    const name = queryName.toLowerCase().replace(/\.+$/, '')
    const domain = this.domain
    const nodata: Resolution = { rcode: RCODE.NOERROR, answers: [], additionals: [], withSoa: true }
    const nxdomain: Resolution = { rcode: RCODE.NXDOMAIN, answers: [], additionals: [], withSoa: true }
    if (name !== domain && !name.endsWith(`.${domain}`)) return { rcode: RCODE.REFUSED, answers: [], additionals: [], withSoa: false }
    if (name === domain) return type === 'SOA' || type === 'ANY' ? { ...nodata, answers: [this.soa()], withSoa: false } : nodata
    const rest = name.slice(0, -domain.length - 1)

    const addr = /^([0-9a-f]{8}|[0-9a-f]{32})\.addr$/.exec(rest)
    if (addr) {
      const ip = ipFromHex(addr[1]!)
      const record = addressRecord(queryName, ip)
      return type === record.type || type === 'ANY' ? { ...nodata, answers: [record], withSoa: false } : nodata
    }

    const service = /^(?:_(.+)\._tcp|(.+))\.service$/.exec(rest)
    if (!service) return nxdomain
    const serviceName = service[1] ?? service[2]!
    const instances = this.store.discover(serviceName).instances
    if (instances.length === 0) return nxdomain
    const endpoints = instances.map(endpointOf).filter((e) => e !== undefined)

    if (type === 'SRV') {
      const answers: dnsPacket.Answer[] = []
      const additionals: dnsPacket.Answer[] = []
      for (const endpoint of endpoints) {
        const ip = endpoint.ipv4 ?? endpoint.ipv6
        const target = ip === undefined ? endpoint.host : `${hexOf(ip)}.addr.${domain}`
        answers.push({ type: 'SRV', name: queryName, ttl: DNS_TTL_SECONDS, data: { priority: 1, weight: 1, port: endpoint.port, target } })
        // Every SRV record gets its target's address, even when an earlier one had the same target
        // (instances on one IP, different ports): HAProxy pairs SRV and additional records one to
        // one, and would leave all but one of them unresolved.
        if (ip !== undefined) additionals.push(addressRecord(target, ip))
      }
      return { rcode: RCODE.NOERROR, answers, additionals, withSoa: answers.length === 0 }
    }
    if (type === 'A' || type === 'AAAA' || type === 'ANY') {
      const ips = new Set<string>()
      for (const endpoint of endpoints) {
        if (type !== 'AAAA' && endpoint.ipv4) ips.add(endpoint.ipv4)
        if (type !== 'A' && endpoint.ipv6) ips.add(endpoint.ipv6)
      }
      const answers = [...ips].map((ip) => addressRecord(queryName, ip))
      return { rcode: RCODE.NOERROR, answers, additionals: [], withSoa: answers.length === 0 }
    }
    return nodata
  }

  private soa(): dnsPacket.SoaAnswer {
    return {
      type: 'SOA',
      name: this.domain,
      ttl: DNS_TTL_SECONDS,
      data: {
        mname: `ns.${this.domain}`,
        rname: `hostmaster.${this.domain}`,
        serial: Math.floor(Date.now() / 1000) >>> 0,
        refresh: 3600,
        retry: 600,
        expire: 86_400,
        minimum: 0,
      },
    }
  }
}

interface Endpoint {
  /** The URL's host when it is not an IP literal (an SRV target as is; no A record). */
  host: string
  ipv4: string | undefined
  ipv6: string | undefined
  port: number
}

function endpointOf(instance: InstanceRecord): Endpoint | undefined {
  let url: URL
  try {
    url = new URL(instance.url)
  } catch {
    return undefined
  }
  const host = url.hostname.replace(/^\[|\]$/g, '')
  const port = url.port === '' ? (url.protocol === 'https:' ? 443 : 80) : Number(url.port)
  return { host, ipv4: isIPv4(host) ? host : undefined, ipv6: isIPv6(host) ? host : undefined, port }
}

function addressRecord(name: string, ip: string): dnsPacket.StringAnswer {
  return { type: isIPv4(ip) ? 'A' : 'AAAA', name, ttl: DNS_TTL_SECONDS, data: ip }
}

/** `127.0.0.1` → `7f000001`; an IPv6 address → its 32 hex digits (as Consul's `.addr.` names). */
export function hexOf(ip: string): string {
  if (isIPv4(ip))
    return ip
      .split('.')
      .map((octet) => Number(octet).toString(16).padStart(2, '0'))
      .join('')
  return ipv6Groups(ip)
    .map((group) => group.toString(16).padStart(4, '0'))
    .join('')
}

function ipFromHex(hex: string): string {
  if (hex.length === 8) return [0, 2, 4, 6].map((i) => Number.parseInt(hex.slice(i, i + 2), 16)).join('.')
  const groups = Array.from({ length: 8 }, (_, i) => Number.parseInt(hex.slice(i * 4, i * 4 + 4), 16).toString(16))
  return groups.join(':')
}

/** The eight 16-bit groups of an IPv6 address (`::` expanded, a trailing dotted IPv4 converted). */
function ipv6Groups(ip: string): number[] {
  let text = ip.replace(/%.*$/, '')
  const v4 = /(\d+\.\d+\.\d+\.\d+)$/.exec(text)
  if (v4) {
    const [a, b, c, d] = v4[1]!.split('.').map(Number) as [number, number, number, number]
    text = `${text.slice(0, -v4[1]!.length)}${((a << 8) | b).toString(16)}:${((c << 8) | d).toString(16)}`
  }
  const [head = '', tail] = text.split('::')
  const parse = (part: string) => (part === '' ? [] : part.split(':').map((group) => Number.parseInt(group, 16)))
  const left = parse(head)
  const right = tail === undefined ? [] : parse(tail)
  return [...left, ...Array<number>(8 - left.length - right.length).fill(0), ...right]
}
