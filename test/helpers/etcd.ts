// Real etcd clusters (one or three members) for integration tests: free loopback ports, a
// temporary data dir per member, members that can be killed and restarted, and cleanup that
// leaves no process and no directory behind.
import { type ChildProcess, spawn } from 'node:child_process'
import { randomBytes } from 'node:crypto'
import { accessSync, constants } from 'node:fs'
import { mkdtemp, rm } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import { delimiter, join } from 'node:path'
import { createInterface } from 'node:readline'
import { freePorts } from './system.ts'
import { waitFor } from './wait.ts'

export interface EtcdMember {
  name: string
  clientUrl: string
  peerUrl: string
  dataDir: string
  /** True from spawn until the process has exited. */
  running: boolean
  /** The pid of the member's current (or last) process. */
  pid: number | undefined
  /** The member's last output lines (stdout and stderr, bounded), across restarts. */
  output: string[]
}

export interface EtcdCluster {
  members: EtcdMember[]
  /** client URLs of all members, comma-separated, as ETCD_ENDPOINTS takes them */
  endpoints: string
  /** kill -9 one member (by index) and wait until its process has exited */
  kill(index: number): Promise<void>
  /**
   * The index of the leader, once every running member names the same running member as leader
   * (polled with a deadline, 10 s by default: an election after a leader dies takes 1-2 s).
   */
  leader(timeoutMs?: number): Promise<number>
  /** start a killed member again with its same data dir and ports (initial-cluster-state existing) and wait until it serves */
  restart(index: number): Promise<void>
  /** stop every member (SIGTERM then SIGKILL after a deadline) and remove the data dirs */
  close(): Promise<void>
}

export interface StartEtcdOptions {
  members?: 1 | 3
  /** Names the cluster in its token and its temp dirs (helps when reading a failure). */
  name?: string
  /** How long each member may take to report healthy; 20 s by default. */
  readyTimeoutMs?: number
}

// Far above what a cluster on loopback needs (well under a second), far below the test timeouts.
const READY_TIMEOUT_MS = 20_000
// etcd shuts down in milliseconds on SIGTERM; this only bounds a stuck one.
const STOP_TIMEOUT_MS = 5_000
const OUTPUT_LINES_KEPT = 200
const OUTPUT_LINES_SHOWN = 40
// A port can be taken between freePorts releasing it and etcd binding it; then the cluster
// starts again on new ports.
const START_ATTEMPTS = 3

const running = new Set<ChildProcess>()
// A last resort when a test file ends without `close` (a crash, a failed `before`): members
// must not outlive the test process, they would hold ports and data dirs.
process.on('exit', () => {
  for (const child of running) child.kill('SIGKILL')
})

/** The etcd binary: /usr/bin/etcd (Debian's package), else the first `etcd` on PATH. */
function etcdBinary(): string | undefined {
  const candidates = [
    '/usr/bin/etcd',
    ...(process.env.PATH ?? '')
      .split(delimiter)
      .filter(Boolean)
      .map((dir) => join(dir, 'etcd')),
  ]
  return candidates.find((path) => {
    try {
      accessSync(path, constants.X_OK)
      return true
    } catch {
      return false
    }
  })
}

/** Whether an etcd binary is installed, so that a test file can skip with a clear message. */
export function etcdAvailable(): boolean {
  return etcdBinary() !== undefined
}

/**
 * The parent's environment without ETCD_* and ETCDCTL_* variables: etcd reads ETCD_<FLAG> as
 * flags, so a developer's own settings would change (or break) the test cluster. Kept:
 * ETCD_UNSUPPORTED_ARCH, without which etcd 3.4 refuses to run on arm64.
 */
function cleanEnv(): NodeJS.ProcessEnv {
  const leaks = (key: string) => (key.startsWith('ETCD_') && key !== 'ETCD_UNSUPPORTED_ARCH') || key.startsWith('ETCDCTL_')
  return Object.fromEntries(Object.entries(process.env).filter(([key]) => !leaks(key)))
}

/** A member that did not come up; the message ends with the member's last output lines. */
class MemberStartError extends Error {}
/** A member that could not bind its port: another process took it after freePorts released it. */
class PortTakenError extends MemberStartError {}

interface MemberState {
  member: EtcdMember
  child?: ChildProcess
  exited?: Promise<void>
}

