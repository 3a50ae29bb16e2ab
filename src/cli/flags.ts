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
