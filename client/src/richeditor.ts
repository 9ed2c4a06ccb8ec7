/**
 * `/d/{room}` for a rich-text document: a Tiptap 3 editor (StarterKit, Collaboration,
 * CollaborationCaret) on the document's main root, over y-websocket, with cursors and
 * presence, as a Tiptap app edits it.
 *
 * The editor must never delete what it does not understand, and y-prosemirror (Tiptap's
 * binding) does exactly that: a Yjs node or mark its schema cannot build is deleted from
 * the shared document ("probably a concurrent action"), and an attribute the schema does
 * not declare is removed the next time its node is edited. So the editor is bound to a
 * copy of the document, not to the one the provider syncs:
 *
 * - on connect, the synced document is checked against the editor's schema (every node
 *   and mark name, every attribute, and the structure); anything outside it and the page
 *   shows the document read-only instead (`richview.ts`), saying what it found;
 * - every update from the server is applied to the synced document, checked there, and
 *   only then passed to the copy; the first one that brings something outside the schema
 *   closes the editor (the copy never sees it) and the page turns read-only;
 * - the copy's own edits go to the synced document at once, and from there to the server.
 *
 * Both documents share one client id, so the edits are the same structs in both and the
 * cursors (relative positions) mean the same thing. Unlike the Markdown editor, edits are
 * not kept in IndexedDB: an edit made while offline is sent on reconnect if the page stays
 * open.
 */

import * as Y from 'yjs'
import { WebsocketProvider } from 'y-websocket'
import { Editor, getSchema } from '@tiptap/core'
import type { Schema } from '@tiptap/pm/model'
import StarterKit from '@tiptap/starter-kit'
import Collaboration from '@tiptap/extension-collaboration'
import CollaborationCaret from '@tiptap/extension-collaboration-caret'
import { yXmlFragmentToProsemirrorJSON } from '@tiptap/y-tiptap'

import { mainRoot, me } from './api'
import { bar } from './chrome'
import { askUser, problem } from './dialog'
import { h, icon, replace } from './dom'
import { initials, plural } from './format'
import { type User, loadUser, randomColor, saveUser, token } from './identity'
import { encodeRoom, historyPath } from './route'
import { SaveStatus, type Status, describe } from './status'

const FROM_SERVER = Symbol('from the server')
const FROM_EDITOR = Symbol('from the editor')

function extensions (): ReturnType<typeof StarterKit.configure>[] {
  return [StarterKit.configure({ undoRedo: false })] // Collaboration brings its own undo
}

/** The schema the editor has: StarterKit's nodes and marks. */
export function editorSchema (): Schema {
  return getSchema([...extensions(), Collaboration])
}

function checkText (schema: Schema, text: Y.XmlText): string | null {
  for (const op of text.toDelta() as Array<{ insert: unknown, attributes?: Record<string, unknown> }>) {
    if (typeof op.insert !== 'string') return 'an object embedded in a text'
    for (const [key, value] of Object.entries(op.attributes ?? {})) {
      const name = key.split('--')[0] // y-prosemirror's second mark of one type: "comment--a1b2"
      const mark = schema.marks[name]
      if (mark == null) return `a “${name}” mark`
      const known = mark.spec.attrs ?? {}
      for (const attr of Object.keys(typeof value === 'object' && value != null ? value : {})) {
        if (!(attr in known)) return `the attribute “${attr}” of a ${name} mark`
      }
    }
  }
  return null
}

function checkElement (schema: Schema, element: Y.XmlElement): string | null {
  const type = schema.nodes[element.nodeName]
  if (type == null || element.nodeName === 'doc' || element.nodeName === 'text') return `a “${element.nodeName}” node`
  const known = type.spec.attrs ?? {}
  for (const attr of Object.keys(element.getAttributes())) {
    if (!(attr in known)) return `the attribute “${attr}” of a ${element.nodeName} node`
  }
  for (const child of element.toArray()) {
    const found = child instanceof Y.XmlElement
      ? checkElement(schema, child)
      : child instanceof Y.XmlText ? checkText(schema, child) : 'an XML hook'
    if (found != null) return found
  }
  return null
}