/** Starts a cluster of `members` (1 by default) and resolves once every member reports healthy. */
export async function startEtcd(options: StartEtcdOptions = {}): Promise<EtcdCluster> {
  const binary = etcdBinary()
  if (!binary) throw new Error('etcd is not installed (no /usr/bin/etcd and no etcd on PATH)')
  for (let attempt = 1; ; attempt++) {
    try {
      return await startCluster(binary, options)
    } catch (error) {
      if (attempt >= START_ATTEMPTS || !(error instanceof PortTakenError)) throw error
    }
  }
}

async function startCluster(binary: string, options: StartEtcdOptions): Promise<EtcdCluster> {
  const count = options.members ?? 1
  const clusterName = options.name ?? 'etcd'
  const readyTimeoutMs = options.readyTimeoutMs ?? READY_TIMEOUT_MS
  // A token of its own per cluster: members of two clusters started by parallel test files
  // could otherwise accept each other's peer messages if a port were reused.
  const token = `${clusterName}-${process.pid}-${randomBytes(4).toString('hex')}`
  const ports = await freePorts(2 * count)
  const states: MemberState[] = []
  for (let i = 0; i < count; i++) {
    const dataDir = await mkdtemp(join(tmpdir(), `msa-etcd-${clusterName}-m${i}-`))
    states.push({
      member: {
        name: `m${i}`,
        clientUrl: `http://127.0.0.1:${ports[2 * i]}`,
        peerUrl: `http://127.0.0.1:${ports[2 * i + 1]}`,
        dataDir,
        running: false,
        pid: undefined,
        output: [],
      },
    })
  }
  const initialCluster = states.map(({ member }) => `${member.name}=${member.peerUrl}`).join(',')

  const spawnMember = (state: MemberState, clusterState: 'new' | 'existing') => {
    const { member } = state
    // biome-ignore format: one flag and its value a line
    const args = [
      '--name', member.name,
      '--data-dir', member.dataDir,
      '--listen-client-urls', member.clientUrl,
      '--advertise-client-urls', member.clientUrl,
      '--listen-peer-urls', member.peerUrl,
      '--initial-advertise-peer-urls', member.peerUrl,
      '--initial-cluster', initialCluster,
      '--initial-cluster-state', clusterState,
      '--initial-cluster-token', token,
      // etcd's defaults (100 ms, 1 s) already suit loopback; spelled out because the tests'
      // timings (how soon a leader is lost and found again) depend on them.
      '--heartbeat-interval', '100',
      '--election-timeout', '1000',
      // Keeps a member that restarts from disrupting a leader that still has quorum.
      '--pre-vote',
      '--logger', 'zap',
      '--log-outputs', 'stderr',
      '--log-level', 'warn',
      // Tests write little; a small quota bounds the disk a runaway test could fill.
      '--quota-backend-bytes', String(64 * 1024 * 1024),
    ]
    const child = spawn(binary, args, { env: cleanEnv(), stdio: ['ignore', 'pipe', 'pipe'], detached: false })
    running.add(child)
    member.running = true
    member.pid = child.pid
    const onLine = (line: string) => {
      member.output.push(line)
      if (member.output.length > OUTPUT_LINES_KEPT) member.output.splice(0, member.output.length - OUTPUT_LINES_KEPT)
      if (process.env.TEST_VERBOSE) process.stderr.write(`[etcd ${clusterName}/${member.name}] ${line}\n`)
    }
    createInterface({ input: child.stdout! }).on('line', onLine)
    createInterface({ input: child.stderr! }).on('line', onLine)
    // A spawn that fails (the binary went away) ends in 'close' too; the message joins the output.
    child.on('error', (error) => onLine(`spawn failed: ${error.message}`))
    state.child = child
    state.exited = new Promise<void>((resolve) => {
      // 'close' rather than 'exit': by then the output pipes are drained, so an error message
      // built after it holds the member's last words.
      child.once('close', () => {
        running.delete(child)
        member.running = false
        resolve()
      })
    })
  }

  const describeFailure = (state: MemberState, reason: string) => {
    const tail = state.member.output.slice(-OUTPUT_LINES_SHOWN).join('\n')
    const message = `etcd ${clusterName}/${state.member.name} (${state.member.clientUrl}) ${reason}; its last output:\n${tail || '(none)'}`
    return tail.includes('address already in use') ? new PortTakenError(message) : new MemberStartError(message)
  }

  /** Resolves once the member reports healthy; rejects, with its output, if it exits or the deadline passes. */
  const waitHealthy = async (state: MemberState) => {
    const child = state.child!
    const exitedEarly = state.exited!.then(() => {
      throw describeFailure(state, `exited (code ${child.exitCode}, signal ${child.signalCode}) before it was healthy`)
    })
    exitedEarly.catch(() => {})
    try {
      await Promise.race([
        waitFor(() => etcdHealthy(state.member.clientUrl), { timeoutMs: readyTimeoutMs, intervalMs: 50, what: `etcd ${state.member.name} to be healthy` }),
        exitedEarly,
      ])
    } catch (error) {
      if (error instanceof MemberStartError) throw error
      throw describeFailure(state, error instanceof Error ? error.message : String(error))
    }
  }

  const stop = async (state: MemberState, signal: NodeJS.Signals, timeoutMs: number) => {
    const { child, exited } = state
    if (!child || !exited || !state.member.running) return
    child.kill(signal)
    const timer = setTimeout(() => child.kill('SIGKILL'), timeoutMs)
    await exited
    clearTimeout(timer)
  }

  let closed: Promise<void> | undefined
  const close = () => {
    closed ??= (async () => {
      // One at a time: a leader that stops hands its leadership to a connected peer first and
      // waits (up to 7 s) for it to take over, which never happens if that peer stops too. Stopped
      // in turn, a leader's peers are either up (the handover takes milliseconds) or gone (it
      // skips the handover).
      for (const state of states) await stop(state, 'SIGTERM', STOP_TIMEOUT_MS)
      await Promise.all(states.map(({ member }) => rm(member.dataDir, { recursive: true, force: true })))
    })()
    return closed
  }

  const at = (index: number) => {
    const state = states[index]
    if (!state) throw new Error(`no etcd member ${index} (the cluster has ${states.length})`)
    return state
  }

  // The members start together: none of a three-member cluster can elect a leader alone.
  for (const state of states) spawnMember(state, 'new')
  try {
    await Promise.all(states.map(waitHealthy))
  } catch (error) {
    await close()
    throw error
  }

  return {
    members: states.map(({ member }) => member),
    endpoints: states.map(({ member }) => member.clientUrl).join(','),
    kill: (index) => stop(at(index), 'SIGKILL', STOP_TIMEOUT_MS),
    leader: (timeoutMs = 10_000) =>
      waitFor(
        async () => {
          const up = states.filter(({ member }) => member.running)
          const statuses = await Promise.all(up.map(({ member }) => memberStatus(member.clientUrl)))
          const leaderId = statuses[0]?.leader
          if (!leaderId || statuses.some((status) => status.leader !== leaderId)) return undefined
          const index = statuses.findIndex((status) => status.memberId === leaderId)
          // An object: waitFor takes a falsy value (index 0) for "not yet".
          return index === -1 ? undefined : { index: states.indexOf(up[index]!) }
        },
        { timeoutMs, intervalMs: 50, what: `the running members of etcd ${clusterName} to agree on a leader` },
      ).then(({ index }) => index),
    restart: async (index) => {
      const state = at(index)
      if (closed) throw new Error('the etcd cluster is closed')
      if (state.member.running) throw new Error(`etcd member ${index} is still running: kill it first`)
      // With a data dir that holds a member, etcd ignores the initial-cluster flags and rejoins
      // as that member; were it empty, `existing` would have it fetch the cluster from its peers
      // rather than bootstrap a second cluster.
      spawnMember(state, 'existing')
      await waitHealthy(state)
    },
    close,
  }
}

