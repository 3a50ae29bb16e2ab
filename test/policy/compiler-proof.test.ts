// The compiler's guarantee on the demo account, checked by the independent referee
// (test/support/iam-eval) over generated probe requests: the session does nothing the IAM user
// could not (however the user signs), with the account's real trust policies and with a resource
// policy that grants the instance role everything; within the instance role it allows what the
// user is allowed (less only with a warning).
import assert from 'node:assert/strict'

import {OfflineIamSource} from '../../src/lib/aws/offline.js'
import {loadAccountSnapshot} from '../../src/lib/aws/snapshot.js'
import {createActionCatalog} from '../../src/lib/policy/catalog.js'
import {compileSessionPolicy} from '../../src/lib/policy/compiler.js'
import type {PolicyDocument} from '../../src/lib/iam/document.js'
import {sessionDocuments, SessionProof} from '../support/session-proof.js'

const accountFile = new URL('../../fixtures/account.json', import.meta.url).pathname
const HOST = 'arn:aws:iam::123456789012:role/service-role/analytics-host'
const grantsHostEverything: PolicyDocument = {Version: '2012-10-17', Statement: [{Effect: 'Allow', Principal: {AWS: HOST}, Action: '*', Resource: '*'}]}

describe('the session-policy compiler, proven on the demo account', () => {
  for (const compress of [false, true])
    for (const name of ['alice', 'bob', 'carol', 'dave', 'erin'])
      it(`never lets ${name}'s session do more than her IAM user, and within the instance role no less without a warning (compress ${compress})`, async function () {
        this.timeout(120_000)
        // Given the user, the instance role, the account's roles and the compiled session policy
        const source = new OfflineIamSource(await loadAccountSnapshot(accountFile), 'analytics-host')
        const user = (await source.getUserPolicies(name))!
        const role = (await source.getRolePolicies('analytics-host'))!
        const roles = await source.listRoles()
        const result = await compileSessionPolicy(user, role, {compress, accountId: '123456789012', catalog: createActionCatalog(), roles, session: {name, sourceIdentity: name}})
        const session = result.grantsAnything ? sessionDocuments(user, result) : null
        for (const resourcePolicy of [undefined, grantsHostEverything]) {
          const proof = new SessionProof(
            {user, role, roles, resourcePolicy, sessionName: name, sourceIdentity: name, otherRoles: [{arn: 'arn:aws:iam::123456789012:role/user-newcomer', trustPolicy: roles.find((r) => r.name === 'user-alice')!.trustPolicy}]},
            session,
          )
          // When every probe is judged both ways
          const {probes, overGrants, underGrants} = await proof.run({maxRequests: 4000})
          assert.ok(probes > 100, 'enough probes')
          // Then nothing is over-granted, and anything under-granted comes with a warning
          assert.deepEqual(overGrants.slice(0, 5), [], `${overGrants.length} over-grants (resource policy: ${resourcePolicy ? 'everything' : 'none'})`)
          if (underGrants.length > 0) assert.ok(result.warnings.length > 0, `${underGrants.length} under-grants without a warning, e.g. ${underGrants.slice(0, 3).join('; ')}`)
        }
      })
})