/**
 * What in `fragment` the editor's schema cannot hold, in words; `null` when it can hold
 * all of it (names, attributes, and every node's content as the schema allows it).
 */
export function outsideSchema (schema: Schema, fragment: Y.XmlFragment): string | null {
  for (const child of fragment.toArray()) {
    if (!(child instanceof Y.XmlElement)) return 'text outside any block'
    const found = checkElement(schema, child)
    if (found != null) return found
  }
  try {
    schema.nodeFromJSON(yXmlFragmentToProsemirrorJSON(fragment)).check()
  } catch (error) {
    return `content the editor cannot nest that way (${error instanceof Error ? error.message : String(error)})`
  }
  return null
}

function websocketBase (): string {
  const scheme = window.location.protocol === 'https:' ? 'wss' : 'ws'
  return `${scheme}://${window.location.host}/ws`
}

export function richEditorPage (root: HTMLElement, room: string): void {
  document.title = `${room} · collab`
  let session: RichSession | null = null
  const top = bar(room, null, user => session?.rename(user))
  const status = h('div', { class: 'status', 'data-testid': 'status', 'data-state': 'connecting', role: 'status', 'aria-live': 'polite' })
  const people = h('div', { class: 'people', 'data-testid': 'people' })
  const history = h('a', { href: historyPath(room), class: 'button ghost', 'data-testid': 'history-link' }, icon('history'), h('span', null, 'History'))
  const readOnly = h('span', { class: 'badge', hidden: true, 'data-testid': 'read-only', title: 'Your access to this document is read-only: you see every change live, but cannot edit.' }, icon('lock', 13), 'Read only')
  top.tools.append(readOnly, status, people, history)
  const surface = h('main', { class: 'rich-view' })
  const footer = h('footer', { class: 'footer' }, h('span', null, 'Rich text (Tiptap)'))
  replace(root, top.element, surface, footer)

  const start = (user: User): void => {
    top.setUser(user)
    void mainRoot(room).catch(() => 'default').then(field => {
      session = new RichSession(room, field, user, { root, surface, status, people, readOnly })
    })
  }
  const user = loadUser()
  if (user != null) {
    start(user)
    return
  }
  void me(null).then(async info => {
    const chosen = info?.name != null ? saveUser(info.name, randomColor()) : await askUser(null)
    if (chosen != null) start(chosen)
  })
}

interface Parts {
  root: HTMLElement
  surface: HTMLElement
  status: HTMLElement
  people: HTMLElement
  readOnly: HTMLElement
}

class RichSession {
  private readonly synced = new Y.Doc() // what the provider syncs with the server
  private readonly copy = new Y.Doc() // what the editor is bound to
  private readonly provider: WebsocketProvider
  private readonly save: SaveStatus
  private readonly schema = editorSchema()
  private editor: Editor | null = null
  private closed = false
  private peopleKey = ''

  constructor (private readonly room: string, private readonly field: string, private user: User, private readonly parts: Parts) {
    this.copy.clientID = this.synced.clientID
    const params: Record<string, string> = { user: user.name }
    const bearer = token()
    if (bearer != null) params.token = bearer
    this.provider = new WebsocketProvider(websocketBase(), encodeRoom(room), this.synced, { params })
    this.provider.awareness.setLocalStateField('user', { name: user.name, color: user.color, colorLight: user.colorLight })
    this.save = new SaveStatus(this.synced, this.provider, status => this.showStatus(status))
    this.provider.awareness.on('change', this.showPeople)
    this.provider.once('sync', () => this.open())
    this.synced.on('update', this.fromServer)
    this.copy.on('update', this.fromEditor)
    ;(window as unknown as { collab: unknown }).collab = { doc: this.synced, copy: this.copy, provider: this.provider, field, session: this }
  }

  rename (user: User): void {
    this.user = user
    this.editor?.commands.updateUser({ name: user.name, color: user.color })
  }