/**
 * Whether a member answers etcd 3.4's /health with {"health":"true"}: it knows a leader and a
 * read through raft succeeds, so it needs a quorum. Without one it answers 503 {"health":"false"}
 * (after up to 1 s while it still believes in its leader). Throws when the member is unreachable.
 */
export async function etcdHealthy(clientUrl: string): Promise<boolean> {
  const response = await fetch(`${clientUrl}/health`, { signal: AbortSignal.timeout(2_000) })
  if (response.status !== 200) {
    await response.body?.cancel()
    return false
  }
  const body = (await response.json()) as { health?: string }
  return body.health === 'true'
}

/** A member's own id and the id of the leader it follows (undefined while it knows none). */
async function memberStatus(clientUrl: string): Promise<{ memberId: string | undefined; leader: string | undefined }> {
  const response = await fetch(`${clientUrl}/v3/maintenance/status`, { method: 'POST', body: '{}', signal: AbortSignal.timeout(2_000) })
  if (response.status !== 200) throw new Error(`${clientUrl}/v3/maintenance/status answered ${response.status}: ${await response.text()}`)
  // The JSON gateway writes 64-bit ids as decimal strings and leaves out zero fields.
  const body = (await response.json()) as { header?: { member_id?: string }; leader?: string }
  return { memberId: body.header?.member_id, leader: body.leader }
}
