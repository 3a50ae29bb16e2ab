// Which chain of credential methods a local user gets, exactly as the Python tool chose it:
// per_user_credential_methods for the name, else the last per_uid_credential_methods rule
// whose uid or range holds the uid, else credential_methods.
import type {Config, MethodName} from '../config/schema.js'
import type {LocalUser} from '../host/users.js'

export interface Chain {
  methods: MethodName[]
  source: 'user' | 'uid' | 'default'
  /** The rule that chose it: the user name or the uid key ('0-999'); absent for the default. */
  rule?: string
}

export function selectChain(config: Config, user: LocalUser): Chain {
  const general = config.general
  // A plain object from the config: only its own keys are user names.
  if (Object.hasOwn(general.per_user_credential_methods, user.name))
    return {methods: general.per_user_credential_methods[user.name], source: 'user', rule: user.name}
  const rule = general.per_uid_credential_methods.findLast((r) => user.uid >= r.from && user.uid <= r.to)
  if (rule) return {methods: rule.methods, source: 'uid', rule: rule.key}
  return {methods: general.credential_methods, source: 'default'}
}
