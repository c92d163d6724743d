import { defineErrors } from '../http/errors.ts'

/** The registry's own errors (beyond HTTP's). */
export const registryError = defineErrors({
  INSTANCE_NOT_FOUND: { status: 404, title: 'Instance not registered' },
  INSTANCE_ID_CONFLICT: { status: 409, title: 'Instance id already in use' },
  REGISTRY_FULL: { status: 503, title: 'The registry holds as many instances as it may' },
  SERVICE_FULL: { status: 503, title: 'The service has as many instances as the registry allows' },
  TOO_MANY_WATCHERS: { status: 503, title: 'The registry serves as many watchers as it may' },
  METADATA_TOO_LARGE: { status: 400, title: 'Instance metadata too large' },
  BAD_CONSUL_CHECK: { status: 400, title: 'Check definition not supported' },
  BAD_CONSUL_ADDRESS: { status: 400, title: 'Service address not usable' },
  HEALTH_URL_HOST_NOT_ALLOWED: { status: 400, title: 'The health URL must be on the instance host' },
  UNAUTHORIZED: { status: 401, title: 'A valid registry token is required' },
  PROTECTED_MODE: { status: 403, title: 'Writes from other machines need a registry token' },
  TOKEN_NOT_ALLOWED: { status: 403, title: 'The token may not do this' },
  NOT_OWNER: { status: 403, title: 'The instance belongs to another token' },
  RATE_LIMITED: { status: 429, title: 'Too many writes; slow down' },
  STORE_UNAVAILABLE: { status: 503, title: "The registry's store cannot be written now" },
})
