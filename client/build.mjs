// Build the browser client into ../collab/static, where the Python package serves it.
//
//   node build.mjs           one build (npm run build)
//   node build.mjs --watch   rebuild on every change (npm run dev); the server picks up
//                            new files without a restart, so reload the page
//
// The output is deterministic (same sources and lock file, same bytes): no timestamps, no
// absolute paths; chunk names carry content hashes, and index.html refers to the entry
// files as app.js?v=<hash of its content>. CI rebuilds and fails if the committed bundle
// differs from what the sources produce.
import * as esbuild from 'esbuild'
import { createHash } from 'node:crypto'
import { existsSync, mkdirSync, readFileSync, readdirSync, rmSync, statSync, writeFileSync } from 'node:fs'
import { dirname, join, relative } from 'node:path'
import { fileURLToPath } from 'node:url'
import { gzipSync } from 'node:zlib'

const here = dirname(fileURLToPath(import.meta.url))
const out = join(here, '..', 'collab', 'static')
const watch = process.argv.includes('--watch')

const short = data => createHash('sha256').update(data).digest('hex').slice(0, 12)

function files (dir) {
  return readdirSync(dir, { withFileTypes: true })
    .flatMap(entry => entry.isDirectory() ? files(join(dir, entry.name)) : [join(dir, entry.name)])
    .sort()
}

// Third-party licences of every package that ends up in the bundle, in one file.
function licenses (metafile) {
  const packages = new Set()
  for (const input of Object.keys(metafile.inputs)) {
    const match = /node_modules\/((?:@[^/]+\/)?[^/]+)\//.exec(input)
    if (match) packages.add(match[1])
  }
  const parts = ['Third-party software bundled in collab\'s browser client.\n']
  for (const name of [...packages].sort()) {
    const dir = join(here, 'node_modules', name)
    const pkg = JSON.parse(readFileSync(join(dir, 'package.json'), 'utf8'))
    const file = readdirSync(dir).sort().find(f => /^licen[cs]e/i.test(f))
    const text = file ? readFileSync(join(dir, file), 'utf8').trim() : `License: ${pkg.license}`
    parts.push(`${'='.repeat(78)}\n${name} ${pkg.version} (${pkg.license})\n${'='.repeat(78)}\n${text}\n`)
  }
  return parts.join('\n')
}

function finish (result) {
  if (result.errors.length > 0) return
  const js = readFileSync(join(out, 'app.js'))
  const css = readFileSync(join(out, 'app.css'))
  const html = readFileSync(join(here, 'src', 'index.html'), 'utf8')
    .replace('{{app.js}}', short(js))
    .replace('{{app.css}}', short(css))
  writeFileSync(join(out, 'index.html'), html)
  writeFileSync(join(out, 'favicon.svg'), readFileSync(join(here, 'src', 'favicon.svg')))
  writeFileSync(join(out, 'licenses.txt'), licenses(result.metafile))
  report(result.metafile)
}

// What each page downloads: the entry, the chunks it imports statically, and the stylesheet;
// the editor and the history page add their own chunk (and its static imports) on demand.
function pageFiles (metafile, entry) {
  const seen = new Set()
  const visit = file => {
    if (seen.has(file)) return
    seen.add(file)
    for (const dep of metafile.outputs[file].imports) {
      if (dep.kind === 'import-statement' && !dep.external) visit(dep.path)
    }
  }
  visit(entry)
  return seen
}

function report (metafile) {
  let raw = 0
  let gz = 0
  const rows = []
  for (const file of files(out)) {
    const data = readFileSync(file)
    const zipped = gzipSync(data, { level: 9 }).length
    const name = relative(out, file)
    if (!name.endsWith('.txt')) {
      raw += data.length
      gz += zipped
    }
    rows.push(`  ${name.padEnd(40)} ${String(data.length).padStart(9)} B  ${String(zipped).padStart(8)} B gzip`)
  }
  console.log(rows.join('\n'))
  console.log(`  ${'total (without licenses.txt)'.padEnd(40)} ${String(raw).padStart(9)} B  ${String(gz).padStart(8)} B gzip`)
  const outputs = Object.keys(metafile.outputs)
  const rel = file => relative(out, join(here, file)) // metafile paths are relative to here
  const entry = outputs.find(f => rel(f) === 'app.js')
  const base = pageFiles(metafile, entry)
  const pages = { 'document list (/)': base }
  for (const name of ['editor', 'history']) {
    const chunk = outputs.find(f => rel(f).startsWith(`chunks/${name}-`))
    pages[`${name} page`] = new Set([...base, ...pageFiles(metafile, chunk)])
  }
  for (const [page, set] of Object.entries(pages)) {
    const names = [...set].map(rel).concat(['app.css', 'index.html'])
    let pageRaw = 0
    let pageGz = 0
    for (const name of names) {
      const data = readFileSync(join(out, name))
      pageRaw += data.length
      pageGz += gzipSync(data, { level: 9 }).length
    }
    console.log(`  ${('loads for the ' + page).padEnd(40)} ${String(pageRaw).padStart(9)} B  ${String(pageGz).padStart(8)} B gzip`)
  }
}

const options = {
  absWorkingDir: here,
  entryPoints: { app: join(here, 'src', 'main.ts') },
  outdir: out,
  bundle: true,
  format: 'esm',
  splitting: true,
  chunkNames: 'chunks/[name]-[hash]',
  minify: true,
  target: ['es2020', 'chrome90', 'firefox90', 'safari15'],
  charset: 'utf8',
  external: ['/static/*'], // url(/static/favicon.svg) in the CSS: served as is
  legalComments: 'none', // the licences go to licenses.txt instead
  sourcemap: false,
  metafile: true,
  logLevel: 'warning',
  define: { 'process.env.NODE_ENV': '"production"' },
  plugins: [{ name: 'collab-finish', setup (build) { build.onEnd(finish) } }]
}

// Start from an empty directory so no stale chunk survives a rebuild.
if (existsSync(out) && statSync(out).isDirectory()) rmSync(out, { recursive: true })
mkdirSync(out, { recursive: true })

if (watch) {
  const context = await esbuild.context(options)
  await context.watch()
  console.log('watching client/src; the server serves each rebuild as soon as it is written')
} else {
  await esbuild.build(options)
}
