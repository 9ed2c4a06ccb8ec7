/**
 * `/d/{room}/history`: drag through the document's life.
 *
 * The slider has a stop for every stored version (1 … newest). At each stop the page shows
 * the text of that version with the changes of its timeline entry highlighted (what the
 * entry's author added, and what they deleted, struck through), from the history API's
 * diff. The timeline on the right groups consecutive changes by one person; named
 * versions are marks on the slider. "Restore" makes the version shown the current content
 * as a new change, which every open editor receives live; history is never rewritten.
 *
 * A rich-text document (Tiptap, ProseMirror, BlockNote) is shown formatted: the first diff
 * says the document's main root is rich text (it answers a `doc`, not `spans`), and from
 * then on each stop is the server's HTML of the diff, every insertion and deletion in its
 * author's colour (`rich.ts`).
 *
 * A document that was reset keeps the history it retired: the note above the slider
 * names the current lineage and lists the retired ones (`lineage.ts`); choosing a kept
 * one reads it instead (every request with `?lineage=`, also in the page's address), and
 * "Restore" then copies its version into the current document.
 */

import {
  ApiError, type Diff, type Entry, type Lineages, type NamedVersion, type RetiredLineage,
  deleteNamedVersion, diff, diffHtml, docInfo, me, nameVersion, namedVersions, restore, timeline
} from './api'
import { bar } from './chrome'
import { ask, problem } from './dialog'
import { h, icon, replace } from './dom'
import { ago, initials, whenPrecisely } from './format'
import { authorColor, loadUser } from './identity'
import { ending, lineageNote } from './lineage'
import { displayName, isEmpty, richNodes } from './rich'
import { editorPath } from './route'

const GAP_SECONDS = 60 // changes by one person less than a minute apart are one entry
const PLAY_FRAMES = 120 // a playback visits at most this many stops
const PLAY_MS = 120

export function historyPage (root: HTMLElement, room: string): void {
  document.title = `History · ${room} · collab`
  const top = bar(room, 'History', () => {})
  top.tools.append(h('a', { href: editorPath(room), class: 'button', 'data-testid': 'editor-link' }, icon('edit'), h('span', null, 'Open editor')))
  const body = h('div', { class: 'history' })
  replace(root, top.element, body)
  new HistoryView(room, body).start().catch((error: unknown) => {
    replace(body, failure(room, error))
  })
}

function failure (room: string, error: unknown): HTMLElement {
  const home = h('a', { href: '/', class: 'button' }, 'All documents')
  if (error instanceof ApiError) {
    if (error.status === 404) {
      return problem('alert', 'No history yet', `Nothing has been written in “${room}” yet.`,
        h('a', { href: editorPath(room), class: 'button primary' }, 'Start writing'), home)
    }
    if (error.status === 401) return problem('lock', 'Sign-in needed', 'Open the access link you were given (it ends in “?token=…”).', home)
    if (error.status === 403) return problem('lock', 'No access to this document', error.message, home)
    if (error.status === 0) return problem('cloudOff', "Can't reach the server", 'Check the connection and reload.', home)
    return problem('alert', 'History could not be loaded', error.message, home)
  }
  return problem('alert', 'History could not be loaded', String(error), home)
}

class HistoryView {
  private newest = 0
  private entries: Entry[] = []
  private cursor: string | null = null
  private named: NamedVersion[] = []
  private seq = 0 // the stop shown
  private shown = -1 // the stop whose diff is on screen
  private loading = false
  private playing: ReturnType<typeof setTimeout> | null = null
  private canWrite = true
  private root: string | null = null // the root shown, once the first diff has named it
  private rich = false
  private lineages: Lineages = { lineage: null, retired_lineages: [] }
  private lineage: string | null = null // the retired history shown, or null: the current one
  private currentNewest = 0 // the current history's newest seq, whichever is shown
  private epoch = 0 // bumped on every switch of history: answers about another are dropped
  private picking = 0 // the newest history asked for wins

