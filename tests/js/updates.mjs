#!/usr/bin/env node
// Writes the Yjs updates and state vectors that real Yjs (JavaScript) produces, so the
// Python tests can check that collab's validator refuses none of them.
//
// Three documents edit concurrently with a seeded random mix of every kind of content Yjs
// encodes: text with formatting and embeds (and astral characters split by deletes),
// arrays and maps of every value lib0's writeAny knows (integers, floats, bigints,
// undefined, null, strings, Uint8Array, nested objects), nested shared types, XML
// elements, XML text and XML hooks, subdocuments, undo and redo, and syncs between the
// documents. Every update event is written, and also full states, diffs, merges and
// state vectors. One JSON object per line: {"kind": "update" | "state_vector", "hex": ...}.
//
//   node updates.mjs --seed 1 --edits 400

import * as Y from 'yjs'

const args = Object.fromEntries(
  process.argv.slice(2).reduce((pairs, arg, i, all) => {
    if (arg.startsWith('--')) pairs.push([arg.slice(2), all[i + 1]])
    return pairs
  }, [])
)
let seed = Number(args.seed ?? 1) >>> 0
const edits = Number(args.edits ?? 300)

// mulberry32: small, seedable, good enough for choosing edits.
const random = () => {
  seed = (seed + 0x6d2b79f5) >>> 0
  let t = seed
  t = Math.imul(t ^ (t >>> 15), t | 1)
  t ^= t + Math.imul(t ^ (t >>> 7), t | 61)
  return ((t ^ (t >>> 14)) >>> 0) / 4294967296
}
const int = (n) => Math.floor(random() * n)
const pick = (items) => items[int(items.length)]

const out = []
const emit = (kind, bytes) => out.push(JSON.stringify({ kind, hex: Buffer.from(bytes).toString('hex') }))

const docs = [0, 1, 2].map((i) => {
  const doc = new Y.Doc()
  doc.clientID = 1 + int(2 ** 31) + i // like a browser's, but seeded
  doc.on('update', (update) => emit('update', update))
  return doc
})
const undo = docs.map((doc) => new Y.UndoManager([doc.getText('text'), doc.getArray('array')]))

const strings = ['a', 'hello ', '😀', 'a😀b', '\n', 'élan ', '中文', '🎉🎉', '']
const values = () => [
  int(100), -int(2 ** 31), 2 ** 40 + int(1000), Number.MAX_SAFE_INTEGER, random(), -1.5, 1e300,
  BigInt(int(1000)) * 10n ** 15n, -(2n ** 63n), undefined, null, true, false, pick(strings),
  new Uint8Array([int(256), 0, 255]), { nested: { deep: [1, 'two', null] }, n: int(9) },
  [1, [2, [3, [4]]]], '', {},
]

const edit = (doc, i) => {
  const text = doc.getText('text')
  const array = doc.getArray('array')
  const map = doc.getMap('map')
  const xml = doc.getXmlFragment('prosemirror')
  switch (int(16)) {
    case 0: case 1: case 2:
      text.insert(int(text.length + 1), pick(strings.filter((s) => s)), random() < 0.3 ? { bold: true } : undefined)
      break
    case 3:
      if (text.length) { const at = int(text.length); text.delete(at, 1 + int(Math.min(4, text.length - at))) }
      break
    case 4:
      if (text.length) text.format(int(text.length), 1 + int(3), pick([{ italic: true }, { bold: null }, { link: { href: 'https://example.com' } }]))
      break
    case 5:
      text.insertEmbed(int(text.length + 1), { image: 'data:x', width: int(500) })
      break
    case 6:
      array.insert(int(array.length + 1), [pick(values())])
      break
    case 7:
      if (array.length) array.delete(int(array.length), 1)
      else array.push([new Y.Map(), new Y.Array(), new Y.Text('inner')])
      break
    case 8:
      map.set(pick(['a', 'b', 'c', 'ключ', '']), pick(values()))
      break
    case 9: {
      const nested = new Y.Map()
      map.set('nested' + int(3), nested)
      nested.set('text', new Y.Text('t' + i))
      nested.set('list', Y.Array.from([1, 2, 3]))
      break
    }
    case 10:
      if (map.size) map.delete(pick([...map.keys()]))
      break
    case 11: {
      const paragraph = new Y.XmlElement(pick(['paragraph', 'heading', 'blockquote']))
      paragraph.setAttribute('level', String(1 + int(3)))
      const inline = new Y.XmlText()
      paragraph.insert(0, [inline])
      xml.insert(int(xml.length + 1), [paragraph])
      inline.insert(0, pick(strings.filter((s) => s)), random() < 0.5 ? { strong: {} } : {})
      break
    }
    case 12:
      if (xml.length) {
        const child = xml.get(int(xml.length))
        if (child instanceof Y.XmlElement) child.setAttribute('data-n', String(int(99)))
        if (random() < 0.3) xml.delete(int(xml.length), 1)
      } else {
        xml.insert(0, [new Y.XmlHook('hook')])
      }
      break
    case 13:
      map.set('subdoc' + int(2), new Y.Doc({ guid: 'sub-' + int(1e6), meta: { owner: 'x' } }))
      break
    case 14:
      if (random() < 0.5) undo[docs.indexOf(doc)].undo()
      else undo[docs.indexOf(doc)].redo()
      break
    default:
      doc.transact(() => {
        text.insert(0, 'tx')
        array.push([int(10)])
        map.set('t', i)
      })
  }
}

let refused = 0
for (let i = 0; i < edits; i++) {
  const doc = pick(docs)
  try {
    edit(doc, i)
  } catch (error) {
    refused++ // a value this Yjs does not store in that place (a bigint in an array): skip it
  }
  if (random() < 0.1) {
    const [a, b] = [pick(docs), pick(docs)]
    if (a !== b) Y.applyUpdate(b, Y.encodeStateAsUpdate(a, Y.encodeStateVector(b)))
  }
}
for (const doc of docs) {
  emit('update', Y.encodeStateAsUpdate(doc))
  emit('update', Y.encodeStateAsUpdate(doc, Y.encodeStateVector(docs[0])))
  emit('state_vector', Y.encodeStateVector(doc))
}
const updates = out.filter((line) => line.includes('"update"')).map((line) => Buffer.from(JSON.parse(line).hex, 'hex'))
for (let i = 0; i < 10; i++) {
  const some = updates.filter(() => random() < 0.2)
  if (some.length) emit('update', Y.mergeUpdates(some))
}
emit('state_vector', Y.encodeStateVector(new Y.Doc()))
emit('update', Y.encodeStateAsUpdate(new Y.Doc()))
process.stderr.write(`updates.mjs: ${out.length} lines, ${refused} edits Yjs refused\n`)
process.stdout.write(out.join('\n') + '\n')
