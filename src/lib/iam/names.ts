// IAM's rule for user and role names, in one place: [\w+=,.@-], 1 to 64 characters (the
// RoleName and UserName patterns of https://docs.aws.amazon.com/IAM/latest/APIReference/API_CreateRole.html
// and API_CreateUser.html). A name outside it cannot exist in IAM.
const IAM_NAME = /^[\w+=,.@-]{1,64}$/

export const isIamName = (name: string): boolean => IAM_NAME.test(name)
