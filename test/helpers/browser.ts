import { existsSync, mkdirSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { chromium, type Browser } from 'playwright-core'

/** Debian's `chromium` package; CHROMIUM_PATH points elsewhere. */
export const CHROMIUM_PATH = process.env.CHROMIUM_PATH ?? '/usr/bin/chromium'

// Headless, and nothing that talks to the network by itself (updates, sync, metrics, QUIC probes).
const ARGS = [
  '--headless',
  '--no-sandbox',
  '--disable-gpu',
  '--disable-background-networking',
  '--disable-component-update',
  '--disable-sync',
  '--disable-quic',
  '--no-first-run',
  '--disable-dev-shm-usage',
]

/**
 * Launches the machine's Chromium, with `extraArgs` after the usual ones. A missing browser fails
 * the test (CI installs it), with the command that installs it: a browser test that skips itself
 * proves nothing.
 */
export async function launchChromium(extraArgs: readonly string[] = []): Promise<Browser> {
  if (!existsSync(CHROMIUM_PATH)) {
    throw new Error(
      `Chromium not found at ${CHROMIUM_PATH}: the browser tests need Debian's chromium package (apt-get install -y chromium), or CHROMIUM_PATH set to a Chromium binary`,
    )
  }
  return chromium.launch({ executablePath: CHROMIUM_PATH, args: [...ARGS, ...extraArgs], timeout: 30_000 })
}

/** A folder under the OS temp dir for a test's screenshots (kept after the run, to look at). */
export function screenshotDir(name: string): string {
  const dir = join(tmpdir(), 'microservices-advanced-screenshots', name)
  mkdirSync(dir, { recursive: true })
  return dir
}
