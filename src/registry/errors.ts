import { defineErrors } from '../http/errors.ts'

/** The registry's own errors (beyond HTTP's). */
export const registryError = defineErrors({
  INSTANCE_NOT_FOUND: { status: 404, title: 'Instance not registered' },
  INSTANCE_ID_CONFLICT: { status: 409, title: 'Instance id already in use' },
  REGISTRY_FULL: { status: 503, title: 'The registry holds as many instances as it may' },
})
