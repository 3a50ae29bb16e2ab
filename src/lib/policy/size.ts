// The size AWS counts for AssumeRole's session policy: the inline policy plus the characters of
// every policy ARN, at most 2,048, counted as sent (whitespace counts). IAM and STS take policy
// text only in tab, line feed, carriage return and U+0020 to U+00FF (the Policy parameter's
// pattern), so a character above U+00FF is sent, and counted, as its JSON escape \uXXXX. AWS's
// packed size (PackedPolicySize) is a different, unpublished measure reported only by AWS itself.

export const SESSION_POLICY_LIMIT = 2048

/**
 * JSON text with every character above U+00FF written as its escape \uXXXX (a character beyond
 * U+FFFF as its two surrogate escapes, as JSON spells it): the same document, in characters IAM
 * and STS accept, and its length is what AWS counts.
 */
export function escapeForSending(json: string): string {
  return json.replace(/[\u0100-\uffff]/g, (c) => `\\u${c.charCodeAt(0).toString(16).padStart(4, '0')}`)
}

/** The size of a session policy as sent: `policy` is the exact string sent (already escaped). */
export function sessionPolicySize(policy: string | null, policyArns: string[]): number {
  return (policy === null ? 0 : policy.length) + policyArns.reduce((n, a) => n + a.length, 0)
}
