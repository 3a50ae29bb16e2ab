// Policy documents on the wire: reading the JSON text a client sends (with the checks IAM
// makes before storing it), remembering that text, and answering it URL-encoded the way
// GetRolePolicy, GetPolicyVersion and GetRole do.
import {
  DocumentError,
  PolicyDocument,
  statementsOf,
  validatePolicyDocument,
} from '../../../src/lib/iam/document.js'
import {AwsError} from './protocol.js'

/**
 * The text each document arrived as. IAM answers a document as it was sent, and sizes
 * it from that text; documents read from a snapshot have no such text and are answered
 * (and sized) as minified JSON.
 */
const sentText = new WeakMap<PolicyDocument, string>()

export function documentText(doc: PolicyDocument): string {
  return sentText.get(doc) ?? JSON.stringify(doc)
}

/** The size IAM quotas count: the document's length as sent. */
export function documentSize(doc: PolicyDocument): number {
  return documentText(doc).length
}

export function encodedDocument(doc: PolicyDocument): string {
  return encodeURIComponent(documentText(doc))
}

export type DocumentKind = 'identity' | 'trust' | 'session'

/**
 * Parses and checks a document as IAM/STS would before accepting it, failing with
 * MalformedPolicyDocument. Identity policies need Action and Resource and may not name a
 * Principal; trust policies need a Principal; session policies are checked like identity ones.
 */
export function readPolicyDocument(text: string, kind: DocumentKind): PolicyDocument {
  // Every IAM and STS policy parameter has this pattern: tab, LF, CR and U+0020 to U+00FF.
  // eslint-disable-next-line no-control-regex
  if (!/^[\u0009\u000A\u000D\u0020-\u00FF]+$/.test(text))
    throw new AwsError(
      'ValidationError',
      `1 validation error detected: Value at '${kind === 'session' ? 'policy' : kind === 'trust' ? 'assumeRolePolicyDocument' : 'policyDocument'}' failed to satisfy constraint: Member must satisfy regular expression pattern: [\\u0009\\u000A\\u000D\\u0020-\\u00FF]+`,
    )
  let json: unknown
  try {
    json = JSON.parse(text)
  } catch {
    throw new AwsError('MalformedPolicyDocument', 'Syntax errors in policy.')
  }
  let doc: PolicyDocument
  try {
    doc = validatePolicyDocument(json)
  } catch (error) {
    if (error instanceof DocumentError)
      throw new AwsError('MalformedPolicyDocument', `The policy ${error.message}.`)
    throw error
  }
  for (const st of statementsOf(doc)) {
    if (!('Action' in st) && !('NotAction' in st))
      throw new AwsError('MalformedPolicyDocument', 'Policy statement must contain actions.')
    if ('Action' in st && 'NotAction' in st) throw new AwsError('MalformedPolicyDocument', 'Statement cannot have both Action and NotAction.')
    if ('Resource' in st && 'NotResource' in st) throw new AwsError('MalformedPolicyDocument', 'Statement cannot have both Resource and NotResource.')
    const hasPrincipal = 'Principal' in st || 'NotPrincipal' in st
    if (kind === 'trust') {
      if (!hasPrincipal)
        throw new AwsError(
          'MalformedPolicyDocument',
          'AssumeRolepolicy contained an invalid principal: the statement has no Principal.',
        )
      if ('Resource' in st || 'NotResource' in st)
        throw new AwsError('MalformedPolicyDocument', 'Has prohibited field Resource')
    } else {
      if (hasPrincipal)
        throw new AwsError('MalformedPolicyDocument', 'Policy document should not specify a principal.')
      if (!('Resource' in st) && !('NotResource' in st))
        throw new AwsError('MalformedPolicyDocument', 'Policy statement must contain resources.')
    }
  }
  sentText.set(doc, text)
  return doc
}
