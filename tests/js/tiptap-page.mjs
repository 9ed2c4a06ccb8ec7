// A Tiptap 3 editor as an app builds it, for collab's browser tests: StarterKit with the
// Collaboration and CollaborationCaret extensions, over either @hocuspocus/provider
// (/hocuspocus) or y-websocket's WebsocketProvider (/ws). Bundled by esbuild at test time
// (tests/browser.py) into one IIFE that a Chromium page loads.
//
//   window.startEditor({ url, doc, protocol: 'hocuspocus' | 'ws', token, name, color })
//   window.editorState() -> { html, text, synced, unsynced, status, authenticated, scope }
//   window.typeText(s)     types at the end of the document (as keystrokes would insert)
import { Editor } from '@tiptap/core'
import StarterKit from '@tiptap/starter-kit'
import Collaboration from '@tiptap/extension-collaboration'
import CollaborationCaret from '@tiptap/extension-collaboration-caret'
import { HocuspocusProvider } from '@hocuspocus/provider'
import { WebsocketProvider } from 'y-websocket'
import * as Y from 'yjs'

const state = { status: 'connecting', authenticated: false, scope: null, denied: null }

window.startEditor = ({ url, doc, protocol = 'hocuspocus', token = '', name = 'browser', color = '#2563eb' }) => {
  const ydoc = new Y.Doc()
  let provider
  if (protocol === 'hocuspocus') {
    provider = new HocuspocusProvider({
      url,
      name: doc,
      document: ydoc,
      token,
      onStatus: ({ status }) => { state.status = status },
      onAuthenticated: ({ scope }) => { state.authenticated = true; state.scope = scope ?? null },
      onAuthenticationFailed: ({ reason }) => { state.denied = reason }
    })
  } else {
    provider = new WebsocketProvider(url, doc, ydoc, { disableBc: true })
    provider.on('status', ({ status }) => { state.status = status })
  }
  const element = document.createElement('div')
  element.id = 'editor'
  document.body.appendChild(element)
  const editor = new Editor({
    element,
    extensions: [
      StarterKit.configure({ undoRedo: false }), // Collaboration brings its own undo
      Collaboration.configure({ document: ydoc }),
      CollaborationCaret.configure({ provider, user: { name, color } })
    ]
  })
  window.tiptap = { editor, provider, ydoc, protocol }
}

window.editorState = () => {
  const { editor, provider, protocol } = window.tiptap
  return {
    html: editor.getHTML(),
    text: editor.getText(),
    synced: protocol === 'hocuspocus' ? !!provider.synced : !!provider.synced,
    unsynced: protocol === 'hocuspocus' ? provider.unsyncedChanges : null,
    ...state,
    carets: [...document.querySelectorAll('.collaboration-carets__label')].map((e) => e.textContent)
  }
}

window.typeText = (text) => {
  const { editor } = window.tiptap
  editor.chain().focus('end').insertContent(text).run()
}

window.toggleBold = () => {
  window.tiptap.editor.chain().focus().selectAll().toggleBold().run()
}
