/**
 * The history page's lineage note: which history the document has now (its lineage, a
 * short id), the histories its name retired, and which one the page is showing.
 *
 * A reset keeps the history it retires, so that one can be chosen and read like the
 * current one (every read with `?lineage=`); a replaced or purged history is listed, but
 * nothing of it is kept to read (docs/lineage.md). This module only draws: the page owns
 * the switching.
 */

import type { Lineages, RetiredLineage } from './api'
import { h, icon } from './dom'
import { when, whenPrecisely } from './format'

/** The first 8 of a lineage's 16 hex digits: enough to tell a document's histories apart. */
export function shortId (lineage: string): string {
  return lineage.slice(0, 8)
}

/** "the reset on 22 Nov 2026, 14:05": what ended a retired history. */
export function ending (retired: RetiredLineage): string {
  const on = when(retired.retired)
  if (retired.reason === 'reset') return `the reset on ${on}`
  if (retired.reason === 'purged') return `the deletion on ${on}`
  return `the replacement on ${on}`
}

function describe (retired: RetiredLineage): string {
  const what = retired.reason === 'reset' ? 'Reset' : retired.reason === 'purged' ? 'Deleted' : 'Replaced'
  return `${what} on ${when(retired.retired)} · ${shortId(retired.lineage)}${retired.readable ? '' : ' (not kept)'}`
}

export interface Showing {
  lineages: Lineages
  /** The retired history shown, or `null` for the current one. */
  viewing: RetiredLineage | null
  /** Whether the current history has a version to show (a reset may leave it empty). */
  currentHasVersions: boolean
  /** Show `lineage`, or with `null` the current history. */
  pick: (lineage: string | null) => void
}

/**
 * The note above the slider: the current lineage, a chooser when the document retired
 * any, and when a retired history is shown, a banner saying so with the way back.
 */
export function lineageNote (showing: Showing): HTMLElement | null {
  const { lineages, viewing, pick } = showing
  const current = lineages.lineage
  const retired = [...lineages.retired_lineages].reverse() // newest first
  if (current == null && retired.length === 0) return null // older than lineages: nothing to tell

  const id = current != null ? shortId(current) : 'none'
  const note = h('div', { class: 'notice lineage-note', role: 'note', 'data-testid': 'lineage-note', 'data-lineage': current ?? '' },
    icon('history'),
    h('span', { title: 'A document starts a new history when it is reset or replaced; its id tells them apart.' },
      h('strong', null, 'History '), h('code', { 'data-testid': 'current-lineage' }, id))
  )
  if (retired.length > 0) {
    const select = h('select', { id: 'lineage-select', 'data-testid': 'lineage-select' },
      h('option', { value: '', disabled: !showing.currentHasVersions }, `Current history · ${id}`),
      ...retired.map(r => h('option', {
        value: r.lineage,
        disabled: !r.readable,
        title: r.readable ? `Read the history from before ${ending(r)}` : `Not kept: ${ending(r)} removed its history`,
        'data-testid': 'retired-lineage',
        'data-reason': r.reason,
        'data-readable': String(r.readable)
      }, describe(r)))
    )
    select.value = viewing?.lineage ?? ''
    select.addEventListener('change', () => { pick(select.value === '' ? null : select.value) })
    note.append(h('span', { class: 'lineage-pick' },
      h('label', { for: 'lineage-select', class: 'muted' }, 'Show history'),
      select))
  }
  if (viewing == null) return note

  const back = h('button', { type: 'button', class: 'button', 'data-testid': 'lineage-back' }, icon('back'), h('span', null, 'Back to the current history'))
  back.addEventListener('click', () => { pick(null) })
  back.disabled = !showing.currentHasVersions
  const banner = h('div', { class: 'banner lineage-banner', role: 'status', 'data-testid': 'lineage-banner', 'data-lineage': viewing.lineage },
    icon('alert'),
    h('span', null, 'You are reading ', h('strong', null, `a history from before ${ending(viewing)}`),
      h('span', { title: whenPrecisely(viewing.retired) }, ` (${shortId(viewing.lineage)})`),
      '. Restoring a version copies it into the current document as a new change.'),
    back)
  return h('div', { class: 'lineage' }, note, banner)
}
