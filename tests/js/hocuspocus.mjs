#!/usr/bin/env node
// Scriptable real @hocuspocus/provider client for collab's /hocuspocus tests.
//
// One HocuspocusProviderWebsocket (one socket, as an app shares it) and any number of
// HocuspocusProviders on it, one per document, opened and driven over stdin/stdout with
// newline-delimited JSON, like client.mjs (see README.md beside this file).
//
//   node tests/js/hocuspocus.mjs --url ws://127.0.0.1:PORT/hocuspocus
//        [--major 2|3|4 (default 4)] [--max-seconds 120]
//
// Commands (each may carry "id", echoed in its reply):
//   {"cmd":"open","doc":NAME,"token":T,"session":bool,"name":USER}  -> ok
//   {"cmd":"insert","doc":NAME,"index":I,"text":S}                 -> ok
//   {"cmd":"state","doc":NAME}  -> {text, synced, unsynced, authenticated, scope, denied}
//   {"cmd":"stateless","doc":NAME,"payload":S}                      -> ok
//   {"cmd":"awareness","doc":NAME,"state":{...}}                    -> ok
//   {"cmd":"close","doc":NAME}   destroys that provider (the socket stays)  -> ok
//   {"cmd":"quit"}
// Events: ready, status {status}, socket-close {code, reason}, authenticated {doc, scope},
// denied {doc, reason}, synced {doc}, unsynced {doc, number}, text {doc, text},
// awareness {doc, states}, stateless {doc, payload}, doc-close {doc, reason}.

import * as Y from 'yjs'
import WS from 'ws'

console.log = (...args) => console.error(...args)
console.info = (...args) => console.error(...args)
console.debug = (...args) => console.error(...args)
console.warn = (...args) => console.error(...args)

const args = process.argv.slice(2)
const opt = (name, fallback) => {
  const i = args.indexOf(name)
  return i === -1 ? fallback : args[i + 1]
}
const url = opt('--url')
const major = Number(opt('--major', '4'))
const maxSeconds = Number(opt('--max-seconds', '120'))
if (!url || ![2, 3, 4].includes(major)) {
  process.stderr.write('usage: node hocuspocus.mjs --url URL [--major 2|3|4]\n')
  process.exit(64)
}
const module = { 2: 'hocuspocus-provider-2', 3: 'hocuspocus-provider-3', 4: '@hocuspocus/provider' }[major]
const { HocuspocusProvider, HocuspocusProviderWebsocket } = await import(module)

let outputClosed = false
const emit = (obj) => {
  if (!outputClosed) process.stdout.write(JSON.stringify(obj) + '\n')
}
process.stdout.on('error', () => process.exit(0))

const socket = new HocuspocusProviderWebsocket({
  url,
  WebSocketPolyfill: WS,
  maxDelay: 300, // reconnect quickly in tests
  delay: 50,
  minDelay: 50
})
socket.on('status', ({ status }) => emit({ event: 'status', status }))
socket.on('close', ({ event }) => emit({ event: 'socket-close', code: event?.code ?? null, reason: String(event?.reason ?? '') }))

const docs = new Map() // name -> {provider, doc, text, state}

