// Registry tokens across real processes: services send REGISTRY_TOKEN (or _FILE), a refused token
// stops a service at start with a message naming the variable, scoped tokens rotate without a
// restart (on a change to the file, and on SIGHUP), the fast paths enforce what the routes do, and
// no token ever reaches a log.
import assert from 'node:assert/strict'
import { createHash } from 'node:crypto'
import { writeFileSync } from 'node:fs'
import { join } from 'node:path'
import { after, before, describe, it } from 'node:test'
import { Pool } from 'undici'
import { http } from '../helpers/http.ts'
import { startRole, type RunningProcess } from '../helpers/process.ts'
import { tempDir } from '../helpers/system.ts'
import { waitFor } from '../helpers/wait.ts'

const ADMIN = 'itest-admin-token-0123456789abcdef'
const PRODUCT = 'itest-product-token-0123456789abcd'
const ROTATED = 'itest-product-rotated-0123456789ab'
const READER = 'itest-read-token-0123456789abcdefg'
const sha = (token: string) => createHash('sha256').update(token).digest('hex')
const bearer = (token: string) => ({ authorization: `Bearer ${token}` })

describe('registry tokens between processes', () => {
  const dir = tempDir('registry-auth')
  const acl = join(dir.path, 'acl.json')
  const tokenFile = join(dir.path, 'admin-token')
  const writeAcl = (token: string) => writeFileSync(acl, JSON.stringify({ tokens: [{ name: 'product-team', sha256: sha(token), services: ['product'] }] }))
  let registry: RunningProcess
  const started: RunningProcess[] = []

  before(async () => {
    writeAcl(PRODUCT)
    // As Docker writes a secret: with a trailing newline, which is not part of the token.
    writeFileSync(tokenFile, `${ADMIN}\n`)
    registry = await startRole('registry', {
      env: { REGISTRY_TOKEN_FILE: tokenFile, REGISTRY_ACL_FILE: acl, REGISTRY_READ_TOKEN: READER },
    })
  })

  after(async () => {
    await Promise.all(started.map((p) => p.stop('SIGKILL')))
    await registry?.stop()
    // Not one line of any process holds a token.
    for (const proc of [registry, ...started]) {
      for (const line of proc?.output ?? []) for (const token of [ADMIN, PRODUCT, ROTATED, READER]) assert.ok(!line.includes(token), `${proc.role} logged a token: ${line}`)
    }
    dir.remove()
  })

  const service = async (env: Record<string, string>, waitForListening = true) => {
    const proc = await startRole('product', {
      env: { REGISTRY_URL: registry.url, DATA_DIR: dir.path, HEARTBEAT_INTERVAL_SECONDS: '0.2', SHUTDOWN_TIMEOUT_SECONDS: '3', ...env },
      waitForListening,
    })
    started.push(proc)
    return proc
  }

  it('the fast paths are on, and enforce the tokens', async () => {
    assert.equal(
      registry.logs.find((line) => line.event === 'fast_path_off'),
      undefined,
      'tokens and rate limits do not turn the fast paths off',
    )
    const created = await http('POST', `${registry.url}/register`, { service_name: 'product', url: 'http://127.0.0.1:9' }, bearer(ADMIN))
    assert.equal(created.status, 201)
    const id = created.body.id
    const anonymous = await http('POST', `${registry.url}/heartbeat`, { instance_id: id })
    assert.equal(anonymous.status, 401)
    assert.equal(anonymous.headers.get('www-authenticate'), 'Bearer realm="registry"')
    assert.equal((await http('POST', `${registry.url}/heartbeat`, { instance_id: id }, bearer(PRODUCT))).status, 403, 'not its owner')
    assert.equal((await http('GET', `${registry.url}/discover/product`)).status, 401)
    const read = await http('GET', `${registry.url}/discover/product`, undefined, bearer(READER))
    assert.equal(read.status, 200)
    assert.deepEqual(
      read.body.instances.map((i: { id: string }) => i.id),
      [id],
    )
    // One kept-alive connection whose token changes between requests: each request is judged by its own.
    const pool = new Pool(registry.url, { connections: 1 })
    try {
      const beat = async (headers: Record<string, string>) => {
        const response = await pool.request({
          method: 'POST',
          path: '/heartbeat',
          headers: { 'content-type': 'application/json', ...headers },
          body: JSON.stringify({ instance_id: id }),
        })
        await response.body.dump()
        return response.statusCode
      }
      assert.deepEqual(
        [await beat(bearer(ADMIN)), await beat(bearer(`${ADMIN}x`)), await beat({}), await beat(bearer(PRODUCT)), await beat(bearer(ADMIN))],
        [200, 401, 401, 403, 200],
      )
    } finally {
      await pool.close()
    }
    assert.equal((await http('DELETE', `${registry.url}/instances/${id}`, undefined, bearer(ADMIN))).status, 204)
  })

  it("the write rate limit counts what changes membership, not an owner's routine heartbeats", async () => {
    const limited = await startRole('registry', { env: { REGISTRY_TOKEN: ADMIN, REGISTRY_WRITE_RATE_LIMIT: '5' } })
    started.push(limited)
    const id = (await http('POST', `${limited.url}/register`, { service_name: 'product', url: 'http://127.0.0.1:9' }, bearer(ADMIN))).body.id
    // 5 writes a minute, and 30 heartbeats still pass (the fast path answers them)...
    for (let i = 0; i < 30; i++) assert.equal((await http('POST', `${limited.url}/heartbeat`, { instance_id: id }, bearer(ADMIN))).status, 200)
    // ...while registrations, and refused writes, are counted.
    const statuses = []
    for (let i = 0; i < 6; i++) statuses.push((await http('POST', `${limited.url}/register`, { service_name: 'burst', url: `http://127.0.0.1:${i + 10}` }, bearer(ADMIN))).status)
    assert.deepEqual(statuses, [201, 201, 201, 201, 429, 429])
    const refused = await http('DELETE', `${limited.url}/instances/${id}`, undefined, bearer(ADMIN))
    assert.equal(refused.status, 429)
    assert.equal(refused.body.code, 'RATE_LIMITED')
  })

  it('a service with a scoped token from a file registers; without a token, or with a wrong one, it exits 1 naming REGISTRY_TOKEN', async () => {
    const productToken = join(dir.path, 'product-token')
    writeFileSync(productToken, `${PRODUCT}\n`)
    const good = await service({ REGISTRY_TOKEN_FILE: productToken })
    await good.waitForLog((line) => line.event === 'registered')

    for (const env of [{}, { REGISTRY_TOKEN: 'not-the-token-0123456789abcdef' }, { REGISTRY_TOKEN: READER }] as Record<string, string>[]) {
      const bad = await service(env, false)
      const exit = await bad.exited
      assert.equal(exit.code, 1, `exit code with ${Object.keys(env)}`)
      const fatal = bad.logs.find((line) => line.event === 'registry_refused')
      assert.ok(fatal, bad.output.join('\n'))
      assert.equal(fatal.level, 'fatal')
      assert.match(String(fatal.msg), /REGISTRY_TOKEN/)
    }
  })

  it('rotates scoped tokens without a restart: on a change to the file, and on SIGHUP', async () => {
    const register = (token: string, port: number) => http('POST', `${registry.url}/register`, { service_name: 'product', url: `http://127.0.0.1:${port}` }, bearer(token))
    assert.equal((await register(ROTATED, 21)).status, 401)
    writeAcl(ROTATED)
    await waitFor(async () => (await register(ROTATED, 21)).status === 201, { timeoutMs: 10_000, what: 'the rotated token to be accepted' })
    assert.equal((await register(PRODUCT, 22)).status, 401, 'the old token no longer works')

    const reloads = registry.logs.filter((line) => line.event === 'acl_reloaded').length
    registry.child.kill('SIGHUP')
    await waitFor(() => registry.logs.filter((line) => line.event === 'acl_reloaded').length > reloads && registry.logs.findLast((line) => line.event === 'acl_reloaded'), {
      what: 'a reload on SIGHUP',
    })
    assert.equal(registry.logs.findLast((line) => line.event === 'acl_reloaded')?.reason, 'SIGHUP')
    assert.equal(registry.child.exitCode, null, 'SIGHUP reloads; it does not stop the registry')
    assert.equal((await http('GET', `${registry.url}/health/live`)).status, 200)
  })
})