  private readonly slider = h('input', { type: 'range', min: 1, max: 1, value: 1, step: 1, 'aria-label': 'Version', 'data-testid': 'slider' })
  private readonly marks = h('div', { class: 'marks', 'aria-hidden': 'true' })
  private readonly play = h('button', { type: 'button', class: 'button icon-only', title: 'Play from here', 'aria-label': 'Play', 'data-testid': 'play' }, icon('play'))
  private readonly prev = h('button', { type: 'button', class: 'button icon-only', title: 'Previous change', 'aria-label': 'Previous change' }, icon('prev'))
  private readonly next = h('button', { type: 'button', class: 'button icon-only', title: 'Next change', 'aria-label': 'Next change' }, icon('next'))
  private readonly line = h('div', { class: 'version-line', 'data-testid': 'version-line' })
  private readonly nameButton = h('button', { type: 'button', class: 'button', 'data-testid': 'name-version' }, icon('tag'), h('span', null, 'Name this version'))
  private readonly restoreButton = h('button', { type: 'button', class: 'button primary', 'data-testid': 'restore' }, icon('restore'), h('span', null, 'Restore this version'))
  private readonly text = h('div', { class: 'text-body', 'data-testid': 'version-text' })
  private readonly list = h('ol', { 'data-testid': 'timeline' })
  private readonly more = h('button', { type: 'button', class: 'button load-more', hidden: true }, 'Older changes')
  private readonly note = h('div', { class: 'lineage-slot' })

  constructor (private readonly room: string, private readonly body: HTMLElement) {}

  async start (): Promise<void> {
    const [info, who] = await Promise.all([docInfo(this.room), me(this.room)])
    this.canWrite = who?.access !== 'read'
    this.lineages = info
    this.currentNewest = this.newest = info.seq
    const query = new URLSearchParams(window.location.search)
    // A reset without content leaves the current history empty: open the one it retired.
    const asked = query.get('lineage') ?? (info.seq === 0 ? this.readable()[0]?.lineage : null)
    if (asked != null && this.readable().some(r => r.lineage === asked)) {
      this.lineage = asked
      this.newest = (await docInfo(this.room, asked)).seq
    }
    if (this.newest === 0) throw new ApiError(404, 'no versions')
    const requested = Number(query.get('seq'))
    this.seq = Number.isInteger(requested) && requested >= 1 && requested <= this.newest ? requested : this.newest
    this.layout()
    this.drawNote()
    this.restoreButton.hidden = !this.canWrite
    await Promise.all([this.loadTimeline(false), this.loadNamed()])
    this.sync()
    await this.show()
  }

  /** The retired histories that were kept, newest first. */
  private readable (): RetiredLineage[] {
    return this.lineages.retired_lineages.filter(r => r.readable).reverse()
  }

  private viewing (): RetiredLineage | null {
    return this.lineages.retired_lineages.find(r => r.lineage === this.lineage) ?? null
  }

  private drawNote (): void {
    replace(this.note, lineageNote({
      lineages: this.lineages,
      viewing: this.viewing(),
      currentHasVersions: this.currentNewest > 0,
      pick: lineage => { void this.view(lineage) }
    }))
  }

  /** Show the history `lineage` (a retired one), or with `null` the current one, at its newest version. */
  private async view (lineage: string | null): Promise<void> {
    this.stop()
    const ask = ++this.picking
    let info
    try {
      info = await docInfo(this.room, lineage)
    } catch (error) {
      if (ask !== this.picking) return
      toast(`Could not open that history: ${error instanceof Error ? error.message : String(error)}`)
      this.drawNote() // the chooser back on the history still shown
      return
    }
    if (ask !== this.picking) return
    const epoch = ++this.epoch
    this.lineages = info
    this.lineage = lineage
    this.newest = info.seq
    if (lineage == null) this.currentNewest = info.seq
    this.entries = []
    this.cursor = null
    this.named = []
    this.root = null
    this.rich = false
    this.shown = -1
    this.text.classList.remove('rich-body')
    delete this.text.dataset.kind
    replace(this.list)
    this.drawNote()
    await Promise.all([this.loadTimeline(false), this.loadNamed()])
    if (epoch === this.epoch) this.go(this.newest)
  }

