#!/usr/bin/env node
// Scriptable real-Yjs client for collab's interop tests.
//
// Drives the genuine JavaScript stack (yjs + y-websocket's WebsocketProvider, `ws` as the
// WebSocket implementation) and is remote-controlled over stdin/stdout with newline-delimited
// JSON. See README.md beside this file for the protocol.
//
//   node tests/js/client.mjs --url ws://127.0.0.1:PORT/ws --room ROOM [--name NAME]
//                            [--params k=v,k2=v2] [--color '#rrggbb'] [--max-seconds 120]
//                            [--max-backoff MS]
//
// stdout carries ONLY protocol lines (one JSON object per line); diagnostics go to stderr.

import * as Y from 'yjs'
import { WebsocketProvider } from 'y-websocket'
import WS from 'ws'

// Nothing but protocol lines may reach stdout: route any stray console.log to stderr.
console.log = (...args) => console.error(...args)
console.info = (...args) => console.error(...args)
console.debug = (...args) => console.error(...args)

const USAGE = `usage: node client.mjs --url ws://HOST:PORT/PREFIX --room ROOM [--name NAME]
       [--params k=v,k2=v2 | --params '{"k":"v"}'] [--color '#rrggbb']
       [--max-seconds N (default 120)] [--max-backoff MS (default 2500)]`

const die = (msg) => {
  process.stderr.write(`client.mjs: ${msg}\n${USAGE}\n`)
  process.exit(64)
}

// ---------------------------------------------------------------- arguments
const parseArgs = (argv) => {
  const opts = { name: 'js-client', color: null, params: {}, maxSeconds: 120, maxBackoff: 2500 }
  for (let i = 0; i < argv.length; i++) {
    let arg = argv[i]
    let value
    const eq = arg.indexOf('=')
    if (arg.startsWith('--') && eq !== -1) {
      value = arg.slice(eq + 1)
      arg = arg.slice(0, eq)
    }
    const next = () => {
      if (value !== undefined) return value
      if (i + 1 >= argv.length) die(`missing value for ${arg}`)
      return argv[++i]
    }
    switch (arg) {
      case '--url': opts.url = next(); break
      case '--room': opts.room = next(); break
      case '--name': opts.name = next(); break
      case '--color': opts.color = next(); break
      case '--params': opts.params = parseParams(next()); break
      case '--max-seconds': opts.maxSeconds = Number(next()); break
      case '--max-backoff': opts.maxBackoff = Number(next()); break
      case '-h':
      case '--help':
        process.stderr.write(USAGE + '\n')
        process.exit(0)
        break
      default: die(`unknown argument ${arg}`)
    }
  }
  if (!opts.url) die('--url is required')
  if (opts.room === undefined) die('--room is required')
  if (!(opts.maxSeconds > 0)) die('--max-seconds must be > 0')
  if (!(opts.maxBackoff >= 0)) die('--max-backoff must be >= 0')
  return opts
}

// "k=v,k2=v2" (value may contain '=') or a JSON object (for values containing ',').
const parseParams = (s) => {
  const params = {}
  const trimmed = s.trim()
  if (trimmed === '') return params
  if (trimmed.startsWith('{')) {
    let obj
    try { obj = JSON.parse(trimmed) } catch (e) { die(`--params: bad JSON: ${e.message}`) }
    for (const [k, v] of Object.entries(obj)) params[k] = String(v)
    return params
  }
  for (const pair of trimmed.split(',')) {
    if (pair === '') continue
    const eq = pair.indexOf('=')
    if (eq === -1) params[pair] = ''
    else params[pair.slice(0, eq)] = pair.slice(eq + 1)
  }
  return params
}

const opts = parseArgs(process.argv.slice(2))

