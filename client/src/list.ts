/**
 * `/`: the document list. Most recently edited first, with who is in each document
 * right now; search filters as you type, and Enter opens the name typed (creating the
 * document if it does not exist yet: a document exists once someone opens it).
 *
 * Each row says what kind the document is, text (collab's Markdown) or rich text (Tiptap,
 * ProseMirror, BlockNote, Lexical). The list endpoint does not say, so each kind is asked
 * for once per page load (`docShape`, a few at a time) and drawn when it arrives.
 */

import { ApiError, type DocSummary, type Kind, docShape, listDocs } from './api'
import { bar } from './chrome'
import { ask, problem } from './dialog'
import { h, icon, replace } from './dom'
import { ago, bytes, initials, plural, when } from './format'
import { editorPath } from './route'

const REFRESH_MS = 10_000
const PAGE = 50
const KIND_REQUESTS = 3 // kinds asked for at once

const KIND_LABELS: Record<Kind, [string, string]> = {
  text: ['Text', 'Text: opens in collab\'s Markdown editor'],
  rich: ['Rich text', 'Rich text, written by a rich-text editor (Tiptap/ProseMirror): opens in a rich-text editor, or read-only when it holds what that editor does not know'],
  other: ['Data', 'Yjs data without text (maps or arrays)']
}

/** The kinds known, by document name; `null` while asking. Kept for the page's life. */
const kinds = new Map<string, Kind | null>()

export function checkName (name: string): string | null {
  if (/[\u0000-\u001f\u007f]/.test(name)) return 'A name cannot contain control characters.'
  if (name.length > 512) return 'Please use at most 512 characters.'
  return null
}

export function listPage (root: HTMLElement): void {
  document.title = 'Documents · collab'
  const top = bar(null, null, () => {})
  const params = new URLSearchParams(window.location.search)
  const search = h('input', {
    type: 'search',
    class: 'search-input',
    placeholder: 'Search, or type a name and press Enter to open it',
    value: params.get('q') ?? '',
    'aria-label': 'Search documents',
    autocomplete: 'off',
    spellcheck: 'false',
    'data-testid': 'search'
  })
  const create = h('button', { type: 'button', class: 'button primary', 'data-testid': 'new-document' }, icon('plus'), h('span', null, 'New document'))
  const summary = h('p', { class: 'muted list-summary', 'data-testid': 'summary' })
  const body = h('div', { class: 'doc-list', 'data-testid': 'doc-list' })
  const more = h('button', { type: 'button', class: 'button', hidden: true, 'data-testid': 'more' }, 'Show more')
  const content = h('main', { class: 'page' },
    h('div', { class: 'page-head' },
      h('h1', null, 'Documents'),
      create
    ),
    h('label', { class: 'search' }, icon('search'), search),
    summary,
    body,
    h('div', { class: 'list-foot' }, more)
  )
  replace(root, top.element, content)

  let docs: DocSummary[] = []
  let next: string | null = null
  let query = search.value.trim()
  let generation = 0

  const open = (name: string): void => { window.location.href = editorPath(name) }

  const render = (): void => {
    const exact = query !== '' && docs.some(d => d.name === query)
    const rows: HTMLElement[] = []
    if (query !== '' && !exact && checkName(query) == null) {
      rows.push(h('a', { class: 'doc-row create-row', href: editorPath(query), 'data-testid': 'create-row' },
        h('span', { class: 'doc-icon accent' }, icon('plus')),
        h('span', { class: 'doc-name' }, h('span', null, 'Create '), h('strong', null, `“${query}”`)),
        h('span', { class: 'muted' }, 'new document'), h('span', null), h('span', null)
      ))
    }
    for (const doc of docs) rows.push(row(doc))
    if (docs.length === 0 && query === '') {
      replace(body, h('div', { class: 'empty' },
        h('div', { class: 'empty-icon' }, icon('file', 28)),
        h('h2', null, 'No documents yet'),
        h('p', { class: 'muted' }, 'Create the first one: everyone who opens its link edits it with you, live.'),
        h('button', { type: 'button', class: 'button primary', onclick: () => create.click() }, icon('plus'), h('span', null, 'New document'))
      ))
    } else {
      replace(body,
        h('div', { class: 'doc-row doc-head', role: 'presentation' },
          h('span', null), h('span', null, 'Name'), h('span', null, 'Last edited'), h('span', null, 'Here now'), h('span', { class: 'num' }, 'Size')),
        ...rows,
        docs.length === 0 ? h('p', { class: 'muted none' }, `No document name contains “${query}”.`) : null
      )
    }
    summary.textContent = query === ''
      ? (docs.length > 0 ? `${plural(docs.length, 'document')}${next != null ? ' (more below)' : ''}, most recently edited first` : '')
      : `${plural(docs.length, 'match', 'matches')}${next != null ? ' so far' : ''} for “${query}”`
    more.hidden = next == null
  }

  const load = async (append: boolean): Promise<void> => {
    const mine = ++generation
    try {
      // A refresh re-reads as many documents as are shown, so "Show more" pages stay.
      const limit = append ? PAGE : Math.min(200, Math.max(PAGE, docs.length))
      const page = await listDocs(query, append ? next : null, limit)
      if (mine !== generation) return // a newer search won
      docs = append ? docs.concat(page.docs) : page.docs
      next = page.next
      render()
      askKinds(docs.map(d => d.name), render)
    } catch (error) {
      if (mine !== generation) return
      if (error instanceof ApiError && (error.status === 401 || error.status === 403)) {
        replace(body, problem('lock', 'Sign-in needed', 'This server only lists documents for people with an access link. Open the link you were given (it ends in “?token=…”).'))
      } else if (docs.length === 0) {
        replace(body, problem('cloudOff', "Can't reach the server", 'The document list could not be loaded. It is retried every few seconds.',
          h('button', { type: 'button', class: 'button', onclick: () => { void load(false) } }, 'Try again')))
      } else {
        summary.textContent = "Can't reach the server: showing the last list loaded."
      }
    }
  }

  let typing: ReturnType<typeof setTimeout> | null = null
  search.addEventListener('input', () => {
    if (typing != null) clearTimeout(typing)
    typing = setTimeout(() => {
      query = search.value.trim()
      const url = new URL(window.location.href)
      if (query === '') url.searchParams.delete('q')
      else url.searchParams.set('q', query)
      window.history.replaceState(null, '', url.pathname + url.search)
      next = null
      void load(false)
    }, 150)
  })
  search.addEventListener('keydown', event => {
    if (event.key !== 'Enter') return
    const name = search.value.trim()
    if (name === '' || checkName(name) != null) return
    open(name)
  })
  create.addEventListener('click', () => {
    void ask({
      title: 'New document',
      text: 'Pick a name. Use “/” to group documents, like “team/notes/monday”. Opening a name that exists opens that document.',
      label: 'Document name',
      value: query,
      placeholder: 'e.g. team/notes/monday',
      submit: 'Create and open',
      check: checkName
    }).then(name => { if (name != null) open(name) })
  })
  more.addEventListener('click', () => { void load(true) })

  void load(false)
  setInterval(() => {
    if (document.visibilityState === 'visible') void load(false)
  }, REFRESH_MS)
  search.focus()
}

