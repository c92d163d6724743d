// The images the Compose test cannot pull (no container registry is reachable here): Node,
// PostgreSQL, etcd and Prometheus, built locally and kept between runs: a tag carries a hash of everything that
// goes into the image, so a run rebuilds only when its recipe or inputs changed.
import { createHash } from 'node:crypto'
import { existsSync, readdirSync, readFileSync, realpathSync, statSync, writeFileSync } from 'node:fs'
import { dirname, join } from 'node:path'
import { COMPOSE_DIR, REPO_ROOT, run, type Log } from './engine.ts'

const REPOSITORY = 'localhost/microservices-advanced-test'

function hash(...parts: Array<string | Buffer>): string {
  const h = createHash('sha256')
  for (const part of parts) h.update(part).update('\0')
  return h.digest('hex').slice(0, 12)
}

async function imageExists(tag: string): Promise<boolean> {
  return (await run('podman', ['image', 'exists', tag], { allowFailure: true, timeoutMs: 30_000 })).code === 0
}

/** Removes the other tags of `repository` (earlier recipes); an image still in use stays. */
async function removeOtherTags(repository: string, keep: string): Promise<void> {
  const listed = await run('podman', ['images', '--filter', `reference=${repository}`, '--format', '{{.Repository}}:{{.Tag}}'], { allowFailure: true })
  for (const tag of listed.stdout.split('\n').map((t) => t.trim())) {
    if (tag && tag !== keep && !tag.endsWith(':<none>')) await run('podman', ['rmi', tag], { allowFailure: true })
  }
}

/** The project's own Node binary (the `node` devDependency), not the machine's. */
export function projectNodeBinary(): string {
  const fromPackage = join(REPO_ROOT, 'node_modules', 'node', 'bin', 'node')
  return realpathSync(existsSync(fromPackage) ? fromPackage : process.execPath)
}

async function npmFolder(): Promise<string> {
  const found = await run('sh', ['-c', 'command -v npm'], { allowFailure: true })
  const npm = found.stdout.trim()
  if (found.code !== 0 || !npm) throw new Error('npm not found: the base image copies npm so that the image build can run npm ci')
  // .../node_modules/npm/bin/npm-cli.js -> .../node_modules/npm
  const folder = dirname(dirname(realpathSync(npm)))
  if (!existsSync(join(folder, 'bin', 'npm-cli.js'))) throw new Error(`cannot find npm's folder from ${npm}`)
  return folder
}

/** A Node 24 base image made from the project's Node binary; stands in for node:24-bookworm-slim. */
export async function ensureNodeBaseImage(log: Log, logFile: string): Promise<string> {
  const node = projectNodeBinary()
  const nodeVersion = (await run(node, ['-p', 'process.versions.node'])).stdout.trim()
  const npm = await npmFolder()
  const npmVersion = (JSON.parse(readFileSync(join(npm, 'package.json'), 'utf8')) as { version: string }).version
  const caBundle = process.env.NODE_EXTRA_CA_CERTS ?? process.env.SSL_CERT_FILE ?? '/etc/ssl/certs/ca-certificates.crt'
  const script = join(COMPOSE_DIR, 'build-node-base.sh')
  const tag = `${REPOSITORY}/node-base:${nodeVersion}-${hash(readFileSync(script), nodeVersion, String(statSync(node).size), npmVersion, existsSync(caBundle) ? readFileSync(caBundle) : '')}`
  if (await imageExists(tag)) return tag
  log(`building the Node ${nodeVersion} base image ${tag}`)
  await run('bash', [script, tag, node, npm], { timeoutMs: 300_000, logFile })
  await removeOtherTags(`${REPOSITORY}/node-base`, tag)
  return tag
}

interface AptSource {
  uri: string
  suite: string
  components: string[]
}

/** This machine's Debian archive entries (one-line and deb822 formats), for `deb` only. */
export function aptSources(files?: string[]): AptSource[] {
  const paths = files ?? [
    '/etc/apt/sources.list',
    ...(existsSync('/etc/apt/sources.list.d')
      ? readdirSync('/etc/apt/sources.list.d')
          .filter((f) => f.endsWith('.list') || f.endsWith('.sources'))
          .map((f) => join('/etc/apt/sources.list.d', f))
      : []),
  ]
  const sources: AptSource[] = []
  for (const path of paths) {
    if (!existsSync(path)) continue
    const text = readFileSync(path, 'utf8')
    if (path.endsWith('.sources')) {
      for (const stanza of text.split(/\n\s*\n/)) {
        const fields = new Map<string, string>()
        for (const line of stanza.split('\n')) {
          const match = /^([A-Za-z-]+):\s*(.*)$/.exec(line)
          if (match && !line.startsWith('#')) fields.set(match[1]!.toLowerCase(), match[2]!.trim())
        }
        if (!(fields.get('types') ?? '').split(/\s+/).includes('deb') || fields.get('enabled') === 'no') continue
        const components = (fields.get('components') ?? '').split(/\s+/).filter(Boolean)
        for (const uri of (fields.get('uris') ?? '').split(/\s+/).filter(Boolean)) {
          for (const suite of (fields.get('suites') ?? '').split(/\s+/).filter(Boolean)) sources.push({ uri, suite, components })
        }
      }
    } else {
      for (const raw of text.split('\n')) {
        const line = raw
          .replace(/#.*/, '')
          .replace(/\[[^\]]*\]/, ' ')
          .trim()
        const [type, uri, suite, ...components] = line.split(/\s+/)
        if (type === 'deb' && uri && suite) sources.push({ uri, suite, components })
      }
    }
  }
  return sources
}

