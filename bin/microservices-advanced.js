#!/usr/bin/env node
// Package entry point. Runs the compiled build when there is one (dist/, made by `npm run build`),
// else the TypeScript sources directly (Node 24 strips the types).
import { existsSync } from 'node:fs'

const [major] = process.versions.node.split('.').map(Number)
if (major < 24) {
  process.stderr.write(`microservices-advanced needs Node.js 24 or newer; this is ${process.version}. Run it through npm (npm start), which uses the project's Node 24.\n`)
  process.exit(1)
}
const compiled = new URL('../dist/cli.js', import.meta.url)
await import(existsSync(compiled) ? compiled.href : new URL('../src/cli.ts', import.meta.url).href)