// ---------------------------------------------------------------- output
let exiting = false
let outputClosed = false // set after the final line ('bye' / 'fatal'): nothing may follow it
process.stdout.on('error', () => { // parent went away (EPIPE): nothing left to talk to
  process.exit(0)
})
const emit = (obj) => {
  if (outputClosed) return
  try {
    process.stdout.write(JSON.stringify(obj) + '\n')
  } catch (e) {
    process.stderr.write(`client.mjs: cannot write event: ${e}\n`)
  }
}
const log = (msg) => process.stderr.write(`client.mjs[${opts.name}]: ${msg}\n`)

// ---------------------------------------------------------------- doc + provider
const PALETTE = ['#e6194b', '#3cb44b', '#4363d8', '#f58231', '#911eb4', '#42d4f4', '#f032e6', '#9a6324']
const doc = new Y.Doc()
const text = doc.getText('content')
const color = opts.color || PALETTE[doc.clientID % PALETTE.length]

const provider = new WebsocketProvider(opts.url, opts.room, doc, {
  WebSocketPolyfill: WS,
  params: opts.params,
  disableBc: true,
  maxBackoffTime: opts.maxBackoff,
  connect: false // connect after every listener is attached, so no event is missed
})
const awareness = provider.awareness
awareness.setLocalStateField('user', { name: opts.name, color })

const statusOf = () => provider.wsconnected ? 'connected' : (provider.wsconnecting ? 'connecting' : 'disconnected')

const awarenessStates = () => {
  const out = {}
  for (const [clientID, state] of awareness.getStates()) out[String(clientID)] = state
  return out
}

provider.on('status', ({ status }) => emit({ event: 'status', status }))
provider.on('sync', (synced) => emit({ event: 'synced', synced }))
provider.on('connection-close', (ev) => {
  // `ev` is the socket's CloseEvent, or null when the provider closed the socket itself
  // (provider.disconnect() / destroy(), or its 30 s "no message received" watchdog).
  if (ev == null) {
    emit({ event: 'close', code: null, reason: '', local: true })
  } else {
    emit({ event: 'close', code: ev.code, reason: String(ev.reason ?? ''), wasClean: !!ev.wasClean, local: false })
  }
})
// y-websocket >= 3.1: a server close the provider will NOT retry (by default codes 4400-4499).
provider.on('closed', ({ code, reason }) => emit({ event: 'closed', code, reason: String(reason ?? '') }))
provider.on('connection-error', (ev) => {
  emit({ event: 'connection-error', message: String((ev && (ev.message || (ev.error && ev.error.message))) || 'error') })
})

text.observe((_ev, tr) => emit({ event: 'text', text: text.toString(), local: tr.local }))

awareness.on('change', ({ added, updated, removed }, origin) => {
  emit({ event: 'awareness', states: awarenessStates(), added, updated, removed, local: origin === 'local' })
})

// ---------------------------------------------------------------- shutdown
const shutdown = (code, reason, id) => {
  if (exiting) return
  exiting = true
  const sock = provider.ws
  try { provider.destroy() } catch (e) { log(`destroy failed: ${e}`) }
  const bye = { event: 'bye', reason }
  if (id !== undefined) bye.id = id
  emit(bye)
  outputClosed = true
  // give the closing handshake (and the final "awareness: null" frame) a moment to leave
  let done = false
  const finish = () => {
    if (done) return
    done = true
    process.exit(code)
  }
  if (sock && sock.readyState !== WS.CLOSED && typeof sock.once === 'function') {
    sock.once('close', finish)
    setTimeout(finish, 500)
  } else {
    setImmediate(finish)
  }
}

const selfDestruct = setTimeout(() => {
  log(`--max-seconds ${opts.maxSeconds} reached, exiting`)
  shutdown(3, 'max-seconds')
}, opts.maxSeconds * 1000)
selfDestruct.unref()

process.on('SIGTERM', () => shutdown(0, 'SIGTERM'))
process.on('SIGINT', () => shutdown(0, 'SIGINT'))
process.on('uncaughtException', (e) => {
  log(`uncaught exception: ${e && e.stack ? e.stack : e}`)
  emit({ event: 'fatal', error: String(e && e.message ? e.message : e) })
  outputClosed = true
  process.exit(1)
})

