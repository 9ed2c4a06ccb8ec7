// Rich-text documents made and read by the real y-prosemirror (and Yjs), for collab's tests.
// Reads one JSON command on stdin, writes one JSON answer on stdout:
//   {"op": "from_json", "doc": <ProseMirror JSON>, "root": "prosemirror"}
//       -> {"update": base64}: prosemirrorJSONToYDoc with prosemirror-schema-basic + lists
//   {"op": "to_json", "update": base64, "root": "prosemirror"}
//       -> {"doc": yXmlFragmentToProsemirrorJSON of that root}
//   {"op": "lexical", "text": "Hello"} -> {"update": base64}: a document in the shape Lexical's Yjs binding
//       writes (an XmlText root "root", paragraphs as XmlTexts with __type, text-node
//       properties in a map embed before the text)
import * as Y from 'yjs'
import { Schema } from 'prosemirror-model'
import { schema as basic } from 'prosemirror-schema-basic'
import { addListNodes } from 'prosemirror-schema-list'
import { prosemirrorJSONToYDoc, yXmlFragmentToProsemirrorJSON } from 'y-prosemirror'

const schema = new Schema({
  nodes: addListNodes(basic.spec.nodes, 'paragraph block*', 'block'),
  marks: basic.spec.marks
})

const chunks = []
for await (const chunk of process.stdin) chunks.push(chunk)
const command = JSON.parse(Buffer.concat(chunks).toString('utf8'))
const encode = (doc) => Buffer.from(Y.encodeStateAsUpdate(doc)).toString('base64')
let answer
if (command.op === 'from_json') {
  answer = { update: encode(prosemirrorJSONToYDoc(schema, command.doc, command.root)) }
} else if (command.op === 'to_json') {
  const doc = new Y.Doc()
  Y.applyUpdate(doc, Buffer.from(command.update, 'base64'))
  answer = { doc: yXmlFragmentToProsemirrorJSON(doc.getXmlFragment(command.root)) }
} else if (command.op === 'lexical') {
  const doc = new Y.Doc()
  const root = doc.get('root', Y.XmlText)
  const paragraph = new Y.XmlText()
  root.insertEmbed(0, paragraph)
  paragraph.setAttribute('__type', 'paragraph')
  paragraph.setAttribute('__format', 0)
  paragraph.insertEmbed(0, new Y.Map([['__type', 'text'], ['__format', 1], ['__style', '']]))
  paragraph.insert(1, command.text ?? 'Hello')
  answer = { update: encode(doc) }
} else {
  throw new Error('unknown op ' + command.op)
}
process.stdout.write(JSON.stringify(answer))
