/** The editor's look for Markdown: a document, not a code listing. */

import { EditorView, keymap } from '@codemirror/view'
import { HighlightStyle, LanguageSupport, syntaxHighlighting } from '@codemirror/language'
import { markdownKeymap, markdownLanguage, pasteURLAsLink } from '@codemirror/lang-markdown'
import { type Extension, Prec } from '@codemirror/state'
import { tags as t } from '@lezer/highlight'

const style = HighlightStyle.define([
  { tag: t.heading1, fontSize: '1.6em', fontWeight: '700', lineHeight: '1.3' },
  { tag: t.heading2, fontSize: '1.35em', fontWeight: '700', lineHeight: '1.3' },
  { tag: t.heading3, fontSize: '1.15em', fontWeight: '650' },
  { tag: [t.heading4, t.heading5, t.heading6], fontWeight: '650' },
  { tag: t.strong, fontWeight: '700' },
  { tag: t.emphasis, fontStyle: 'italic' },
  { tag: t.strikethrough, textDecoration: 'line-through' },
  { tag: t.link, color: 'var(--accent)' },
  { tag: t.url, color: 'var(--accent)', textDecoration: 'underline' },
  { tag: t.monospace, fontFamily: 'var(--mono)', fontSize: '0.92em', backgroundColor: 'var(--code-bg)', borderRadius: '3px' },
  { tag: t.quote, color: 'var(--muted)', fontStyle: 'italic' },
  { tag: [t.processingInstruction, t.contentSeparator], color: 'var(--faint)' },
  { tag: t.list, color: 'var(--text)' },
  { tag: t.meta, color: 'var(--faint)' },
  { tag: [t.labelName, t.string], color: 'var(--accent)' },
  { tag: t.comment, color: 'var(--faint)' }
])

const theme = EditorView.theme({
  '&': { height: '100%', fontSize: '16px', backgroundColor: 'transparent' },
  '&.cm-focused': { outline: 'none' },
  '.cm-scroller': { fontFamily: 'var(--sans)', lineHeight: '1.65', overflow: 'auto' },
  '.cm-content': { maxWidth: '760px', margin: '0 auto', padding: '48px 32px 40vh', caretColor: 'var(--text)' },
  '.cm-line': { padding: '0' },
  '.cm-activeLine': { backgroundColor: 'transparent' },
  '.cm-selectionBackground, &.cm-focused .cm-selectionBackground, ::selection': { backgroundColor: 'var(--selection) !important' },
  '.cm-placeholder': { color: 'var(--faint)' },
  // Other people's cursors: show the name tag, small and readable, not only on hover.
  '.cm-ySelectionCaret': { borderLeftWidth: '2px', borderRightWidth: '0', marginLeft: '-1px', marginRight: '-1px' },
  '.cm-ySelectionCaretDot': { display: 'none' },
  '.cm-ySelectionInfo': {
    opacity: '1',
    top: '-1.35em',
    left: '-2px',
    fontFamily: 'var(--sans)',
    fontSize: '11px',
    fontWeight: '600',
    padding: '1px 5px',
    borderRadius: '4px 4px 4px 0',
    lineHeight: '1.4'
  },
  '.cm-ySelectionCaret:hover > .cm-ySelectionInfo': { opacity: '0.25' }
})

/**
 * GitHub-flavoured Markdown, with Enter continuing lists and quotes and a pasted URL over
 * a selection making a link. Not `markdown()`: it always pulls in the HTML, CSS and
 * JavaScript parsers (for HTML inside Markdown), which would double the bundle.
 */
export function markdownEditing (): Extension {
  const support = new LanguageSupport(markdownLanguage, [Prec.high(keymap.of(markdownKeymap)), pasteURLAsLink])
  return [support, syntaxHighlighting(style), theme, EditorView.lineWrapping]
}