  private layout (): void {
    const track = h('div', { class: 'track' }, this.slider, this.marks)
    const scrubber = h('div', { class: 'scrubber' },
      h('div', { class: 'scrubber-row' }, this.play, this.prev, this.next, track),
      h('div', { class: 'version-line-row scrubber-row' }, this.line,
        h('div', { class: 'version-actions' }, this.nameButton, this.restoreButton))
    )
    const main = h('section', { class: 'history-main' }, this.note, scrubber, h('div', { class: 'text-view' }, this.text))
    const side = h('aside', { class: 'timeline', 'aria-label': 'Changes' }, h('h2', null, 'Changes'), this.list, this.more)
    replace(this.body, main, side)

    this.slider.addEventListener('input', () => { this.stop(); this.go(Number(this.slider.value)) })
    this.prev.addEventListener('click', () => { this.stop(); this.step(-1) })
    this.next.addEventListener('click', () => { this.stop(); this.step(1) })
    this.play.addEventListener('click', () => { this.playing != null ? this.stop() : this.startPlaying() })
    this.more.addEventListener('click', () => { void this.loadTimeline(true) })
    this.restoreButton.addEventListener('click', () => { void this.restore() })
    this.nameButton.addEventListener('click', () => { void this.nameVersion() })
  }

  /** Move to stop `seq`: the slider and labels at once, the text when it arrives. */
  private go (seq: number): void {
    this.seq = Math.max(1, Math.min(this.newest, seq))
    const url = new URL(window.location.href)
    url.searchParams.set('seq', String(this.seq))
    if (this.lineage != null) url.searchParams.set('lineage', this.lineage)
    else url.searchParams.delete('lineage')
    window.history.replaceState(null, '', url.pathname + url.search)
    this.sync()
    void this.show()
  }

  /** Jump to the end of the previous or next timeline entry. */
  private step (direction: number): void {
    const ends = this.entries.map(e => e.seq).sort((a, b) => a - b)
    const target = direction < 0
      ? [...ends].reverse().find(s => s < this.seq) ?? 1
      : ends.find(s => s > this.seq) ?? this.newest
    this.go(target)
  }

  private startPlaying (): void {
    if (this.seq >= this.newest) this.go(1)
    const stride = Math.max(1, Math.ceil(this.newest / PLAY_FRAMES))
    replace(this.play, icon('pause'))
    this.play.setAttribute('aria-label', 'Pause')
    const tick = (): void => {
      if (this.seq >= this.newest) { this.stop(); return }
      this.go(this.seq + stride)
      this.playing = setTimeout(tick, PLAY_MS)
    }
    this.playing = setTimeout(tick, PLAY_MS)
  }

  private stop (): void {
    if (this.playing != null) clearTimeout(this.playing)
    this.playing = null
    replace(this.play, icon('play'))
    this.play.setAttribute('aria-label', 'Play')
  }

  /** The timeline entry holding stop `seq`, if loaded. */
  private entryOf (seq: number): Entry | undefined {
    return this.entries.find(e => e.first_seq <= seq && seq <= e.seq)
  }

  private sync (): void {
    this.slider.max = String(this.newest)
    this.slider.value = String(this.seq)
    this.slider.disabled = this.newest <= 1
    const span = Math.max(1, this.newest - 1)
    replace(this.marks, ...this.named.map(v => h('span', {
      class: 'mark', style: `left:${((v.seq - 1) / span) * 100}%`, title: `${v.name} (version ${v.seq})`
    })))
    const entry = this.entryOf(this.seq)
    const labels = this.named.filter(v => v.seq === this.seq)
    const when = entry != null ? entry.end : null
    replace(this.line,
      h('span', { class: 'seq', 'data-testid': 'seq' }, `Version ${this.seq.toLocaleString()} of ${this.newest.toLocaleString()}`),
      this.seq === this.newest ? h('span', { class: 'muted' }, this.lineage == null ? '(current)' : '(its last version)') : null,
      when != null ? h('span', { class: 'muted', title: whenPrecisely(when) }, ago(when)) : null,
      ...(entry?.authors ?? []).map(a => h('span', { class: 'who' },
        h('span', { class: 'avatar small', style: `background:${authorColor(a)}` }, initials(displayName(a))), ' ', displayName(a))),
      ...labels.map(v => h('span', { class: 'label-chip', 'data-testid': 'label' }, icon('tag', 12), v.name,
        this.canWrite && this.lineage == null // a retired history takes no new names
          ? h('button', { type: 'button', class: 'chip-x', title: 'Remove this name', 'aria-label': `Remove the name ${v.name}`, onclick: () => { void this.unname(v) } }, icon('x', 11))
          : null))
    )
    this.prev.disabled = this.seq <= 1
    this.next.disabled = this.seq >= this.newest
    // The names of a retired history are read-only; any of its versions can be restored,
    // its last one too: the current document holds none of it.
    this.nameButton.hidden = !this.canWrite || this.lineage != null
    const viewing = this.viewing()
    if (viewing == null) {
      this.restoreButton.disabled = this.seq >= this.newest
      this.restoreButton.title = this.seq >= this.newest ? 'This is the current version' : `Make version ${this.seq} the current content (as a new change)`
    } else {
      this.restoreButton.disabled = false
      this.restoreButton.title = `Make version ${this.seq} from before ${ending(viewing)} the current document's content (as a new change)`
    }
    for (const item of Array.from(this.list.children) as HTMLElement[]) {
      const e = this.entries[Number(item.dataset.index)]
      item.setAttribute('aria-current', String(e != null && e.first_seq <= this.seq && this.seq <= e.seq))
    }
  }

