// Who is calling, as the gateway tells the services behind it. The gateway sets this header from
// the subject (`sub`) of a verified token and always removes one a client sent, so a service may
// trust it as long as it is reachable only through the gateway.

/** The caller's subject, set by the gateway; absent for an anonymous request. */
export const SUBJECT_HEADER = 'x-auth-subject'

/**
 * What a subject may look like on the wire: 1 to 255 visible ASCII characters (no spaces, so two
 * headers joined with ", " never pass for one subject).
 */
export const SUBJECT_PATTERN = /^[\x21-\x7e]{1,255}$/

export const isSubject = (value: unknown): value is string => typeof value === 'string' && SUBJECT_PATTERN.test(value)
