// A hand-driven HTTP/1.1 connection for tests that need to control exactly when each byte of a
// request is sent (a request held open across a shutdown, pipelined requests).
import { connect, type Socket } from 'node:net'
import { waitFor } from './wait.ts'

export interface RawResponse {
  status: number
  headers: Record<string, string>
  body: string
}

export interface RawConnection {
  socket: Socket
  /** Everything received so far (latin1). */
  received: () => string
  /** Resolves once the server closed the connection (or it broke). */
  closed: Promise<{ error: NodeJS.ErrnoException | undefined }>
  write: (text: string) => Promise<void>
  /** Waits until at least `count` complete responses arrived (1xx responses count too). */
  responses: (count: number, timeoutMs?: number) => Promise<RawResponse[]>
}

/** Parses every complete response in `data`; bodies are delimited by Content-Length. */
export function parseResponses(data: string): RawResponse[] {
  const out: RawResponse[] = []
  let rest = data
  for (;;) {
    const end = rest.indexOf('\r\n\r\n')
    if (end < 0) return out
    const [statusLine = '', ...headerLines] = rest.slice(0, end).split('\r\n')
    const match = /^HTTP\/1\.[01] (\d{3})/.exec(statusLine)
    if (!match) throw new Error(`not an HTTP response: ${JSON.stringify(statusLine)}`)
    const headers: Record<string, string> = {}
    for (const line of headerLines) {
      const colon = line.indexOf(':')
      headers[line.slice(0, colon).trim().toLowerCase()] = line.slice(colon + 1).trim()
    }
    const status = Number(match[1])
    const length = status < 200 || status === 204 || status === 304 ? 0 : Number(headers['content-length'] ?? 0)
    const bodyStart = end + 4
    if (rest.length < bodyStart + length) return out
    out.push({ status, headers, body: rest.slice(bodyStart, bodyStart + length) })
    rest = rest.slice(bodyStart + length)
  }
}

export async function rawConnect(port: number): Promise<RawConnection> {
  const socket = connect(port, '127.0.0.1')
  let data = ''
  socket.setEncoding('latin1')
  socket.on('data', (chunk: string) => (data += chunk))
  const closed = new Promise<{ error: NodeJS.ErrnoException | undefined }>((resolve) => {
    let error: NodeJS.ErrnoException | undefined
    socket.on('error', (e: NodeJS.ErrnoException) => (error = e))
    socket.on('close', () => resolve({ error }))
  })
  await new Promise<void>((resolve, reject) => {
    socket.once('connect', () => resolve())
    socket.once('error', reject)
  })
  return {
    socket,
    received: () => data,
    closed,
    write: (text) => new Promise<void>((resolve, reject) => socket.write(text, 'latin1', (error) => (error ? reject(error) : resolve()))),
    responses: (count, timeoutMs = 10_000) =>
      waitFor(
        () => {
          const parsed = parseResponses(data)
          return parsed.length >= count ? parsed : undefined
        },
        { timeoutMs, intervalMs: 10, what: `${count} HTTP responses` },
      ).catch((error: unknown) => {
        throw new Error(`${error instanceof Error ? error.message : String(error)}; received ${JSON.stringify(data.slice(0, 500))}`)
      }),
  }
}

/** Resolves true once a new TCP connection to the port is refused (the listener is closed). */
export function connectionRefused(port: number): Promise<boolean> {
  return new Promise((resolve) => {
    const socket = connect(port, '127.0.0.1')
    socket.once('connect', () => {
      socket.destroy()
      resolve(false)
    })
    socket.once('error', (error: NodeJS.ErrnoException) => resolve(error.code === 'ECONNREFUSED'))
  })
}
