// Reading errors that come from outside our code (sockets, drivers, libraries), whose `code` and
// `cause` are untyped. One place for the casts, so that callers branch on typed values.

/** The error's own `code` when it is a string (`ECONNREFUSED`, `UND_ERR_SOCKET`, `23505`). */
export function errorCode(error: unknown): string | undefined {
  if (typeof error !== 'object' || error === null) return undefined
  const code = (error as { code?: unknown }).code
  return typeof code === 'string' ? code : undefined
}

/** Every error along the cause chain, the error itself first (a proxy's error wraps the socket's). */
export function causeChain(error: unknown, depth = 5): Error[] {
  const chain: Error[] = []
  for (let current = error; chain.length < depth && current instanceof Error; current = current.cause) chain.push(current)
  return chain
}

/** Every string `code` along the cause chain. */
export function errorCodes(error: unknown): string[] {
  return causeChain(error).flatMap((e) => errorCode(e) ?? [])
}

/** A short description for a log line: `CODE: message`, or the message alone. */
export function describe(error: unknown): string {
  if (error instanceof Error) {
    const code = errorCode(error)
    return code === undefined ? error.message : `${code}: ${error.message}`
  }
  return String(error)
}
