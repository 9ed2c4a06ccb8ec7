/**
 * `/d/{room}`: the editor. CodeMirror 6 bound to the room's Y.Text "content" with
 * y-codemirror.next, synced by y-websocket and kept in this browser by y-indexeddb.
 */

import * as Y from 'yjs'
import { WebsocketProvider } from 'y-websocket'
import { IndexeddbPersistence, clearDocument } from 'y-indexeddb'
import { yCollab, yUndoManagerKeymap } from 'y-codemirror.next'
import { Compartment, EditorState } from '@codemirror/state'
import {
  EditorView, drawSelection, dropCursor, highlightSpecialChars, keymap, placeholder,
  rectangularSelection
} from '@codemirror/view'
import { defaultKeymap, indentWithTab } from '@codemirror/commands'
import { highlightSelectionMatches, searchKeymap } from '@codemirror/search'

import { lineageOf, me } from './api'
import { askUser, problem } from './dialog'
import { bar } from './chrome'
import { h, icon, replace } from './dom'
import { initials, plural } from './format'
import { type User, forgetToken, loadUser, randomColor, saveUser, token } from './identity'
import { markdownEditing } from './markdown'
import { encodeRoom, historyPath } from './route'
import { SaveStatus, type Status, describe } from './status'

/** The Y.Text every part of collab reads and writes (README: "Root name"). */
export const ROOT = 'content'

export function websocketBase (): string {
  const scheme = window.location.protocol === 'https:' ? 'wss' : 'ws'
  return `${scheme}://${window.location.host}/ws`
}

interface Presence {
  clientId: number
  name: string
  color: string
  self: boolean
}

export function editorPage (root: HTMLElement, room: string): void {
  document.title = `${room} · collab`
  let session: Session | null = null
  const top = bar(room, null, user => session?.rename(user))
  const status = h('div', { class: 'status', 'data-testid': 'status', 'data-state': 'connecting', role: 'status', 'aria-live': 'polite' })
  const people = h('div', { class: 'people', 'data-testid': 'people' })
  const history = h('a', { href: historyPath(room), class: 'button ghost', 'data-testid': 'history-link' }, icon('history'), h('span', null, 'History'))
  const readOnly = h('span', { class: 'badge', hidden: true, 'data-testid': 'read-only', title: 'Your access to this document is read-only: you see every change live, but cannot edit.' }, icon('lock', 13), 'Read only')
  top.tools.append(readOnly, status, people, history)
  const banner = h('div', { class: 'banner', hidden: true, 'data-testid': 'banner' })
  const surface = h('main', { class: 'surface' })
  const footer = h('footer', { class: 'footer' })
  replace(root, top.element, banner, surface, footer)

  const start = (user: User): void => {
    top.setUser(user)
    void staleCopy(room).then(async current => {
      if (current != null) {
        // The copy this browser kept is of a history the document no longer has: never
        // upload it (the server would refuse it anyway, 4410). Offer it, then start over.
        status.dataset.state = 'refused'
        surface.replaceChildren(await replacedCard(room, current, await offlineText(room)))
        return
      }
      session = new Session(room, user, { surface, status, people, banner, footer, root, history })
      // What the server lets us do here; a read-only document looks read-only.
      void me(room).then(info => {
        if (info?.access === 'read') {
          readOnly.hidden = false
          session?.setReadOnly(true)
        }
      })
    })
  }
  const user = loadUser()
  if (user != null) {
    start(user)
    return
  }
  // With a token that carries a name, that name is who we are; else ask.
  void me(null).then(async info => {
    const chosen = info?.name != null ? saveUser(info.name, randomColor()) : await askUser(null)
    if (chosen != null) start(chosen)
  })
}

interface Parts {
  root: HTMLElement
  history: HTMLElement
  surface: HTMLElement
  status: HTMLElement
  people: HTMLElement
  banner: HTMLElement
  footer: HTMLElement
}

class Session {
  private readonly doc = new Y.Doc()
  private readonly provider: WebsocketProvider
  private readonly local: IndexeddbPersistence
  private readonly save: SaveStatus
  private readonly view: EditorView
  private wordTimer: ReturnType<typeof setTimeout> | null = null
  private readonly editable = new Compartment()
  private peopleKey = ''
  private peopleOpen = false