  /** Fetch and draw the text of the current stop; one request at a time, newest wins. */
  private async show (): Promise<void> {
    if (this.loading) return
    this.loading = true
    try {
      while (this.shown !== this.seq) {
        const { seq, epoch, lineage } = { seq: this.seq, epoch: this.epoch, lineage: this.lineage }
        const entry = this.entryOf(seq)
        // Highlight what this entry changed up to here; without a loaded entry, the last change.
        const from = Math.max(0, (entry?.first_seq ?? seq) - 1)
        this.text.setAttribute('aria-busy', 'true')
        try {
          if (this.rich && this.root != null) {
            const html = await diffHtml(this.room, from, seq, this.root, lineage)
            if (epoch !== this.epoch) continue // another history was chosen meanwhile
            this.drawRich(html, seq)
          } else {
            const result = await diff(this.room, from, seq, this.root, lineage)
            if (epoch !== this.epoch) continue
            this.root = result.root
            if (result.doc != null) {
              this.rich = true
              const html = await diffHtml(this.room, from, seq, result.root, lineage)
              if (epoch !== this.epoch) continue
              this.drawRich(html, seq)
            } else {
              this.draw(result)
            }
          }
        } catch (error) {
          if (epoch !== this.epoch) continue
          throw error
        }
        this.shown = seq
      }
    } catch (error) {
      replace(this.text, h('p', { class: 'text-empty' }, error instanceof ApiError ? error.message : String(error)))
      this.shown = -1
    } finally {
      this.loading = false
      this.text.removeAttribute('aria-busy')
    }
  }

  private draw (result: Diff): void {
    this.text.dataset.seq = String(result.to.seq)
    const spans = result.spans ?? []
    if (spans.length === 0 || spans.every(s => s.text === '')) {
      replace(this.text, h('span', { class: 'text-empty' }, 'This version is empty.'))
      return
    }
    replace(this.text, ...spans.map(span => {
      if (span.op === 'equal') return span.text
      const who = displayName(span.author ?? 'unknown')
      const title = `${span.op === 'insert' ? 'Added' : 'Deleted'} by ${who}${span.end != null ? ', ' + whenPrecisely(span.end) : ''}`
      return h(span.op === 'insert' ? 'ins' : 'del', { title }, span.text)
    }))
  }

  /** A rich-text stop: the server's HTML of the diff, changes in their authors' colours. */
  private drawRich (html: string, seq: number): void {
    this.text.dataset.seq = String(seq)
    this.text.dataset.kind = 'rich'
    this.text.classList.add('rich-body')
    replace(this.text, richNodes(html))
    if (isEmpty(this.text)) {
      replace(this.text, h('span', { class: 'text-empty' }, 'This version is empty.'))
    }
  }

  private async loadTimeline (older: boolean): Promise<void> {
    const epoch = this.epoch
    const page = await timeline(this.room, older ? this.cursor : null, GAP_SECONDS, this.lineage)
    if (epoch !== this.epoch) return // of a history no longer shown
    this.entries = older ? this.entries.concat(page.entries) : page.entries
    this.cursor = page.next
    this.more.hidden = page.next == null
    replace(this.list, ...this.entries.map((entry, index) => this.entryItem(entry, index)))
    this.sync()
  }