const open = (cmd) => {
  const name = String(cmd.doc)
  if (docs.has(name)) throw new Error(`${name} is open already`)
  const doc = new Y.Doc()
  const text = doc.getText('content')
  const entry = { doc, text, authenticated: false, scope: null, denied: null, unsynced: 0 }
  const provider = new HocuspocusProvider({
    websocketProvider: socket,
    name,
    document: doc,
    token: cmd.token ?? '',
    ...(cmd.session ? { sessionAwareness: true } : {}),
    onAuthenticated: ({ scope }) => {
      entry.authenticated = true
      entry.scope = scope ?? null
      emit({ event: 'authenticated', doc: name, scope: scope ?? null })
    },
    onAuthenticationFailed: ({ reason }) => {
      entry.denied = reason
      emit({ event: 'denied', doc: name, reason })
    },
    onSynced: () => emit({ event: 'synced', doc: name }),
    onUnsyncedChanges: ({ number }) => {
      entry.unsynced = number
      emit({ event: 'unsynced', doc: name, number })
    },
    onStateless: ({ payload }) => emit({ event: 'stateless', doc: name, payload }),
    onAwarenessChange: ({ states }) => emit({ event: 'awareness', doc: name, states }),
    onClose: ({ event }) => emit({ event: 'doc-close', doc: name, code: event?.code ?? null, reason: String(event?.reason ?? '') })
  })
  entry.provider = provider
  if (major >= 3 && !provider.isAttached) provider.attach()
  if (cmd.name) provider.setAwarenessField('user', { name: cmd.name })
  text.observe(() => emit({ event: 'text', doc: name, text: text.toString() }))
  docs.set(name, entry)
}

const need = (cmd) => {
  const entry = docs.get(String(cmd.doc))
  if (!entry) throw new Error(`${cmd.doc} is not open`)
  return entry
}

const handlers = {
  open (cmd) { open(cmd); return { event: 'ok' } },
  insert (cmd) {
    const { text } = need(cmd)
    text.insert(cmd.index ?? text.length, String(cmd.text))
    return { event: 'ok' }
  },
  state (cmd) {
    const e = need(cmd)
    return {
      event: 'state',
      text: e.text.toString(),
      synced: !!e.provider.synced,
      unsynced: e.provider.unsyncedChanges,
      authenticated: e.authenticated,
      scope: e.scope,
      denied: e.denied
    }
  },
  stateless (cmd) { need(cmd).provider.sendStateless(String(cmd.payload)); return { event: 'ok' } },
  awareness (cmd) {
    const { provider } = need(cmd)
    for (const [k, v] of Object.entries(cmd.state || {})) provider.setAwarenessField(k, v)
    return { event: 'ok' }
  },
  close (cmd) {
    const e = need(cmd)
    e.provider.destroy()
    docs.delete(String(cmd.doc))
    return { event: 'ok' }
  },
  ping () { return { event: 'pong' } },
  quit (cmd) { shutdown(0, cmd.id); return null }
}

let exiting = false
const shutdown = (code, id) => {
  if (exiting) return
  exiting = true
  for (const { provider } of docs.values()) {
    try { provider.destroy() } catch (e) {}
  }
  try { socket.destroy() } catch (e) {}
  emit({ event: 'bye', ...(id !== undefined ? { id } : {}) })
  outputClosed = true
  setTimeout(() => process.exit(code), 200)
}
setTimeout(() => shutdown(3), maxSeconds * 1000).unref()
process.on('SIGTERM', () => shutdown(0))
process.on('uncaughtException', (e) => {
  process.stderr.write(`hocuspocus.mjs: ${e && e.stack ? e.stack : e}\n`)
  emit({ event: 'fatal', error: String(e && e.message ? e.message : e) })
  outputClosed = true
  process.exit(1)
})

let buffered = ''
process.stdin.setEncoding('utf8')
process.stdin.on('data', (chunk) => {
  buffered += chunk
  let nl
  while ((nl = buffered.indexOf('\n')) !== -1) {
    const line = buffered.slice(0, nl).trim()
    buffered = buffered.slice(nl + 1)
    if (!line || exiting) continue
    let cmd
    try { cmd = JSON.parse(line) } catch (e) { emit({ event: 'error', error: 'bad JSON' }); continue }
    const handler = handlers[cmd.cmd]
    try {
      if (!handler) throw new Error(`unknown cmd ${cmd.cmd}`)
      const out = handler(cmd)
      if (out) emit(cmd.id !== undefined ? { ...out, id: cmd.id } : out)
    } catch (e) {
      emit({ event: 'error', error: String(e && e.message ? e.message : e), ...(cmd.id !== undefined ? { id: cmd.id } : {}) })
    }
  }
})
process.stdin.on('end', () => shutdown(0))

emit({ event: 'ready', major })
