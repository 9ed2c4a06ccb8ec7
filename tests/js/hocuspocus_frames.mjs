#!/usr/bin/env node
// Records the frames a real @hocuspocus/provider sends, so the Python tests can check that
// collab's Hocuspocus codec (collab/sync/hocuspocus.py) reads and rewrites them exactly.
//
// A tiny `ws` server on 127.0.0.1 (random port) plays the server: it answers the token
// with "authenticated", a SyncStep1 with an empty SyncStep2 and its own SyncStep1, each
// update with a SyncStatus, and pings once. Two providers share the socket: one with a
// plain unicode name, one with sessionAwareness (name\0id). Each edits its Y.Doc, sets
// awareness and sends a stateless message. Prints one JSON object:
// {"sent": [hex, ...], "received": [hex, ...]} (sent by the providers / by the server).
//
//   node hocuspocus_frames.mjs

import { HocuspocusProvider, HocuspocusProviderWebsocket } from '@hocuspocus/provider'
import * as encoding from 'lib0/encoding'
import * as decoding from 'lib0/decoding'
import { WebSocket, WebSocketServer } from 'ws'
import * as Y from 'yjs'

const deadline = setTimeout(() => {
  console.error('timed out', JSON.stringify({ sent, received }))
  process.exit(1)
}, 8000)

const sent = []
const received = []

// Hand-encoded server frames: the name, the type, then the body (see the module docstring
// of collab/sync/hocuspocus.py for the layouts).
const frame = (name, type, write) => {
  const encoder = encoding.createEncoder()
  encoding.writeVarString(encoder, name)
  encoding.writeVarUint(encoder, type)
  write(encoder)
  return encoding.toUint8Array(encoder)
}

const server = new WebSocketServer({ host: '127.0.0.1', port: 0 })
await new Promise((resolve) => server.once('listening', resolve))
let pinged = false
const stateless = new Set() // the names a stateless frame came for

server.on('connection', (socket) => {
  const reply = (data) => {
    received.push(Buffer.from(data).toString('hex'))
    socket.send(data)
  }
  socket.on('message', (data) => {
    const bytes = new Uint8Array(data)
    sent.push(Buffer.from(bytes).toString('hex'))
    if (bytes.length === 1) return // Pong
    const decoder = decoding.createDecoder(bytes)
    const name = decoding.readVarString(decoder)
    const type = decoding.readVarUint(decoder)
    if (type === 2) {
      reply(frame(name, 2, (e) => {
        encoding.writeVarUint(e, 2)
        encoding.writeVarString(e, 'read-write')
      }))
      if (!pinged) {
        pinged = true
        reply(new Uint8Array([9]))
      }
    } else if (type === 0 && decoding.readVarUint(decoder) === 0) {
      reply(frame(name, 0, (e) => {
        encoding.writeVarUint(e, 1)
        encoding.writeVarUint8Array(e, new Uint8Array([0, 0]))
      }))
      // An empty state vector: the provider answers with a SyncStep2 of its whole state.
      reply(frame(name, 0, (e) => {
        encoding.writeVarUint(e, 0)
        encoding.writeVarUint8Array(e, new Uint8Array([0]))
      }))
    } else if (type === 5) {
      stateless.add(name)
    } else if (type === 0) {
      reply(frame(name, 8, (e) => encoding.writeVarUint(e, 1)))
    }
  })
})

const websocketProvider = new HocuspocusProviderWebsocket({
  url: `ws://127.0.0.1:${server.address().port}`,
  WebSocketPolyfill: WebSocket,
})

const run = async (name, sessionAwareness) => {
  const document = new Y.Doc()
  const provider = new HocuspocusProvider({
    websocketProvider,
    name,
    document,
    token: 'secret-token',
    sessionAwareness,
  })
  provider.attach()
  await new Promise((resolve) => provider.on('synced', resolve))
  document.getText('body').insert(0, 'héllo')
  provider.setAwarenessField('user', { name: 'Ada' })
  provider.sendStateless(JSON.stringify({ hello: 'wörld' }))
  // Wait until the server has seen the stateless frame (the last one this sends).
  while (![...stateless].some((key) => key.startsWith(name) && (key !== name) === sessionAwareness)) {
    await new Promise((resolve) => setTimeout(resolve, 10))
  }
  return provider
}

const plain = await run('doc-ü', false)
const session = await run('doc-ü', true)
plain.destroy()
session.destroy()
websocketProvider.destroy()
server.close()
clearTimeout(deadline)
console.log(JSON.stringify({ sent, received }))
process.exit(0)
