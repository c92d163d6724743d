// Part of `npm run build`: tsc emits only JavaScript, so copy every other file under src/ (the
// registry dashboard's page, script, styles and icon) to the same place under dist/.
import { cpSync, statSync } from 'node:fs'

cpSync('src', 'dist', {
  recursive: true,
  filter: (source) => statSync(source).isDirectory() || !source.endsWith('.ts'),
})
