/**
 * collab's browser client. The server serves the same index.html for `/` and every
 * `/d/...` path; this picks the page from the path. The editor and the history page are
 * loaded on demand, so the document list stays light.
 *
 * `/d/{room}` first asks what the document holds: a rich-text document (another editor's
 * Y.XmlFragment) opens in the rich-text editor (`richeditor.ts`; read-only, `richview.ts`,
 * when it holds what that editor's schema does not know) rather than in the Markdown
 * editor, which edits the Y.Text `content` and would show it empty.
 */

import './style.css'
import { docShape } from './api'
import { h, replace } from './dom'
import { problem } from './dialog'
import { rememberKind, rememberedKind, token } from './identity'
import { parseRoute } from './route'
import { listPage } from './list'

async function main (): Promise<void> {
  token() // take `?token=` out of the address bar before anything else reads the URL
  const root = document.getElementById('app') ?? document.body
  const route = parseRoute(window.location.pathname)
  switch (route.page) {
    case 'list':
      listPage(root)
      break
    case 'editor': {
      // Any failure here (no access, no network) is the editor's to explain, as before;
      // but a document this browser has seen as rich text never opens in the Markdown
      // editor, whose first keystroke would start a text beside the rich text.
      const shape = await docShape(route.room).catch(() => null)
      if (shape != null) rememberKind(route.room, shape.kind)
      if (shape?.kind === 'rich' || (shape == null && rememberedKind(route.room) === 'rich')) {
        const { richEditorPage } = await import('./richeditor')
        richEditorPage(root, route.room)
        break
      }
      const { editorPage } = await import('./editor')
      editorPage(root, route.room)
      break
    }
    case 'history': {
      const { historyPage } = await import('./history')
      historyPage(root, route.room)
      break
    }
    case 'missing':
      document.title = 'Not found · collab'
      replace(root, problem('alert', 'Nothing here', 'This address does not lead to a document.',
        h('a', { href: '/', class: 'button primary' }, 'All documents')))
  }
}

main().catch((error: unknown) => {
  console.error(error)
  const root = document.getElementById('app') ?? document.body
  replace(root, problem('alert', 'Something went wrong', 'The page could not start. Reloading usually helps; if it does not, the server log may say why.',
    h('button', { type: 'button', class: 'button primary', onclick: () => window.location.reload() }, 'Reload')))
})