  constructor (private readonly room: string, private user: User, private readonly parts: Parts) {
    const text = this.doc.getText(ROOT)
    // Edits made offline live in IndexedDB until the server has them; per origin and room.
    this.local = new IndexeddbPersistence(`collab:${room}`, this.doc)
    this.provider = new WebsocketProvider(websocketBase(), encodeRoom(room), this.doc, {
      params: this.params()
    })
    this.provider.awareness.setLocalStateField('user', user)
    // A document created here has a lineage only once the server has it: remember it then.
    this.provider.on('sync', (synced: boolean) => { if (synced) void rememberLineage(room) })
    this.save = new SaveStatus(this.doc, this.provider, status => this.showStatus(status))
    const undoManager = new Y.UndoManager(text)
    this.view = new EditorView({
      parent: parts.surface,
      state: EditorState.create({
        doc: text.toString(),
        extensions: [
          highlightSpecialChars(),
          drawSelection(),
          dropCursor(),
          rectangularSelection(),
          highlightSelectionMatches(),
          placeholder('Start writing… Markdown works: # heading, **bold**, - list'),
          keymap.of([...yUndoManagerKeymap, ...searchKeymap, indentWithTab, ...defaultKeymap]),
          markdownEditing(),
          yCollab(text, this.provider.awareness, { undoManager }),
          this.editable.of([]),
          EditorView.contentAttributes.of({ 'aria-label': `Document ${room}`, 'data-testid': 'editor' })
        ]
      })
    })
    this.provider.awareness.on('change', this.showPeople)
    this.doc.on('update', this.countWords)
    this.showPeople()
    this.countWords()
    window.addEventListener('pagehide', () => this.destroy())
    // A handle for tests and for poking around in the console.
    ;(window as unknown as { collab: unknown }).collab = { doc: this.doc, provider: this.provider, view: this.view, status: () => this.save.status }
    this.view.focus()
  }

  /** Use a new name from now on: in cursors at once, as the author on the next connection. */
  rename (user: User): void {
    this.user = user
    this.provider.awareness.setLocalStateField('user', user)
    this.provider.params = this.params()
    if (this.provider.wsconnected) {
      this.provider.disconnect()
      this.provider.connect()
    }
  }

  /** Read-only members' edits would be dropped by the server: do not let them type. */
  setReadOnly (readOnly: boolean): void {
    this.view.dispatch({
      effects: this.editable.reconfigure(readOnly ? [EditorState.readOnly.of(true), EditorView.editable.of(false)] : [])
    })
  }

  destroy (): void {
    this.save.destroy()
    this.provider.destroy()
    void this.local.destroy()
    this.view.destroy()
  }

  private params (): Record<string, string> {
    const params: Record<string, string> = { user: this.user.name }
    const bearer = token()
    if (bearer != null) params.token = bearer
    return params
  }

  private showStatus (status: Status): void {
    const { label, detail } = describe(status)
    const el = this.parts.status
    el.dataset.state = status.state
    el.dataset.pending = String(status.pending)
    el.title = detail
    replace(el, h('span', { class: 'dot', 'aria-hidden': 'true' }), h('span', { class: 'status-label' }, label))
    const banner = this.parts.banner
    if (status.state === 'unreachable' || (status.state === 'offline' && status.pending)) {
      banner.hidden = false
      replace(banner, icon('cloudOff'), h('span', null, h('strong', null, label + '. '), detail))
    } else {
      banner.hidden = true
    }
    if (status.state === 'refused') this.refused(status)
  }

  private refused (status: Status): void {
    const code = status.closeCode ?? 0
    const home = h('a', { href: '/', class: 'button primary' }, 'All documents')
    const retry = h('button', { type: 'button', class: 'button', onclick: () => window.location.reload() }, 'Try again')
    let card: HTMLElement
    if (code === 4400) {
      const shown = this.room.length > 60 ? this.room.slice(0, 57) + '…' : this.room
      card = problem('alert', 'This document name cannot be used',
        `The server refused “${shown}”${status.closeReason !== '' ? ` (${status.closeReason})` : ''}. ` +
        'Names may hold letters, digits, spaces, “/” and punctuation, but no control characters.', home)
    } else if (code === 4401 || code === 4408) {
      forgetToken()
      card = problem('lock', 'Sign-in needed',
        'This server only lets people with an access link edit. Open the link you were given (it ends in “?token=…”), or ask whoever runs the server for one.', home, retry)
    } else if (code === 4403) {
      card = problem('lock', 'No access to this document',
        'Your access link does not cover this document. Ask whoever runs the server for access.', home)
    } else if (code === 4404) {
      card = problem('alert', 'This document was deleted',
        'Someone deleted it. Whoever runs the server can bring it back, with its whole history, for a while after deletion.', home)
    } else if (code === 4410) {
      // The server refused this copy (another history: docs/lineage.md). Close the
      // IndexedDB copy (so it can be deleted), keep its text to offer it.
      const copy = this.doc.getText(ROOT).toString()
      void this.local.destroy()
      card = h('div')
      void lineageOf(this.room).then(
        info => card.replaceChildren(replacedCard(this.room, info?.lineage ?? null, copy)),
        () => card.replaceChildren(replacedCard(this.room, null, copy)))
    } else if (code === 4413) {
      card = problem('alert', 'This document is too large',
        'The last edit would make it larger than this server allows, so it was not saved. Reload to continue from what the server has.', home, retry)
    } else {
      card = problem('alert', 'The server closed the connection',
        `${status.closeReason !== '' ? status.closeReason : 'It gave no reason'} (code ${code}).`, home, retry)
    }
    this.parts.surface.replaceChildren(card)
    this.parts.surface.classList.add('refused')
    this.parts.people.replaceChildren()
    this.parts.history.hidden = true
    this.parts.footer.replaceChildren()
    this.peopleKey = ''
  }

