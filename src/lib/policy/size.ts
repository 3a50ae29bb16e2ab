// The size AWS counts for AssumeRole's session policy: the inline policy plus the characters of
// every policy ARN, at most 2,048, counted as sent (whitespace counts; characters above U+00FF
// only as \uXXXX escapes). AWS's packed size (PackedPolicySize) is a different, unpublished
// measure reported only by AWS itself.

export const SESSION_POLICY_LIMIT = 2048

/** Escapes every character above U+00FF as \uXXXX, so the string's length is what AWS counts. */
export function escapeForSending(json: string): string {
  return json.replace(/[\u0100-\uffff]/g, (c) => `\\u${c.charCodeAt(0).toString(16).padStart(4, '0')}`)
}

export function sessionPolicySize(policy: string | null, policyArns: string[]): number {
  return (policy === null ? 0 : escapeForSending(policy).length) + policyArns.reduce((n, a) => n + a.length, 0)
}
