import { createLogger } from '../../src/lib/logger.ts'

/** A logger that prints nothing (TEST_VERBOSE=1 shows it). */
export const silentLogger = () => createLogger({ level: process.env.TEST_VERBOSE ? 'debug' : 'silent' })
