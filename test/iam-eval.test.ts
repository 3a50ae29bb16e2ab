// Pins the referee evaluator (test/support/iam-eval) to documented AWS IAM behaviour, one rule per
// test, each citing the IAM User Guide page it follows, and checks the probe generator.
import assert from 'node:assert/strict'

import fc from 'fast-check'

import type {PolicyDocument, Statement} from '../src/lib/iam/document.js'
import {
  evaluatePolicies,
  generateRequests,
  ipProbes,
  PolicyEvaluationError,
  probePair,
  sessionAllows,
  sessionPrincipalContext,
  statementApplies,
  userAllows,
  userPrincipalContext,
  type ContextMap,
  type RequestContext,
} from './support/iam-eval/index.js'
import {matchGlob} from './support/iam-eval/glob.js'

const doc = (...Statement: Statement[]): PolicyDocument => ({Version: '2012-10-17', Statement})
const allow = (
  Action: string | string[],
  Resource: string | string[] = '*',
  Condition?: Statement['Condition'],
): Statement => ({
  Effect: 'Allow',
  Action,
  Resource,
  ...(Condition ? {Condition} : {}),
})
const req = (action: string, resource: string, context: ContextMap = {}): RequestContext => ({
  action,
  resource,
  context,
})
const decide = (policy: PolicyDocument, action: string, resource: string, context: ContextMap = {}) =>
  evaluatePolicies([policy], req(action, resource, context))
/** Whether a single Allow statement with this condition applies to s3:GetObject on a fixed object. */
const conditionHolds = (
  Condition: Statement['Condition'],
  context: ContextMap,
  version = '2012-10-17',
): boolean =>
  decide(
    {Version: version, Statement: [allow('s3:GetObject', '*', Condition)]},
    's3:GetObject',
    'arn:aws:s3:::b/k',
    context,
  ) === 'Allow'

const OBJ = 'arn:aws:s3:::bucket/home/alice/notes.txt'

