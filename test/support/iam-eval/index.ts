// The referee for the session-policy compiler: an IAM evaluator written from the AWS docs, the
// two principal contexts it is judged under, and a probe-request generator. See README.md.
export {
  evaluatePolicies,
  sessionAllows,
  statementApplies,
  userAllows,
  validatePolicy,
  type PrincipalPolicies,
} from './evaluate.js'
export {resourcePolicyDecision, sessionMay, userMay, type PrincipalRef, type SessionWorld, type Target, type UserWorld} from './account.js'
export {generateRequests, ipProbes, nearMisses, type GenerateOptions} from './requests.js'
export {
  isPrincipalKey,
  probePair,
  roleSessionContext,
  sessionPrincipalContext,
  userCredentialContexts,
  userPrincipalContext,
  type IamUserIdentity,
  type RoleSessionIdentity,
} from './principals.js'
export {
  PolicyEvaluationError,
  type ContextMap,
  type ContextValue,
  type Decision,
  type RequestContext,
} from './types.js'
