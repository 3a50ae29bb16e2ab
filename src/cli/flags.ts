// Flags shared by the commands that read IAM.
import {Flags} from '@oclif/core'

export const iamFlags = {
  account: Flags.string({
    summary: 'Read IAM offline from this file (output of `aws iam get-account-authorization-details`).',
    helpValue: 'FILE',
  }),
  'instance-role': Flags.string({
    summary: 'The instance role, by name or ARN (wins over [general] instance_role and discovery).',
    helpValue: 'NAME|ARN',
  }),
}

/** Where the interception sends users: the same flags as `serve`'s. */
export const listenerFlags = {
  port: Flags.integer({summary: 'The daemon\'s port that nat sends to (default: [general] daemon_port).', min: 1, max: 65535}),
  host: Flags.string({summary: 'The daemon\'s IPv4 address that nat sends to.', default: '127.0.0.1'}),
}