describe('iam-eval referee', () => {
  describe('evaluation logic', () => {
    it('allows what a statement allows and implicitly denies everything else', () => {
      // "Policy evaluation logic": by default all requests are implicitly denied; an Allow overrides that.
      const p = doc(allow('s3:GetObject', 'arn:aws:s3:::bucket/*'))
      assert.equal(decide(p, 's3:GetObject', OBJ), 'Allow')
      assert.equal(decide(p, 's3:PutObject', OBJ), 'ImplicitDeny')
      assert.equal(decide(p, 's3:GetObject', 'arn:aws:s3:::other/k'), 'ImplicitDeny')
      assert.equal(evaluatePolicies([], req('s3:GetObject', OBJ)), 'ImplicitDeny')
    })

    it('lets an explicit Deny beat any Allow, in any policy of the set', () => {
      // "Policy evaluation logic": an explicit deny in any policy overrides any allow.
      const allowAll = doc(allow('*'))
      const deny = doc({Effect: 'Deny', Action: 's3:DeleteObject', Resource: 'arn:aws:s3:::bucket/*'})
      assert.equal(evaluatePolicies([allowAll, deny], req('s3:DeleteObject', OBJ)), 'ExplicitDeny')
      assert.equal(evaluatePolicies([deny, allowAll], req('s3:DeleteObject', OBJ)), 'ExplicitDeny')
      assert.equal(evaluatePolicies([allowAll, deny], req('s3:GetObject', OBJ)), 'Allow')
    })

    it('reads NotAction with Allow as everything except the listed actions, on the listed resources', () => {
      // "IAM JSON policy elements: NotAction": Allow + NotAction allows all actions not listed;
      // the Resource element still limits where.
      const p = doc({Effect: 'Allow', NotAction: 'iam:*', Resource: '*'})
      assert.equal(decide(p, 's3:GetObject', OBJ), 'Allow')
      assert.equal(decide(p, 'iam:CreateUser', 'arn:aws:iam::111122223333:user/bob'), 'ImplicitDeny')
      const scoped = doc({Effect: 'Allow', NotAction: 's3:DeleteObject', Resource: 'arn:aws:s3:::bucket/*'})
      assert.equal(decide(scoped, 's3:PutObject', OBJ), 'Allow')
      assert.equal(decide(scoped, 's3:PutObject', 'arn:aws:s3:::elsewhere/k'), 'ImplicitDeny')
    })

    it('reads NotResource as every resource except the listed ones', () => {
      // "IAM JSON policy elements: NotResource": the statement matches all resources not listed.
      const p = doc({
        Effect: 'Allow',
        Action: 's3:*',
        NotResource: ['arn:aws:s3:::secret', 'arn:aws:s3:::secret/*'],
      })
      assert.equal(decide(p, 's3:GetObject', OBJ), 'Allow')
      assert.equal(decide(p, 's3:GetObject', 'arn:aws:s3:::secret/k'), 'ImplicitDeny')
      const deny = doc(allow('*'), {Effect: 'Deny', Action: '*', NotResource: 'arn:aws:s3:::bucket/*'})
      assert.equal(decide(deny, 's3:GetObject', 'arn:aws:s3:::other/k'), 'ExplicitDeny')
      assert.equal(decide(deny, 's3:GetObject', OBJ), 'Allow')
    })

    it('accepts a string or a list wherever the grammar does', () => {
      // "Grammar of the IAM JSON policy language": Action, Resource and condition values are string or list.
      const p: PolicyDocument = {
        Version: '2012-10-17',
        Statement: {
          Effect: 'Allow',
          Action: ['s3:GetObject', 's3:PutObject'],
          Resource: OBJ,
          Condition: {StringEquals: {'s3:prefix': ['a', 'b']}},
        },
      }
      assert.equal(decide(p, 's3:PutObject', OBJ, {'s3:prefix': 'b'}), 'Allow')
    })
  })

  describe('matching actions and resources', () => {
    it('matches actions case-insensitively and resources case-sensitively', () => {
      // "IAM JSON policy elements: Action": action names are not case sensitive ("iam:listaccesskeys"
      // equals "IAM:ListAccessKeys"); "Resource": ARNs are case sensitive (IAM user name is case sensitive).
      const p = doc(allow('S3:getobject', 'arn:aws:iam::111122223333:user/Bob'))
      assert.equal(decide(p, 's3:GetObject', 'arn:aws:iam::111122223333:user/Bob'), 'Allow')
      assert.equal(decide(p, 's3:GetObject', 'arn:aws:iam::111122223333:user/bob'), 'ImplicitDeny')
    })

    it('lets `*` cross `/` and `:` in a resource, `?` stand for exactly one character, and nothing else be special', () => {
      // "IAM JSON policy elements: Resource": `*` expands across `/`, and a trailing `*` in a segment
      // "can expand to match beyond the colon boundaries"; `?` is any single character.
      const p = doc(
        allow('s3:GetObject', ['arn:aws:s3:::bucket/home/*', 'arn:aws:logs:*', 'arn:aws:s3:::b?/[ab]']),
      )
      assert.equal(decide(p, 's3:GetObject', 'arn:aws:s3:::bucket/home/alice/deep/file'), 'Allow')
      assert.equal(decide(p, 's3:GetObject', 'arn:aws:logs:us-east-1:111122223333:log-group:x:*'), 'Allow')
      assert.equal(decide(p, 's3:GetObject', 'arn:aws:s3:::bucket/homework'), 'ImplicitDeny')
      assert.equal(decide(p, 's3:GetObject', 'arn:aws:s3:::b1/[ab]'), 'Allow')
      assert.equal(decide(p, 's3:GetObject', 'arn:aws:s3:::b12/[ab]'), 'ImplicitDeny')
      assert.equal(decide(p, 's3:GetObject', 'arn:aws:s3:::b1/a'), 'ImplicitDeny') // no character classes
    })

    it('matches every string against a pattern made from it by wildcarding parts of it', () => {
      // Property: replacing any chunks of a string by `*`, and single characters by `?`, gives a
      // pattern that still matches the string (case-insensitively too, as for actions).
      const chunk = fc.tuple(fc.string({maxLength: 5}), fc.constantFrom('keep', 'star', 'one'))
      fc.assert(
        fc.property(fc.array(chunk, {maxLength: 8}), (chunks) => {
          const subject = chunks.map(([text]) => text).join('')
          const pattern = chunks
            .map(([text, how]) => (how === 'star' ? '*' : how === 'one' && text.length === 1 ? '?' : text))
            .join('')
          return matchGlob(pattern, subject) && matchGlob(pattern.toUpperCase(), subject.toLowerCase(), true)
        }),
        {numRuns: 300},
      )
    })
  })

  describe('condition operators', () => {
    it('compares strings exactly, ignoring case, or with wildcards', () => {
      // "Condition operators" > String: StringEquals exact and case sensitive; ...IgnoreCase ignores
      // case; StringLike supports `*` and `?` anywhere in the string.
      assert.ok(conditionHolds({StringEquals: {'s3:prefix': 'Home'}}, {'s3:prefix': 'Home'}))
      assert.ok(!conditionHolds({StringEquals: {'s3:prefix': 'Home'}}, {'s3:prefix': 'home'}))
      assert.ok(!conditionHolds({StringEquals: {'s3:prefix': 'home/*'}}, {'s3:prefix': 'home/x'})) // no wildcards
      assert.ok(conditionHolds({StringEqualsIgnoreCase: {'s3:prefix': 'Home'}}, {'s3:prefix': 'hOME'}))
      assert.ok(!conditionHolds({StringNotEqualsIgnoreCase: {'s3:prefix': 'Home'}}, {'s3:prefix': 'hOME'}))
      assert.ok(conditionHolds({StringLike: {'s3:prefix': 'home/*/d?'}}, {'s3:prefix': 'home/a/b/d1'}))
      assert.ok(!conditionHolds({StringLike: {'s3:prefix': 'home/*/d?'}}, {'s3:prefix': 'home/a/d12'}))
      assert.ok(conditionHolds({StringNotLike: {'s3:prefix': 'home/*'}}, {'s3:prefix': 'tmp/x'}))
    })

    it('ORs several values for one key, but a negated operator means none of them', () => {
      // "Conditions with multiple context keys or values": values for one key are ORed; for a negated
      // matching operator they are evaluated with a logical NOR.
      assert.ok(
        conditionHolds(
          {StringEquals: {'aws:RequestedRegion': ['eu-west-1', 'us-east-1']}},
          {'aws:RequestedRegion': 'us-east-1'},
        ),
      )
      const notEither = {StringNotEquals: {'aws:RequestedRegion': ['eu-west-1', 'us-east-1']}}
      assert.ok(!conditionHolds(notEither, {'aws:RequestedRegion': 'us-east-1'}))
      assert.ok(conditionHolds(notEither, {'aws:RequestedRegion': 'ap-south-1'}))
    })

    it('ANDs several keys under one operator and several operators in one block', () => {
      // "Conditions with multiple context keys or values": keys and operators are ANDed.
      const block = {
        StringEquals: {'s3:prefix': 'a', 's3:delimiter': '/'},
        Bool: {'aws:SecureTransport': 'true'},
      }
      assert.ok(conditionHolds(block, {'s3:prefix': 'a', 's3:delimiter': '/', 'aws:SecureTransport': 'true'}))
      assert.ok(
        !conditionHolds(block, {'s3:prefix': 'a', 's3:delimiter': '/', 'aws:SecureTransport': 'false'}),
      )
      assert.ok(!conditionHolds(block, {'s3:prefix': 'a', 'aws:SecureTransport': 'true'}))
    })

    it('compares numbers', () => {
      // "Condition operators" > Numeric.
      const ctx = {'s3:max-keys': '10'}
      assert.ok(conditionHolds({NumericEquals: {'s3:max-keys': '10'}}, ctx))
      assert.ok(conditionHolds({NumericNotEquals: {'s3:max-keys': ['9', '11']}}, ctx))
      assert.ok(conditionHolds({NumericLessThan: {'s3:max-keys': 11}}, ctx))
      assert.ok(!conditionHolds({NumericLessThan: {'s3:max-keys': '10'}}, ctx))
      assert.ok(conditionHolds({NumericLessThanEquals: {'s3:max-keys': '10'}}, ctx))
      assert.ok(conditionHolds({NumericGreaterThan: {'s3:max-keys': '9.5'}}, ctx))
      assert.ok(!conditionHolds({NumericGreaterThanEquals: {'s3:max-keys': '11'}}, ctx))
      assert.ok(!conditionHolds({NumericEquals: {'s3:max-keys': '10'}}, {'s3:max-keys': 'ten'}))
    })

    it('compares dates given in ISO 8601 or epoch seconds', () => {
      // "Condition operators" > Date: W3C ISO 8601 formats or epoch (UNIX) time.
      const now = {'aws:CurrentTime': '2024-06-01T12:00:00Z'}
      assert.ok(conditionHolds({DateLessThan: {'aws:CurrentTime': '2024-12-31T23:59:59Z'}}, now))
      assert.ok(conditionHolds({DateGreaterThan: {'aws:CurrentTime': '2024-01-01'}}, now))
      assert.ok(conditionHolds({DateEquals: {'aws:CurrentTime': '1717243200'}}, now))
      assert.ok(conditionHolds({DateNotEquals: {'aws:CurrentTime': '2024-06-01T12:00:01Z'}}, now))
      assert.ok(
        conditionHolds(
          {DateLessThanEquals: {'aws:EpochTime': '2024-06-01T12:00:00+00:00'}},
          {'aws:EpochTime': '1717243200'},
        ),
      )
      assert.ok(!conditionHolds({DateGreaterThanEquals: {'aws:CurrentTime': '2024-06-02T00:00:00Z'}}, now))
    })

    it('compares booleans and base-64 binary values', () => {
      // "Condition operators" > Boolean and BinaryEquals (base-64 encoded values).
      assert.ok(conditionHolds({Bool: {'aws:SecureTransport': true}}, {'aws:SecureTransport': 'true'}))
      assert.ok(!conditionHolds({Bool: {'aws:SecureTransport': 'true'}}, {'aws:SecureTransport': 'false'}))
      const value = Buffer.from('hello').toString('base64')
      assert.ok(
        conditionHolds(
          {BinaryEquals: {'kms:RecipientAttestation:ImageSha384': value}},
          {'kms:RecipientAttestation:ImageSha384': value},
        ),
      )
      assert.ok(
        !conditionHolds({BinaryEquals: {'x:k': value}}, {'x:k': Buffer.from('bye').toString('base64')}),
      )
    })

    it('tests IPv4 and IPv6 addresses against CIDR ranges', () => {
      // "Condition operators" > IP address: RFC 4632 CIDR, IPv4 and IPv6; a bare address is /32 or /128.
      const ranges = {
        IpAddress: {'aws:SourceIp': ['203.0.113.0/24', '2001:DB8:1234:5678::/64', '198.51.100.7']},
      }
      assert.ok(conditionHolds(ranges, {'aws:SourceIp': '203.0.113.200'}))
      assert.ok(conditionHolds(ranges, {'aws:SourceIp': '2001:db8:1234:5678:abcd::1'}))
      assert.ok(conditionHolds(ranges, {'aws:SourceIp': '198.51.100.7'}))
      assert.ok(!conditionHolds(ranges, {'aws:SourceIp': '198.51.100.8'}))
      assert.ok(!conditionHolds(ranges, {'aws:SourceIp': '2001:db8:1234:5679::1'}))
      assert.ok(
        conditionHolds({NotIpAddress: {'aws:SourceIp': '203.0.113.0/24'}}, {'aws:SourceIp': '192.0.2.1'}),
      )
      assert.ok(!conditionHolds({IpAddress: {'aws:SourceIp': '::/0'}}, {'aws:SourceIp': '192.0.2.1'}))
    })

    it('matches ARNs component by component', () => {
      // "Condition operators" > ARN: ArnEquals and ArnLike are case-sensitive; each of the six
      // colon-delimited components is checked separately and may hold `*` and `?`.
      const src = {'aws:SourceArn': 'arn:aws:sns:us-east-1:111122223333:topic-a'}
      assert.ok(conditionHolds({ArnLike: {'aws:SourceArn': 'arn:aws:sns:*:111122223333:topic-?'}}, src))
      assert.ok(conditionHolds({ArnEquals: {'aws:SourceArn': 'arn:aws:sns:*:111122223333:*'}}, src))
      const logs = {'aws:SourceArn': 'arn:aws:logs:us-east-1:111122223333:log-group:g1'}
      assert.ok(conditionHolds({ArnLike: {'aws:SourceArn': 'arn:aws:logs:*:*:log-group:*'}}, logs))
      assert.ok(!conditionHolds({ArnLike: {'aws:SourceArn': 'arn:aws:*:111122223333:log-group:g1'}}, logs)) // `*` stays in its component
      assert.ok(
        conditionHolds(
          {ArnEquals: {'aws:SourceArn': '${aws:PrincipalArn}'}},
          {...src, 'aws:PrincipalArn': src['aws:SourceArn']},
        ),
      )
      assert.throws(() => conditionHolds({ArnLike: {'aws:SourceArn': '*'}}, src), PolicyEvaluationError) // undocumented
      assert.ok(!conditionHolds({ArnLike: {'aws:SourceArn': 'arn:aws:SNS:*:*:*'}}, src))
      assert.ok(conditionHolds({ArnNotLike: {'aws:SourceArn': 'arn:aws:sqs:*:*:*'}}, src))
      assert.ok(
        !conditionHolds({ArnNotEquals: {'aws:SourceArn': 'arn:aws:sns:us-east-1:111122223333:topic-a'}}, src),
      )
    })

    it('makes a missing key false for plain operators and true for negated ones', () => {
      // "Condition operators" (Important box): a key not present makes the condition false; for an
      // operator requiring the key NOT to match (StringNotLike, ArnNotLike, ...) it is true.
      assert.ok(!conditionHolds({StringEquals: {'aws:ResourceTag/team': 'red'}}, {}))
      assert.ok(!conditionHolds({StringLike: {'aws:ResourceTag/team': '*'}}, {}))
      assert.ok(conditionHolds({StringNotEquals: {'aws:ResourceTag/team': 'red'}}, {}))
      assert.ok(conditionHolds({StringNotLike: {'aws:ResourceTag/team': '*'}}, {}))
      assert.ok(conditionHolds({ArnNotLike: {'aws:SourceArn': 'arn:*:*:*:*:*'}}, {}))
      assert.ok(conditionHolds({NotIpAddress: {'aws:SourceIp': '0.0.0.0/0'}}, {}))
      assert.ok(!conditionHolds({NumericLessThan: {'s3:max-keys': '5'}}, {}))
    })

    it('makes ...IfExists true when the key is absent and otherwise the plain test', () => {
      // "Condition operators" > ...IfExists: if the key is not present, the condition evaluates to true.
      const block = {StringEqualsIfExists: {'ec2:InstanceType': ['t3.micro']}}
      assert.ok(conditionHolds(block, {}))
      assert.ok(conditionHolds(block, {'ec2:InstanceType': 't3.micro'}))
      assert.ok(!conditionHolds(block, {'ec2:InstanceType': 'm5.large'}))
      assert.ok(
        !conditionHolds(
          {StringNotEqualsIfExists: {'ec2:InstanceType': 't3.micro'}},
          {'ec2:InstanceType': 't3.micro'},
        ),
      )
      assert.ok(conditionHolds({BoolIfExists: {'aws:MultiFactorAuthPresent': 'false'}}, {}))
    })

    it('tests presence alone with Null', () => {
      // "Condition operators" > Null: "true" means the key is absent, "false" that it is present.
      assert.ok(conditionHolds({Null: {'aws:TokenIssueTime': 'true'}}, {}))
      assert.ok(
        !conditionHolds(
          {Null: {'aws:TokenIssueTime': 'true'}},
          {'aws:TokenIssueTime': '2024-01-01T00:00:00Z'},
        ),
      )
      assert.ok(
        conditionHolds({Null: {'aws:TokenIssueTime': false}}, {'aws:TokenIssueTime': '2024-01-01T00:00:00Z'}),
      )
      assert.ok(!conditionHolds({Null: {'aws:TokenIssueTime': 'false'}}, {}))
    })

    it('makes ForAllValues true on an empty or missing key and ForAnyValue false', () => {
      // "Single-valued vs. multivalued context keys" / set operators: ForAllValues is true when every
      // request value matches some policy value, and also when the key is absent or the set empty;
      // ForAnyValue needs one match and is false on an empty set.
      const all = {'ForAllValues:StringEquals': {'aws:TagKeys': ['team', 'env']}}
      const any = {'ForAnyValue:StringEquals': {'aws:TagKeys': ['team', 'env']}}
      assert.ok(conditionHolds(all, {}))
      assert.ok(conditionHolds(all, {'aws:TagKeys': []}))
      assert.ok(conditionHolds(all, {'aws:TagKeys': ''})) // "an empty data set (for example, an empty string)"
      assert.ok(conditionHolds(all, {'aws:TagKeys': ['team']}))
      assert.ok(!conditionHolds(all, {'aws:TagKeys': ['team', 'owner']}))
      assert.ok(!conditionHolds(any, {}))
      assert.ok(!conditionHolds(any, {'aws:TagKeys': []}))
      assert.ok(conditionHolds(any, {'aws:TagKeys': ['owner', 'env']}))
      assert.ok(!conditionHolds(any, {'aws:TagKeys': ['owner']}))
    })

    it('applies a negated set operator to each request value against all policy values', () => {
      // Set operators over a negated operator: each request value must match none of the policy values.
      const noneForbidden = {'ForAllValues:StringNotLike': {'aws:TagKeys': ['aws:*', 'secret*']}}
      assert.ok(conditionHolds(noneForbidden, {'aws:TagKeys': ['team', 'env']}))
      assert.ok(!conditionHolds(noneForbidden, {'aws:TagKeys': ['team', 'secret-x']}))
      const someOther = {'ForAnyValue:StringNotEquals': {'aws:TagKeys': ['team']}}
      assert.ok(conditionHolds(someOther, {'aws:TagKeys': ['team', 'env']}))
      assert.ok(!conditionHolds(someOther, {'aws:TagKeys': ['team']}))
    })

    it('reads condition key names case-insensitively', () => {
      // "Variables and tags": key names are case-insensitive (aws:CurrentTime = AWS:currenttime).
      assert.ok(
        conditionHolds(
          {StringEquals: {'AWS:REQUESTEDREGION': 'eu-west-1'}},
          {'aws:RequestedRegion': 'eu-west-1'},
        ),
      )
    })

    it('fails loudly on an operator or value it cannot read', () => {
      // The referee throws rather than guessing: a silent "no match" could hide a compiler bug.
      assert.throws(() => conditionHolds({StringEqualz: {'s3:prefix': 'a'}}, {}), PolicyEvaluationError)
      assert.throws(() => conditionHolds({NullIfExists: {'s3:prefix': 'true'}}, {}), PolicyEvaluationError)
      assert.throws(
        () => conditionHolds({NumericEquals: {'s3:max-keys': '${aws:username}'}}, {}),
        PolicyEvaluationError,
      )
      assert.throws(
        () => conditionHolds({IpAddress: {'aws:SourceIp': '10.0.0.0/33'}}, {}),
        PolicyEvaluationError,
      )
      assert.throws(
        () => decide({Version: '2012-10-17', Statement: {Effect: 'Allow', Action: '*'}}, 's3:GetObject', OBJ),
        PolicyEvaluationError,
      )
      assert.throws(
        () => decide({Version: '2012-10-18', Statement: allow('*')}, 's3:GetObject', OBJ),
        PolicyEvaluationError,
      )
    })
  })

  describe('policy variables', () => {
    const alice: ContextMap = {
      'aws:username': 'alice',
      'aws:userid': 'AIDAEXAMPLE',
      'aws:PrincipalTag/team': 'red',
    }

    it('substitutes request values into Resource and condition values', () => {
      // "Variables and tags": ${aws:username} and ${aws:PrincipalTag/team} take the request's values.
      const p = doc(
        allow('s3:GetObject', 'arn:aws:s3:::bucket/home/${aws:username}/*'),
        allow('s3:ListBucket', 'arn:aws:s3:::bucket', {
          StringLike: {'s3:prefix': ['${aws:PrincipalTag/team}/*']},
        }),
      )
      assert.equal(decide(p, 's3:GetObject', OBJ, alice), 'Allow')
      assert.equal(decide(p, 's3:GetObject', 'arn:aws:s3:::bucket/home/bob/x', alice), 'ImplicitDeny')
      assert.equal(
        decide(p, 's3:ListBucket', 'arn:aws:s3:::bucket', {...alice, 's3:prefix': 'red/x'}),
        'Allow',
      )
      assert.equal(
        decide(p, 's3:ListBucket', 'arn:aws:s3:::bucket', {...alice, 's3:prefix': 'blue/x'}),
        'ImplicitDeny',
      )
    })

    it('makes a variable with no value match no resource, even in NotResource', () => {
      // "Policy variables with no value": a Resource or NotResource entry holding a variable with no
      // value "will not match any resource".
      const p = doc(allow('s3:GetObject', 'arn:aws:s3:::bucket/home/${aws:username}/*'))
      assert.equal(decide(p, 's3:GetObject', 'arn:aws:s3:::bucket/home//x', {}), 'ImplicitDeny')
      assert.equal(
        decide(p, 's3:GetObject', 'arn:aws:s3:::bucket/home/${aws:username}/x', {}),
        'ImplicitDeny',
      )
      const notRes = doc({
        Effect: 'Allow',
        Action: 's3:GetObject',
        NotResource: 'arn:aws:s3:::bucket/home/${aws:username}/*',
      })
      assert.equal(decide(notRes, 's3:GetObject', OBJ, {}), 'Allow') // nothing excluded
      assert.equal(decide(notRes, 's3:GetObject', OBJ, alice), 'ImplicitDeny')
    })

    it('makes a variable with no value match nothing in a condition, so negated operators hold', () => {
      // "Policy variables with no value": StringEquals/StringLike do not match; StringNotEquals and
      // StringNotLike do, "as the value ... is not equal to or like the effectively null value".
      const ctx = {'s3:ExistingObjectTag/Team': 'red'}
      assert.ok(
        !conditionHolds({StringEquals: {'s3:ExistingObjectTag/Team': '${aws:PrincipalTag/Team}'}}, ctx),
      )
      assert.ok(
        conditionHolds({StringNotEquals: {'s3:ExistingObjectTag/Team': '${aws:PrincipalTag/Team}'}}, ctx),
      )
      assert.ok(
        conditionHolds({StringNotLike: {'s3:ExistingObjectTag/Team': '${aws:PrincipalTag/Team}*'}}, ctx),
      )
      // Other values for the same key still count.
      assert.ok(
        conditionHolds(
          {StringEquals: {'s3:ExistingObjectTag/Team': ['${aws:PrincipalTag/Team}', 'red']}},
          ctx,
        ),
      )
    })

    it("uses the default of ${key, 'default'} only when the key has no value", () => {
      // "Specifying default values": ${aws:PrincipalTag/team, 'company-wide'}.
      const p = doc(allow('s3:GetObject', "arn:aws:s3:::bucket-${aws:PrincipalTag/team, 'company-wide'}/*"))
      assert.equal(decide(p, 's3:GetObject', 'arn:aws:s3:::bucket-red/k', alice), 'Allow')
      assert.equal(decide(p, 's3:GetObject', 'arn:aws:s3:::bucket-company-wide/k', alice), 'ImplicitDeny')
      assert.equal(decide(p, 's3:GetObject', 'arn:aws:s3:::bucket-company-wide/k', {}), 'Allow')
    })

    it('reads ${*}, ${?} and ${$} as the literal characters', () => {
      // "Special characters": ${*} is a literal asterisk, not a wildcard; likewise ${?} and ${$}.
      const p = doc(allow('s3:GetObject', 'arn:aws:s3:::bucket/${*}${?}${$}/*'))
      assert.equal(decide(p, 's3:GetObject', 'arn:aws:s3:::bucket/*?$/k'), 'Allow')
      assert.equal(decide(p, 's3:GetObject', 'arn:aws:s3:::bucket/ab$/k'), 'ImplicitDeny')
      assert.ok(conditionHolds({StringLike: {'s3:prefix': 'a${*}'}}, {'s3:prefix': 'a*'}))
      assert.ok(!conditionHolds({StringLike: {'s3:prefix': 'a${*}'}}, {'s3:prefix': 'ab'}))
    })

    it('takes ${...} literally without Version 2012-10-17', () => {
      // "Variables and tags": without Version 2012-10-17 "variables like ${aws:username} are treated
      // as literal strings in the policy".
      for (const Version of ['2008-10-17', undefined]) {
        const p: PolicyDocument = {
          ...(Version ? {Version} : {}),
          Statement: [allow('s3:GetObject', 'arn:aws:s3:::bucket/${aws:username}/*')],
        }
        assert.equal(decide(p, 's3:GetObject', 'arn:aws:s3:::bucket/alice/k', alice), 'ImplicitDeny')
        assert.equal(decide(p, 's3:GetObject', 'arn:aws:s3:::bucket/${aws:username}/k', alice), 'Allow')
        const literal: PolicyDocument = {
          ...p,
          Statement: [allow('s3:GetObject', '*', {StringEquals: {'s3:prefix': '${aws:username}'}})],
        }
        assert.equal(
          decide(literal, 's3:GetObject', OBJ, {...alice, 's3:prefix': '${aws:username}'}),
          'Allow',
        )
      }
    })

    it('refuses a multivalued key as a variable', () => {
      // "Variables and tags": "You can't use a multivalued condition key as a variable."
      const p = doc(allow('s3:GetObject', 'arn:aws:s3:::bucket/${aws:TagKeys}'))
      assert.equal(decide(p, 's3:GetObject', 'arn:aws:s3:::bucket/a', {'aws:TagKeys': ['a']}), 'ImplicitDeny')
    })
  })

  describe('combining policy sets', () => {
    const identity = [doc(allow(['s3:*', 'ec2:Describe*']))]
    const boundary = doc(allow(['s3:GetObject', 's3:PutObject', 'ec2:*']), {
      Effect: 'Deny',
      Action: 's3:PutObject',
      Resource: 'arn:aws:s3:::locked/*',
    })

    it('gives an IAM user the intersection of its identity policies and its boundary', () => {
      // "Permissions boundaries for IAM entities": effective permissions are the intersection of the
      // identity-based policies and the boundary; an explicit deny in either wins.
      const user = {identity, boundary}
      assert.ok(userAllows(user, req('s3:GetObject', OBJ)))
      assert.ok(!userAllows(user, req('s3:DeleteObject', OBJ))) // not in the boundary
      assert.ok(!userAllows(user, req('ec2:RunInstances', '*'))) // not in the identity policies
      assert.ok(!userAllows(user, req('s3:PutObject', 'arn:aws:s3:::locked/k'))) // boundary Deny
      assert.ok(userAllows({identity}, req('s3:DeleteObject', OBJ)))
    })

    it('gives a role session the intersection of the role and the union of its session policies', () => {
      // "Session policies": the session's permissions are the intersection of the role's
      // identity-based policies and the session policies; a boundary still applies; any Deny wins.
      const role = {identity, boundary}
      const session = [
        doc(allow('s3:GetObject', 'arn:aws:s3:::bucket/*')),
        doc(allow('ec2:DescribeInstances')),
      ]
      assert.ok(sessionAllows(role, session, req('s3:GetObject', OBJ)))
      assert.ok(sessionAllows(role, session, req('ec2:DescribeInstances', '*')))
      assert.ok(!sessionAllows(role, session, req('s3:PutObject', OBJ))) // role allows, session does not
      assert.ok(!sessionAllows(role, [doc(allow('iam:*'))], req('iam:CreateUser', '*'))) // session cannot add
      assert.ok(
        !sessionAllows(
          role,
          [...session, doc({Effect: 'Deny', Action: '*', Resource: OBJ})],
          req('s3:GetObject', OBJ),
        ),
      )
      assert.ok(sessionAllows(role, [], req('s3:PutObject', OBJ))) // no session policy: the role alone
    })
  })

  describe('principal contexts', () => {
    const user = {
      name: 'alice',
      id: 'AIDAALICE',
      arn: 'arn:aws:iam::111122223333:user/staff/alice',
      tags: {team: 'red'},
    }
    const session = {
      roleArn: 'arn:aws:iam::111122223333:role/shared-host',
      roleId: 'AROAHOST',
      sessionName: 'alice',
      roleTags: {team: 'ops', tier: 'web'},
      sessionTags: {team: 'red'},
    }

    it('describes the IAM user and the role session as AWS does', () => {
      // "Variables and tags" > Principal key values: an assumed role has no aws:username and an
      // aws:userid of role-id:session-name; aws:PrincipalArn is the role ARN; session tags override role tags.
      assert.deepEqual(userPrincipalContext(user), {
        'aws:username': 'alice',
        'aws:userid': 'AIDAALICE',
        'aws:PrincipalArn': 'arn:aws:iam::111122223333:user/staff/alice',
        'aws:PrincipalType': 'User',
        'aws:PrincipalAccount': '111122223333',
        'aws:PrincipalTag/team': 'red',
      })
      const s = sessionPrincipalContext(session)
      assert.equal(s['aws:username'], undefined)
      assert.equal(s['aws:userid'], 'AROAHOST:alice')
      assert.equal(s['aws:PrincipalArn'], 'arn:aws:iam::111122223333:role/shared-host')
      assert.equal(s['aws:PrincipalTag/team'], 'red')
      assert.equal(s['aws:PrincipalTag/tier'], 'web')
    })

    it('builds both requests of one probe from the same action, resource and non-principal context', () => {
      const probe = req('s3:GetObject', OBJ, {'aws:SourceIp': '192.0.2.1', 'aws:username': 'mallory'})
      const pair = probePair(probe, {
        user: userPrincipalContext(user),
        session: sessionPrincipalContext(session),
      })
      assert.equal(pair.user.context['aws:username'], 'alice')
      assert.equal(pair.session.context['aws:username'], undefined)
      assert.equal(pair.user.context['aws:SourceIp'], '192.0.2.1')
      assert.equal(pair.session.context['aws:SourceIp'], '192.0.2.1')
      assert.equal(pair.session.resource, pair.user.resource)
      // The point of the table: ${aws:username} in a user policy means nothing in the session.
      const homes = doc(allow('s3:GetObject', 'arn:aws:s3:::bucket/home/${aws:username}/*'))
      assert.ok(evaluatePolicies([homes], pair.user) === 'Allow')
      assert.ok(evaluatePolicies([homes], pair.session) === 'ImplicitDeny')
    })
  })

  describe('request generator', () => {
    const userCtx = userPrincipalContext({
      name: 'alice',
      id: 'AIDAALICE',
      arn: 'arn:aws:iam::111122223333:user/alice',
      tags: {team: 'red'},
    })
    const policies = [
      doc(
        allow(
          ['s3:Get*', 's3:ListBucket'],
          ['arn:aws:s3:::bucket/home/${aws:username}/*', 'arn:aws:s3:::bucket'],
        ),
        allow('sts:GetCallerIdentity', '*', {
          IpAddress: {'aws:SourceIp': '203.0.113.0/24'},
          Bool: {'aws:SecureTransport': 'true'},
        }),
        {
          Effect: 'Deny',
          NotAction: 's3:*',
          Resource: '*',
          Condition: {'ForAnyValue:StringLike': {'aws:TagKeys': 'secret*'}},
        },
        {Effect: 'Allow', Action: 's3:PutObject', NotResource: 'arn:aws:s3:::bucket/locked/*'},
      ),
    ]
    let probes: RequestContext[] = []
    before(async () => {
      probes = await generateRequests(policies, {principalContext: userCtx, maxRequests: 3000})
    })

    it('is deterministic and bounded', async () => {
      const again = await generateRequests(policies, {principalContext: userCtx, maxRequests: 3000})
      assert.deepEqual(again, probes)
      assert.ok(probes.length <= 3000 && probes.length > 100)
      const small = await generateRequests(policies, {principalContext: userCtx, maxRequests: 50})
      assert.equal(small.length, 50)
    })

    it('covers catalog actions, future actions, wildcard instances and unrelated services', () => {
      const actions = new Set(probes.map((p) => p.action))
      for (const a of [
        's3:GetObject',
        's3:GetBucketPolicy',
        's3:ListBucket',
        's3:FutureActionZz9',
        's3:GetZz9Future',
        'sts:GetCallerIdentity',
      ])
        assert.ok(actions.has(a), a)
      assert.ok(
        [...actions].some((a) => a.startsWith('s3:') && !/^s3:(Get|ListBucket$)/i.test(a)),
        'an unmatched s3 action',
      )
      assert.ok(
        [...actions].some((a) => a.startsWith('sqs:')),
        'an unrelated service',
      )
      assert.ok(
        [...actions].some((a) => a !== a.toLowerCase() && a.startsWith('S3:')),
        'a case-swapped action',
      )
    })

    it('covers resources as written, expanded, instantiated and nearly missed', () => {
      const resources = new Set(probes.map((p) => p.resource))
      for (const r of [
        'arn:aws:s3:::bucket/home/alice/x1',
        'arn:aws:s3:::bucket/home/alice/',
        'arn:aws:s3:::bucket/home/alice/d1/d2',
        'arn:aws:s3:::bucket/home/zz9other/x1',
        'arn:aws:s3:::bucket/home/${aws:username}/x1',
        'arn:aws:s3:::bucket',
        'arn:aws:s3:::bucket-other',
        'arn:aws:s3:::bucket/extra',
        'arn:aws:s3:::bucket-other/home/alice/x1',
        'arn:aws:s3:::bucket/locked/x1',
      ])
        assert.ok(resources.has(r), r)
    })

    it('gives each condition key satisfying, violating and missing values', () => {
      const ips = new Set(probes.map((p) => p.context['aws:SourceIp']))
      assert.ok(ips.has('203.0.113.1') && ips.has('203.0.114.0') && ips.has(undefined))
      const secure = new Set(probes.map((p) => p.context['aws:SecureTransport']))
      assert.deepEqual([...secure].sort(), ['false', 'true', undefined])
      const tagSets = new Set(probes.map((p) => JSON.stringify(p.context['aws:TagKeys'] ?? 'absent')))
      assert.ok(
        tagSets.has('[]') && tagSets.has('"absent"') && [...tagSets].some((t) => t.includes('secretx1')),
      )
      assert.ok(
        probes.every((p) => !('aws:username' in p.context)),
        'principal keys are left to probePair',
      )
    })

    it('exercises every statement: each one applies to some probe and fails to apply to another', () => {
      const statements = (policies[0].Statement as Statement[]).map((st) => ({
        Version: '2012-10-17',
        Statement: [{...st, Effect: 'Allow' as const}],
      }))
      for (const single of statements) {
        const applied = probes.map(
          (p) => evaluatePolicies([single], {...p, context: {...p.context, ...userCtx}}) === 'Allow',
        )
        assert.ok(applied.includes(true) && applied.includes(false), JSON.stringify(single.Statement))
      }
      assert.ok(
        statementApplies(
          statements[0].Statement[0],
          '2012-10-17',
          req('s3:GetObject', 'arn:aws:s3:::bucket/home/alice/x1', userCtx),
        ),
      )
    })

    it("lets a harness tell an exact session policy from one that grants another user's home", async () => {
      // Given alice's home-directory policy, the instance role, and two candidate session policies
      const user = {identity: [doc(allow('s3:*Object', 'arn:aws:s3:::bucket/home/${aws:username}/*'))]}
      const role = {identity: [doc(allow('s3:*'))]}
      const sides = {
        user: userCtx,
        session: sessionPrincipalContext({
          roleArn: 'arn:aws:iam::111122223333:role/host',
          roleId: 'AROAHOST',
          sessionName: 'alice',
        }),
      }
      const exact = [doc(allow('s3:*Object', 'arn:aws:s3:::bucket/home/alice/*'))]
      const tooBroad = [doc(allow('s3:*Object', 'arn:aws:s3:::bucket/home/*'))]
      const mismatches = async (session: PolicyDocument[]) => {
        const found = await generateRequests([...user.identity, ...role.identity, ...session], {
          principalContext: [sides.user, sides.session],
          maxRequests: 1500,
        })
        return found.filter((probe) => {
          const pair = probePair(probe, sides)
          const expected = userAllows(user, pair.user) && sessionAllows(role, [], pair.session)
          return sessionAllows(role, session, pair.session) !== expected
        })
      }
      // Then only the too-broad one disagrees, on someone else's home
      assert.deepEqual(await mismatches(exact), [])
      const wrong = await mismatches(tooBroad)
      assert.ok(
        wrong.length > 0 && wrong.every((p) => !p.resource.startsWith('arn:aws:s3:::bucket/home/alice/')),
      )
    })

    it('computes addresses inside and just outside a CIDR range', () => {
      assert.deepEqual(ipProbes('10.1.2.0/24'), ['10.1.2.1', '10.1.3.0', '10.1.1.255'])
      assert.deepEqual(ipProbes('2001:db8::/32'), [
        '2001:db8:0:0:0:0:0:1',
        '2001:db9:0:0:0:0:0:0',
        '2001:db7:ffff:ffff:ffff:ffff:ffff:ffff',
      ])
    })
  })
})
