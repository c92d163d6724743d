import { createServer, connect, type Server, type Socket } from 'node:net'
import type { AddressInfo } from 'node:net'

/** A TCP proxy on a free local port that a test can cut (refuse and drop) and restore. */
export async function startTcpProxy(targetPort: number, targetHost = '127.0.0.1') {
  const sockets = new Set<Socket>()
  const pairs = new Set<[Socket, Socket]>()
  let server: Server | undefined
  let port = 0

  const listen = async () => {
    server = createServer((client) => {
      const upstream = connect(targetPort, targetHost)
      for (const socket of [client, upstream]) {
        sockets.add(socket)
        socket.on('close', () => sockets.delete(socket))
        socket.on('error', () => {
          client.destroy()
          upstream.destroy()
        })
      }
      client.pipe(upstream).pipe(client)
      const pair: [Socket, Socket] = [client, upstream]
      pairs.add(pair)
      client.on('close', () => pairs.delete(pair))
    })
    await new Promise<void>((resolve) => server!.listen(port, '127.0.0.1', resolve))
    port = (server.address() as AddressInfo).port
  }

  await listen()
  return {
    get port() {
      return port
    },
    /** Refuses new connections and drops the open ones, as a stopped database would. */
    cut: async () => {
      const closing = new Promise((resolve) => server?.close(resolve))
      for (const socket of sockets) socket.destroy()
      await closing
    },
    restore: listen,
    /**
     * The open connections go silent: kept open, nothing forwarded either way, as a database host
     * lost from the network (or a failover) leaves them. New connections go through.
     */
    silenceOpen: () => {
      for (const [client, upstream] of pairs) {
        client.unpipe(upstream)
        upstream.unpipe(client)
        client.pause()
        upstream.pause()
      }
      pairs.clear()
    },
    close: async () => {
      const closing = new Promise((resolve) => server?.close(resolve))
      for (const socket of sockets) socket.destroy()
      await closing
    },
  }
}
