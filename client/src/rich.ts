/**
 * Rich text as the server renders it (`?format=html` of a version, a diff or blame;
 * `collab/history/markup.py`), put into a page.
 *
 * The server already escapes every text and attribute and chooses tags from a fixed table;
 * this checks again, because the bytes came from some client: the HTML is parsed inert
 * (DOMParser runs no script and loads nothing), and only the tags and attributes markup.py
 * writes are kept. Any other element is unwrapped, its text kept: nothing is dropped.
 *
 * A diff's `<ins>` / `<del>` (and `data-change` for formatting) carry `data-user`: each gets
 * that author's colour (`authorColor`, the colour history gives the author everywhere) and
 * a tooltip saying who changed it in which versions. A node the server does not know, kept
 * as `<div data-type="NAME">`, is drawn as a labelled box.
 */

import { authorColor } from './identity'

const TAGS = new Set([
  'p', 'h1', 'h2', 'h3', 'h4', 'h5', 'h6', 'ul', 'ol', 'li', 'blockquote', 'pre', 'code',
  'hr', 'br', 'strong', 'em', 's', 'u', 'a', 'ins', 'del', 'span', 'div'
])
const ATTRIBUTES = new Set([
  'data-type', 'data-attrs', 'data-mark', 'data-change', 'data-user', 'data-seqs',
  'data-truncated', 'start', 'class', 'href'
])
const BLOCKS = new Set(['P', 'H1', 'H2', 'H3', 'H4', 'H5', 'H6', 'UL', 'OL', 'LI', 'BLOCKQUOTE', 'PRE', 'HR', 'DIV', 'INS', 'DEL'])

/** Who made a change, as the page shows it. */
export function displayName (who: string): string {
  return who.startsWith('connection:') ? 'Anonymous' : who
}

function copy (node: Node, into: Node): void {
  for (const child of Array.from(node.childNodes)) {
    if (child.nodeType === Node.TEXT_NODE) {
      into.appendChild(document.createTextNode(child.textContent ?? ''))
    } else if (child instanceof Element) {
      const tag = child.tagName.toLowerCase()
      if (!TAGS.has(tag)) {
        copy(child, into) // unwrap: keep what it holds
        continue
      }
      const el = document.createElement(tag)
      for (const attr of Array.from(child.attributes)) {
        if (!ATTRIBUTES.has(attr.name)) continue
        if (attr.name === 'href' && /^\s*(javascript|data|vbscript):/i.test(attr.value)) continue
        el.setAttribute(attr.name, attr.value)
      }
      if (tag === 'a') {
        el.setAttribute('target', '_blank')
        el.setAttribute('rel', 'noopener noreferrer nofollow')
      }
      copy(child, el)
      into.appendChild(el)
    }
  }
}

function versions (seqs: string | undefined): string {
  const [first, last] = (seqs ?? '').split('-')
  if (first == null || first === '') return ''
  return first === last || last == null ? `version ${first}` : `versions ${first}–${last}`
}

/** Colour and label every change in `root` by its author. */
function paint (root: Element): void {
  for (const el of Array.from(root.querySelectorAll<HTMLElement>('[data-user]'))) {
    const user = el.dataset.user ?? ''
    const color = authorColor(user)
    el.style.setProperty('--who', color)
    el.style.setProperty('--who-soft', color + '2e') // #rrggbbaa: the colour at 18%
    const what = el.tagName === 'INS'
      ? 'Added'
      : el.tagName === 'DEL'
        ? 'Deleted'
        : el.dataset.change === 'attributes' ? 'Changed' : 'Formatted'
    const where = versions(el.dataset.seqs)
    el.title = `${what} by ${displayName(user)}${where !== '' ? ` (${where})` : ''}`
    // A change that holds whole blocks (an added paragraph, a removed list) is drawn as a
    // bar beside them rather than as highlighted text.
    const first = el.firstElementChild
    if (first != null && BLOCKS.has(first.tagName)) el.classList.add('change-block')
  }
}

/** The server's HTML as nodes to put in a page (see the module docstring). */
export function richNodes (html: string): DocumentFragment {
  const parsed = new DOMParser().parseFromString(`<!doctype html><body>${html}`, 'text/html')
  const fragment = document.createDocumentFragment()
  const holder = document.createElement('div')
  copy(parsed.body, holder)
  paint(holder)
  fragment.append(...Array.from(holder.childNodes))
  return fragment
}

/**
 * Whether rendered rich text shows nothing: no text, and no element but empty
 * paragraphs (the empty Tiptap document is one empty paragraph). A horizontal rule or an
 * unknown node is content.
 */
export function isEmpty (root: Element): boolean {
  if ((root.textContent ?? '').trim() !== '') return false
  return Array.from(root.querySelectorAll('*')).every(el => ['P', 'BR', 'INS', 'DEL', 'SPAN'].includes(el.tagName))
}