  private open (): void {
    if (this.closed) return
    const fragment = this.synced.getXmlFragment(this.field)
    const found = outsideSchema(this.schema, fragment)
    if (found != null) {
      this.readOnly(found)
      return
    }
    Y.applyUpdate(this.copy, Y.encodeStateAsUpdate(this.synced), FROM_SERVER)
    const element = h('div', { class: 'rich-body rich-editor', 'data-testid': 'rich-editor' })
    replace(this.parts.surface, element)
    this.editor = new Editor({
      element,
      extensions: [
        ...extensions(),
        Collaboration.configure({ document: this.copy, field: this.field }),
        CollaborationCaret.configure({ provider: this.provider, user: { name: this.user.name, color: this.user.color } })
      ],
      editorProps: { attributes: { 'aria-label': `Document ${this.room}`, 'data-testid': 'editor' } }
    })
    void me(this.room).then(info => {
      if (info?.access === 'read') {
        this.parts.readOnly.hidden = false
        this.editor?.setEditable(false)
      }
    })
  }

  /** An update the synced document got (from the server): checked, then passed on. */
  private readonly fromServer = (update: Uint8Array, origin: unknown): void => {
    if (origin === FROM_EDITOR || this.editor == null) return
    const found = outsideSchema(this.schema, this.synced.getXmlFragment(this.field))
    if (found != null) {
      this.readOnly(found)
      return
    }
    Y.applyUpdate(this.copy, update, FROM_SERVER)
  }

  /** An edit made in the editor: to the synced document, and so to the server. */
  private readonly fromEditor = (update: Uint8Array, origin: unknown): void => {
    if (origin === FROM_SERVER || this.closed) return
    Y.applyUpdate(this.synced, update, FROM_EDITOR)
  }

  /** Close everything that could write, and show the document read-only, saying why. */
  private readOnly (found: string): void {
    if (this.closed) return
    this.closed = true
    this.editor?.destroy()
    this.editor = null
    this.save.destroy()
    this.provider.awareness.off('change', this.showPeople)
    this.provider.destroy()
    void import('./richview').then(({ richPage }) => {
      richPage(this.parts.root, this.room, found)
    })
  }

  private showStatus (status: Status): void {
    const { label, detail } = describe(status)
    const el = this.parts.status
    el.dataset.state = status.state
    el.dataset.pending = String(status.pending)
    el.title = detail
    replace(el, h('span', { class: 'dot', 'aria-hidden': 'true' }), h('span', { class: 'status-label' }, label))
    if (status.state === 'refused' && !this.closed) {
      // A permanent refusal (no access, deleted): stop, and say what the server said.
      this.closed = true
      this.editor?.destroy()
      this.editor = null
      replace(this.parts.surface, problem('alert', 'The server closed the connection',
        `${label}: ${detail}`, h('a', { href: '/', class: 'button primary' }, 'All documents')))
    }
  }

  private readonly showPeople = (): void => {
    const awareness = this.provider.awareness
    const everyone: Array<{ name: string, color: string, self: boolean }> = []
    awareness.getStates().forEach((state, clientId) => {
      const user = (state as { user?: Partial<User> }).user
      if (user?.name == null) return
      everyone.push({ name: String(user.name), color: String(user.color ?? '#888'), self: clientId === awareness.clientID })
    })
    everyone.sort((a, b) => Number(b.self) - Number(a.self) || a.name.localeCompare(b.name))
    const key = JSON.stringify(everyone)
    if (key === this.peopleKey) return
    this.peopleKey = key
    replace(this.parts.people, h('span', { class: 'people-button', title: everyone.map(p => p.name + (p.self ? ' (you)' : '')).join(', '), 'aria-label': `${plural(everyone.length, 'person', 'people')} here` },
      ...everyone.slice(0, 5).map(p => h('span', { class: 'avatar', style: `background:${p.color}`, 'data-testid': 'person', 'data-name': p.name }, initials(p.name)))))
  }
}
