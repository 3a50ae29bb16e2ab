// The compiler's guarantee, checked by an independent evaluator (test/support/iam-eval) over
// generated probe requests: within the instance role, the compiled session allows exactly what
// the IAM user is allowed (never more; less only with a warning).
import assert from 'node:assert/strict'

import {OfflineIamSource} from '../../src/lib/aws/offline.js'
import {loadAccountSnapshot} from '../../src/lib/aws/snapshot.js'
import {createActionCatalog} from '../../src/lib/policy/catalog.js'
import {compileSessionPolicy} from '../../src/lib/policy/compiler.js'
import type {PolicyDocument} from '../../src/lib/policy/document.js'
import {generateRequests, probePair, sessionAllows, sessionPrincipalContext, userAllows, userPrincipalContext} from '../support/iam-eval/index.js'

const accountFile = new URL('../../fixtures/account.json', import.meta.url).pathname

describe('the session-policy compiler, proven on the demo account', () => {
  for (const compress of [false, true])
    for (const name of ['alice', 'bob', 'carol', 'dave', 'erin'])
      it(`never grants ${name} more than her IAM user within the instance role (compress ${compress})`, async function () {
        this.timeout(120_000)
        // Given the user, the instance role and the compiled session policy
        const source = new OfflineIamSource(await loadAccountSnapshot(accountFile), 'analytics-host')
        const user = (await source.getUserPolicies(name))!
        const role = (await source.getRolePolicies('analytics-host'))!
        const result = await compileSessionPolicy(user, role, {compress, accountId: '123456789012', catalog: createActionCatalog()})
        const session: PolicyDocument[] = [
          ...(result.policy ? [JSON.parse(result.policy) as PolicyDocument] : []),
          ...(await Promise.all(result.policyArns.map(async (arn) => (await source.getManagedPolicy(arn))!.document))),
        ]
        const userDocs = [...user.inline, ...user.managed, ...user.groups.flatMap((g) => [...g.inline, ...g.managed])].map((p) => p.document)
        const roleSide = {identity: [...role.inline, ...role.managed].map((p) => p.document)}
        const sides = {
          user: userPrincipalContext({name: user.user.name, id: user.user.id, arn: user.user.arn, tags: user.user.tags}),
          session: sessionPrincipalContext({roleArn: role.role.arn, roleId: role.role.id, sessionName: name, roleTags: role.role.tags}),
        }
        // When every probe is judged both ways
        const probes = await generateRequests([...userDocs, ...roleSide.identity, ...(user.permissionsBoundary ? [user.permissionsBoundary.document] : [])], {
          principalContext: [sides.user, sides.session],
          maxRequests: 4000,
        })
        assert.ok(probes.length > 100, 'enough probes')
        const overGrants: string[] = []
        const underGrants: string[] = []
        for (const probe of probes) {
          const pair = probePair(probe, sides)
          const inRole = sessionAllows(roleSide, [], pair.session)
          const userMay = userAllows({identity: userDocs, boundary: user.permissionsBoundary?.document}, pair.user) && inRole
          const sessionMay = session.length > 0 && sessionAllows(roleSide, session, pair.session)
          if (sessionMay && !userMay) overGrants.push(`${probe.action} ${probe.resource} ${JSON.stringify(probe.context)}`)
          if (userMay && !sessionMay) underGrants.push(`${probe.action} ${probe.resource}`)
        }
        // Then nothing is over-granted, and anything under-granted comes with a warning
        assert.deepEqual(overGrants.slice(0, 5), [], `${overGrants.length} over-grants`)
        if (underGrants.length > 0) assert.ok(result.warnings.length > 0, `${underGrants.length} under-grants without a warning, e.g. ${underGrants.slice(0, 3).join('; ')}`)
      })
})