const CODENAME = 'bookworm'

/** debootstrap's mirror and the root's sources.list, from the machine's own apt sources. */
export function debianMirror(sources = aptSources()): { mirror: string; sourcesList: string } {
  const wanted = [CODENAME, `${CODENAME}-updates`, `${CODENAME}-security`]
  const chosen = sources.filter((s) => wanted.includes(s.suite) && s.components.includes('main'))
  const base = chosen.find((s) => s.suite === CODENAME)
  if (!base) throw new Error(`no Debian ${CODENAME} archive among this machine's apt sources (/etc/apt/sources.list, /etc/apt/sources.list.d)`)
  const lines = [...new Set(chosen.map((s) => `deb ${s.uri} ${s.suite} main`))]
  return { mirror: base.uri, sourcesList: `${lines.join('\n')}\n` }
}

/** PostgreSQL 15 from Debian, in a debootstrap root; stands in for the official postgres image. */
export async function ensurePostgresImage(log: Log, logFile: string, workDir: string): Promise<string> {
  const script = join(COMPOSE_DIR, 'build-postgres-image.sh')
  const entrypoint = join(COMPOSE_DIR, 'postgres-entrypoint.sh')
  const { mirror, sourcesList } = debianMirror()
  const tag = `${REPOSITORY}/postgres:15-${hash(readFileSync(script), readFileSync(entrypoint), mirror, sourcesList)}`
  if (await imageExists(tag)) return tag
  log(`building the PostgreSQL image ${tag} (debootstrap from ${mirror}; about a minute)`)
  const sourcesFile = join(workDir, 'postgres-root.sources.list')
  writeFileSync(sourcesFile, sourcesList)
  await run('bash', [script, tag, mirror, sourcesFile], { timeoutMs: 900_000, logFile })
  await removeOtherTags(`${REPOSITORY}/postgres`, tag)
  return tag
}

/** The versions apt would install of `packages` (their candidates): '' for one apt knows no version of yet. */
async function aptCandidates(packages: string[]): Promise<string[]> {
  const policy = await run('apt-cache', ['policy', ...packages], { allowFailure: true, timeoutMs: 30_000 })
  // One section per package: "etcd-server:" then indented lines, one of them "Candidate: 3.4.23-4+b4".
  const candidates = new Map<string, string>()
  let current = ''
  for (const line of policy.stdout.split('\n')) {
    const name = /^(\S+):$/.exec(line)?.[1]
    if (name) current = name
    const candidate = /^\s+Candidate:\s*(\S+)/.exec(line)?.[1]
    if (current && candidate && candidate !== '(none)') candidates.set(current, candidate)
  }
  return packages.map((pkg) => candidates.get(pkg) ?? '')
}

/**
 * An image of a Go program from Debian's packages (libc only, no debootstrap root), built by
 * `script` with debian-binary-image.sh; tagged with the upstream version and a hash of the recipe
 * and the packages' versions, so it is rebuilt only when one of them changes.
 */
async function ensureDebianBinaryImage(name: string, packages: readonly string[], script: string, log: Log, logFile: string): Promise<string> {
  const path = join(COMPOSE_DIR, script)
  const versions = await aptCandidates([...packages])
  // 3.4.23-4+b4 -> 3.4.23, 2.42.0+ds-5+deb12u1 -> 2.42.0: the tag says which it is; the hash, which build.
  const upstream = /^(?:\d+:)?([0-9.]+)/.exec(versions[0] ?? '')?.[1] ?? 'debian'
  const tag = `${REPOSITORY}/${name}:${upstream}-${hash(readFileSync(path), readFileSync(join(COMPOSE_DIR, 'debian-binary-image.sh')), ...versions)}`
  if (await imageExists(tag)) return tag
  log(`building the ${name} image ${tag} (Debian's ${packages[0]} ${versions[0] || 'package'}; a few seconds)`)
  await run('bash', [path, tag], { timeoutMs: 600_000, logFile })
  await removeOtherTags(`${REPOSITORY}/${name}`, tag)
  return tag
}

/** etcd from Debian's etcd-server package; stands in for quay.io/coreos/etcd. */
export function ensureEtcdImage(log: Log, logFile: string): Promise<string> {
  return ensureDebianBinaryImage('etcd', ['etcd-server', 'etcd-client'], 'build-etcd-image.sh', log, logFile)
}

/** Prometheus from Debian's prometheus package; stands in for prom/prometheus. */
export function ensurePrometheusImage(log: Log, logFile: string): Promise<string> {
  return ensureDebianBinaryImage('prometheus', ['prometheus'], 'build-prometheus-image.sh', log, logFile)
}