  private entryItem (entry: Entry, index: number): HTMLElement {
    const who = entry.authors.map(displayName).join(', ')
    const item = h('li', { class: 'entry', 'data-index': index, 'data-testid': 'entry', tabindex: 0, role: 'button' },
      h('span', { class: 'avatar small', style: `background:${authorColor(entry.authors[0] ?? '?')}` }, initials(displayName(entry.authors[0] ?? '?'))),
      h('span', { class: 'entry-who', title: who }, who),
      h('span', { class: 'entry-meta' },
        h('span', { title: whenPrecisely(entry.end) }, ago(entry.end)),
        entry.inserted > 0 ? h('span', { class: 'plus' }, `+${entry.inserted}`) : null,
        entry.deleted > 0 ? h('span', { class: 'minus' }, `−${entry.deleted}`) : null,
        h('span', { class: 'faint' }, entry.first_seq === entry.seq ? `v${entry.seq}` : `v${entry.first_seq}–${entry.seq}`)
      ),
      ...entry.named.map(name => h('span', { class: 'entry-label' }, icon('tag', 12), name))
    )
    const pick = (): void => { this.stop(); this.go(entry.seq) }
    item.addEventListener('click', pick)
    item.addEventListener('keydown', event => { if (event.key === 'Enter' || event.key === ' ') { event.preventDefault(); pick() } })
    return item
  }

  private async loadNamed (): Promise<void> {
    const epoch = this.epoch
    const named = await namedVersions(this.room, this.lineage)
    if (epoch !== this.epoch) return
    this.named = named
    this.sync()
  }

  /** Reload what a change made: the newest version, the timeline, the named versions. */
  private async refresh (): Promise<void> {
    this.newest = (await docInfo(this.room, this.lineage)).seq
    await Promise.all([this.loadTimeline(false), this.loadNamed()])
  }

  private async restore (): Promise<void> {
    const seq = this.seq
    this.stop()
    this.restoreButton.disabled = true
    const viewing = this.viewing()
    try {
      const result = await restore(this.room, seq, loadUser()?.name ?? '', viewing?.lineage ?? null)
      if (viewing != null) {
        // Into the current document; the page stays on the retired history.
        this.currentNewest = result.seq
        this.sync()
        toast(result.changed
          ? `Restored version ${result.restored} from before ${ending(viewing)}: it is now the current content, as a new change everyone editing has received.`
          : `Version ${result.restored} from before ${ending(viewing)} is already the current content.`)
        return
      }
      await this.refresh()
      this.shown = -1
      this.go(this.newest)
      toast(result.changed
        ? `Restored version ${result.restored}: it is now the current content, as a new change everyone editing has received.`
        : `Version ${result.restored} is already the current content.`)
    } catch (error) {
      toast(`Could not restore: ${error instanceof Error ? error.message : String(error)}`)
      this.sync()
    }
  }

  private async nameVersion (): Promise<void> {
    const seq = this.seq
    const name = await ask({
      title: `Name version ${seq}`,
      text: 'A name marks this version on the slider, like “sent for review”. Names are shared with everyone.',
      label: 'Version name',
      value: '',
      placeholder: 'e.g. sent for review',
      submit: 'Save name',
      check: value => value.length > 200 ? 'Please use at most 200 characters.' : null
    })
    if (name == null) return
    try {
      await nameVersion(this.room, seq, name, loadUser()?.name ?? '')
      await this.refresh()
      toast(`Named version ${seq} “${name}”.`)
    } catch (error) {
      toast(`Could not name the version: ${error instanceof Error ? error.message : String(error)}`)
    }
  }

  private async unname (version: NamedVersion): Promise<void> {
    try {
      await deleteNamedVersion(this.room, version.id)
      await this.refresh()
    } catch (error) {
      toast(`Could not remove the name: ${error instanceof Error ? error.message : String(error)}`)
    }
  }
}

let toastTimer: ReturnType<typeof setTimeout> | null = null

function toast (message: string): void {
  document.querySelector('.toast')?.remove()
  const el = h('div', { class: 'toast', role: 'status', 'data-testid': 'toast' }, message)
  document.body.append(el)
  if (toastTimer != null) clearTimeout(toastTimer)
  toastTimer = setTimeout(() => el.remove(), 6000)
}