  private readonly showPeople = (): void => {
    const awareness = this.provider.awareness
    const everyone: Presence[] = []
    awareness.getStates().forEach((state, clientId) => {
      const user = (state as { user?: Partial<User> }).user
      if (user?.name == null) return
      everyone.push({ clientId, name: String(user.name), color: String(user.color ?? '#888'), self: clientId === awareness.clientID })
    })
    everyone.sort((a, b) => Number(b.self) - Number(a.self) || a.name.localeCompare(b.name))
    // Cursor moves change awareness many times a second; redraw only when people change.
    const key = JSON.stringify(everyone)
    if (key === this.peopleKey) return
    this.peopleKey = key
    const shown = everyone.slice(0, 5)
    const list = h('ul', { class: 'people-list', 'data-testid': 'people-list' },
      ...everyone.map(p => h('li', { 'data-testid': 'person', 'data-name': p.name },
        h('span', { class: 'avatar small', style: `background:${p.color}` }, initials(p.name)),
        h('span', null, p.name), p.self ? h('span', { class: 'muted' }, ' (you)') : null)))
    const button = h('button', { type: 'button', class: 'people-button', 'aria-label': `${plural(everyone.length, 'person', 'people')} here`, title: everyone.map(p => p.name + (p.self ? ' (you)' : '')).join(', ') },
      ...shown.map(p => h('span', { class: 'avatar', style: `background:${p.color}` }, initials(p.name))),
      everyone.length > shown.length ? h('span', { class: 'avatar more' }, `+${everyone.length - shown.length}`) : null
    )
    const popover = h('div', { class: 'people-popover', hidden: !this.peopleOpen }, h('p', { class: 'popover-title' }, `Here now · ${everyone.length}`), list)
    button.addEventListener('click', () => {
      this.peopleOpen = !this.peopleOpen
      popover.hidden = !this.peopleOpen
    })
    replace(this.parts.people, button, popover)
  }

  private readonly countWords = (): void => {
    if (this.wordTimer != null) return
    this.wordTimer = setTimeout(() => {
      this.wordTimer = null
      const text = this.doc.getText(ROOT).toString()
      const words = text.split(/\s+/).filter(Boolean).length
      replace(this.parts.footer, h('span', null, plural(words, 'word')), h('span', null, plural(text.length, 'character')), h('span', null, 'Markdown'))
    }, 300)
  }
}


// -- lineage (docs/lineage.md) ----------------------------------------------------------

/** Where the lineage of the copy this browser keeps in IndexedDB is remembered. */
const lineageKey = (room: string): string => `collab:lineage:${room}`

/**
 * Whether the copy this browser keeps offline is of a history the document no longer has
 * (replaced, or purged and created again): the server's current lineage when it differs
 * from the one kept beside the copy, else null. Offline, or for a document not created
 * yet, nothing can be known: null (the server still refuses a stale upload with 4410).
 */
async function staleCopy (room: string): Promise<string | null> {
  let current: string | null
  try {
    current = (await lineageOf(room))?.lineage ?? null
  } catch {
    return null
  }
  if (current == null) return null
  const kept = localStorage.getItem(lineageKey(room))
  if (kept != null && kept !== current) return current
  localStorage.setItem(lineageKey(room), current)
  return null
}

async function rememberLineage (room: string): Promise<void> {
  if (localStorage.getItem(lineageKey(room)) != null) return
  try {
    const current = (await lineageOf(room))?.lineage
    if (current != null) localStorage.setItem(lineageKey(room), current)
  } catch {}
}

/** The text of the copy this browser keeps in IndexedDB, read without syncing it anywhere. */
async function offlineText (room: string): Promise<string> {
  const doc = new Y.Doc()
  const local = new IndexeddbPersistence(`collab:${room}`, doc)
  await local.whenSynced
  const text = doc.getText(ROOT).toString()
  await local.destroy()
  doc.destroy()
  return text
}

/**
 * The document was replaced while this browser held the old one: offer that copy as a
 * file, then forget it and open the document the server has now (its lineage kept, so
 * the next visit does not ask again).
 */
function replacedCard (room: string, current: string | null, copy: string): HTMLElement {
  const file = `${room.replace(/[^\p{L}\p{N} ._-]+/gu, '_')} (offline copy).md`
  const download = h('a', {
    class: 'button primary',
    href: URL.createObjectURL(new Blob([copy], { type: 'text/markdown' })),
    download: file,
    'data-testid': 'offline-copy'
  }, 'Download your offline copy')
  const reopen = h('button', {
    type: 'button',
    class: 'button',
    'data-testid': 'open-current',
    onclick: () => {
      if (current != null) localStorage.setItem(lineageKey(room), current)
      else localStorage.removeItem(lineageKey(room))
      void clearDocument(`collab:${room}`).then(() => window.location.reload())
    }
  }, 'Open the current document')
  return problem('alert', 'This document was replaced',
    'While this browser kept a copy of it, the document was replaced by another one. ' +
    'Your offline copy of the old document was not uploaded: download it if you need it, ' +
    'then open the current document (this browser forgets the old copy).', download, reopen)
}
