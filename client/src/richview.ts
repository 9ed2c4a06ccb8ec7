/**
 * `/d/{room}` for a rich-text document no editor here can edit safely: one holding nodes,
 * marks or attributes outside the rich-text editor's schema (`richeditor.ts`), or a root
 * that is not a ProseMirror fragment (Lexical's). Shown read-only, formatted, from the
 * server's HTML of the newest version, and redrawn when the document changes (its newest
 * seq is polled while the page is visible: one timeline row, cheap for the server).
 *
 * The Markdown editor edits the Y.Text `content`, so typing into it would start a second
 * copy beside the rich text and make that copy the document's main root; the rich-text
 * editor would delete what its schema does not know. So the page never opens a
 * connection that could write: it says what the document is and links to its history,
 * where versions are shown formatted and can be restored.
 */

import { ApiError, contentHtml, mainRoot, newest } from './api'
import { bar } from './chrome'
import { problem } from './dialog'
import { h, icon, replace } from './dom'
import { ago, whenPrecisely } from './format'
import { isEmpty, richNodes } from './rich'
import { historyPath } from './route'

const POLL_MS = 5000

export const NOTICE = "This document is rich text, written by another editor (Tiptap/ProseMirror); collab's editor shows it read-only."

/**
 * Show `room` read-only. `found` says what the rich-text editor could not hold, when that
 * is why (`richeditor.ts`); without it, the document is one no editor here opens.
 */
export function richPage (root: HTMLElement, room: string, found: string | null = null): void {
  document.title = `${room} · collab`
  const top = bar(room, null, () => {})
  const history = h('a', { href: historyPath(room), class: 'button ghost', 'data-testid': 'history-link' }, icon('history'), h('span', null, 'History'))
  const badge = h('span', { class: 'badge', 'data-testid': 'read-only', title: NOTICE }, icon('lock', 13), 'Read only')
  top.tools.append(badge, history)
  const notice = h('div', { class: 'notice', role: 'note', 'data-testid': 'rich-notice' },
    icon('info'),
    h('span', null, NOTICE, ' ',
      found != null ? `It holds ${found}, which this editor's schema does not know, and editing it here could delete what the editor does not understand. ` : null,
      h('a', { href: historyPath(room), 'data-testid': 'notice-history-link' }, 'See its history'),
      ', with every version formatted and who changed what, and restore a version from there.'))
  const body = h('div', { class: 'text-body rich-body', 'data-testid': 'rich-text', 'aria-label': `Document ${room}` })
  const surface = h('main', { class: 'rich-view' }, body)
  const footer = h('footer', { class: 'footer' })
  replace(root, top.element, notice, surface, footer)
  void new RichView(room, body, footer).start()
}

class RichView {
  private seq = -1
  private root: string | null = null

  constructor (private readonly room: string, private readonly body: HTMLElement, private readonly footer: HTMLElement) {}

  async start (): Promise<void> {
    await this.refresh()
    setInterval(() => {
      if (document.visibilityState === 'visible') void this.refresh()
    }, POLL_MS)
  }

  private async refresh (): Promise<void> {
    try {
      const info = await newest(this.room)
      if (info.seq === this.seq) return
      this.root ??= await mainRoot(this.room)
      const html = await contentHtml(this.room, this.root)
      this.seq = info.seq
      this.body.dataset.seq = String(info.seq)
      replace(this.body, richNodes(html))
      if (isEmpty(this.body)) replace(this.body, h('span', { class: 'text-empty' }, 'This document is empty.'))
      replace(this.footer,
        h('span', { title: info.time != null ? whenPrecisely(info.time) : '' }, `Version ${info.seq.toLocaleString()}${info.time != null ? ', ' + ago(info.time) : ''}`),
        h('span', null, 'Rich text (read-only)'))
    } catch (error) {
      if (this.seq >= 0) return // keep showing the last version read
      const home = h('a', { href: '/', class: 'button primary' }, 'All documents')
      const message = error instanceof ApiError ? error.message : String(error)
      replace(this.body, problem('alert', 'The document could not be loaded', message, home))
    }
  }
}