// ---------------------------------------------------------------- commands
const reply = (cmd, obj) => {
  if (cmd && cmd.id !== undefined) obj.id = cmd.id
  emit(obj)
}

const requireInt = (cmd, key) => {
  const v = cmd[key]
  if (!Number.isInteger(v) || v < 0) throw new Error(`"${key}" must be a non-negative integer`)
  return v
}

const handlers = {
  insert (cmd) {
    const index = requireInt(cmd, 'index')
    if (typeof cmd.text !== 'string') throw new Error('"text" must be a string')
    if (index > text.length) throw new Error(`index ${index} > length ${text.length}`)
    text.insert(index, cmd.text)
    return { event: 'ok' }
  },
  delete (cmd) {
    const index = requireInt(cmd, 'index')
    const length = requireInt(cmd, 'length')
    if (index + length > text.length) throw new Error(`range ${index}+${length} > length ${text.length}`)
    text.delete(index, length)
    return { event: 'ok' }
  },
  state () {
    return {
      event: 'state',
      text: text.toString(),
      synced: provider.synced,
      status: statusOf(),
      clientID: doc.clientID,
      awareness: awarenessStates(),
      url: provider.url,
      shouldConnect: provider.shouldConnect
    }
  },
  awareness (cmd) {
    if (cmd.state === null) {
      awareness.setLocalState(null)
    } else if (cmd.state && typeof cmd.state === 'object' && !Array.isArray(cmd.state)) {
      if (awareness.getLocalState() === null) awareness.setLocalState({})
      for (const [k, v] of Object.entries(cmd.state)) awareness.setLocalStateField(k, v)
    } else {
      throw new Error('"state" must be an object (or null to clear the local state)')
    }
    return { event: 'ok' }
  },
  disconnect () {
    provider.disconnect()
    return { event: 'ok' }
  },
  connect () {
    provider.connect()
    return { event: 'ok' }
  },
  ping () {
    return { event: 'pong' }
  },
  quit (cmd) {
    shutdown(0, 'quit', cmd.id)
    return null
  }
}

const handleLine = (line) => {
  if (exiting) return
  const trimmed = line.trim()
  if (trimmed === '') return
  let cmd
  try {
    cmd = JSON.parse(trimmed)
  } catch (e) {
    emit({ event: 'error', error: `bad JSON: ${e.message}` })
    return
  }
  if (!cmd || typeof cmd !== 'object' || Array.isArray(cmd)) {
    emit({ event: 'error', error: 'command must be a JSON object' })
    return
  }
  const handler = Object.prototype.hasOwnProperty.call(handlers, cmd.cmd) ? handlers[cmd.cmd] : null
  if (!handler) {
    reply(cmd, { event: 'error', error: `unknown cmd ${JSON.stringify(cmd.cmd)}` })
    return
  }
  try {
    const out = handler(cmd)
    if (out) reply(cmd, out)
  } catch (e) {
    reply(cmd, { event: 'error', error: String(e && e.message ? e.message : e) })
  }
}

// Manual line splitting (not readline) so that every complete line is handled in order and
// the stream's end is seen reliably.
let buffered = ''
process.stdin.setEncoding('utf8')
process.stdin.on('data', (chunk) => {
  buffered += chunk
  let nl
  while ((nl = buffered.indexOf('\n')) !== -1) {
    const line = buffered.slice(0, nl)
    buffered = buffered.slice(nl + 1)
    handleLine(line)
  }
})
process.stdin.on('end', () => {
  if (buffered.trim() !== '') handleLine(buffered)
  buffered = ''
  shutdown(0, 'stdin closed')
})
process.stdin.on('error', () => shutdown(0, 'stdin error'))

emit({ event: 'ready', clientID: doc.clientID, url: provider.url, name: opts.name })
provider.connect()
