// Regenerates the README's configuration tables from src/lib/config/schema.ts:
//   node --import tsx scripts/readme-options.ts
import {readFileSync, writeFileSync} from 'node:fs'

import {updateReadmeOptions} from '../src/lib/config/reference.js'

const file = new URL('../README.md', import.meta.url)
writeFileSync(file, updateReadmeOptions(readFileSync(file, 'utf8')))