let asking = 0
const waiting: string[] = []

/** Ask for the kind of every document in `names` not known yet; `done` redraws. */
function askKinds (names: string[], done: () => void): void {
  for (const name of names) {
    if (kinds.has(name)) continue
    kinds.set(name, null)
    waiting.push(name)
  }
  const pump = (): void => {
    while (asking < KIND_REQUESTS && waiting.length > 0) {
      const name = waiting.shift()!
      asking++
      docShape(name).then(shape => {
        kinds.set(name, shape.kind)
        done()
      }, () => {
        kinds.delete(name) // asked again at the next refresh
      }).finally(() => {
        asking--
        pump()
      })
    }
  }
  pump()
}

function kindBadge (name: string): HTMLElement | null {
  const kind = kinds.get(name)
  if (kind == null) return null
  const [label, title] = KIND_LABELS[kind]
  return h('span', { class: `kind ${kind}`, title, 'data-testid': 'kind' }, label)
}

function row (doc: DocSummary): HTMLElement {
  const slash = doc.name.lastIndexOf('/')
  const folder = slash >= 0 ? doc.name.slice(0, slash + 1) : ''
  const base = slash >= 0 ? doc.name.slice(slash + 1) : doc.name
  const people = h('span', { class: 'doc-people' })
  for (const person of doc.people.slice(0, 4)) {
    people.append(h('span', { class: 'avatar small', style: `background:${person.color || '#888'}`, title: person.name }, initials(person.name)))
  }
  if (doc.online > 0) {
    const names = doc.people.map(p => p.name)
    people.append(h('span', { class: 'muted' }, names.length > 0 ? names.slice(0, 2).join(', ') + (names.length > 2 ? ` +${names.length - 2}` : '') : plural(doc.online, 'person', 'people')))
  } else {
    people.append(h('span', { class: 'faint' }, '—'))
  }
  const kind = kinds.get(doc.name)
  return h('a', { class: 'doc-row', href: editorPath(doc.name), 'data-testid': 'doc-row', 'data-name': doc.name, 'data-kind': kind ?? null },
    h('span', { class: 'doc-icon' }, icon(kind === 'rich' ? 'rich' : 'file')),
    h('span', { class: 'doc-name', title: doc.name }, folder !== '' ? h('span', { class: 'folder' }, folder) : null, h('span', null, base === '' ? '(untitled)' : base),
      kindBadge(doc.name),
      doc.access === 'read' ? h('span', { class: 'badge small', title: 'You can read this document, not edit it' }, icon('lock', 11), 'read only') : null),
    h('span', { class: 'muted', title: when(doc.updated) }, ago(doc.updated)),
    people,
    h('span', { class: 'num muted', title: `${plural(doc.updates, 'stored update')}` }, bytes(doc.size))
  )
}
