// Regenerates what is rendered from src/lib/config/schema.ts: the README's configuration tables
// and the production sample configuration packaging/ec2userkeyd.conf.
//   node --import tsx scripts/readme-options.ts
import {readFileSync, writeFileSync} from 'node:fs'

import {renderSampleConfig, updateReadmeOptions} from '../src/lib/config/reference.js'

const readme = new URL('../README.md', import.meta.url)
writeFileSync(readme, updateReadmeOptions(readFileSync(readme, 'utf8')))
writeFileSync(new URL('../packaging/ec2userkeyd.conf', import.meta.url), renderSampleConfig())
