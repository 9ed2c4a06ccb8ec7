/**
 * Is everything this browser wrote on the server? The connection indicator's logic.
 *
 * The y-websocket protocol has no acknowledgements, so "all changes saved" is decided
 * by a round trip that the server must answer *after* everything sent before it: a
 * SyncStep1 (our state vector), to which every y-websocket server replies with a
 * SyncStep2 on the same socket. A socket delivers in order and the server handles one
 * socket's messages in order, so when the reply to a probe arrives, the server has
 * applied every update we sent before the probe. Each local change bumps `version`; a
 * probe remembers the version it was sent at; its reply marks that version acknowledged.
 * "Saved" means connected, synced and acknowledged up to the newest local version.
 *
 * Edits made while disconnected are not lost: y-indexeddb keeps them in this browser,
 * and on reconnect the server's SyncStep1 makes the provider send whatever it lacks; the
 * probe sent once the connection has synced confirms that too.
 */

import * as Y from 'yjs'
import type { WebsocketProvider } from 'y-websocket'
import * as encoding from 'lib0/encoding'
import * as decoding from 'lib0/decoding'
import * as syncProtocol from 'y-protocols/sync'

export type State =
  | 'connecting' // first connection under way
  | 'saving' // connected; some local changes not yet acknowledged
  | 'saved' // connected; the server has every local change
  | 'reconnecting' // the connection dropped; retrying
  | 'offline' // the browser says there is no network
  | 'unreachable' // never connected after several attempts
  | 'refused' // the server closed with a permanent code (4400-4499): no retries

export interface Status {
  state: State
  /** Local changes the server does not have yet (kept in this browser meanwhile). */
  pending: boolean
  /** The close code and reason of the last closed connection, if any. */
  closeCode: number | null
  closeReason: string
}

const MESSAGE_SYNC = 0
const HANDSHAKE = -1 // the provider's own SyncStep1 on connect: it acknowledges nothing
const UNREACHABLE_AFTER = 3 // failed attempts before "can't reach the server"

type SyncHandler = (
  encoder: encoding.Encoder,
  decoder: decoding.Decoder,
  provider: WebsocketProvider,
  emitSynced: boolean,
  messageType: number
) => void

export class SaveStatus {
  private version = 0
  private acked = 0
  private probes: number[] = [] // versions of the probes awaiting a reply, in order
  private probeTimer: ReturnType<typeof setTimeout> | null = null
  private everSynced = false
  private closeCode: number | null = null
  private closeReason = ''
  private last = ''

  constructor (
    private readonly doc: Y.Doc,
    private readonly provider: WebsocketProvider,
    private readonly onChange: (status: Status) => void
  ) {
    doc.on('update', this.onUpdate)
    provider.on('status', this.onStatus)
    provider.on('sync', this.onSync)
    provider.on('connection-close', this.onClose)
    provider.on('closed', this.emit)
    window.addEventListener('online', this.emit)
    window.addEventListener('offline', this.emit)
    // Watch the replies to SyncStep1 messages as the provider reads them.
    const handlers = provider.messageHandlers as SyncHandler[]
    const original = handlers[MESSAGE_SYNC]
    handlers[MESSAGE_SYNC] = (encoder, decoder, provider, emitSynced, messageType) => {
      const syncType = decoding.peekVarUint(decoder)
      original(encoder, decoder, provider, emitSynced, messageType)
      // emitSynced is false for messages from other tabs (BroadcastChannel).
      if (emitSynced && syncType === syncProtocol.messageYjsSyncStep2) this.onReply()
    }
    if (provider.wsconnected) this.probes = [HANDSHAKE]
    this.emit()
  }

  destroy (): void {
    this.doc.off('update', this.onUpdate)
    this.provider.off('status', this.onStatus)
    this.provider.off('sync', this.onSync)
    this.provider.off('connection-close', this.onClose)
    this.provider.off('closed', this.emit)
    window.removeEventListener('online', this.emit)
    window.removeEventListener('offline', this.emit)
    if (this.probeTimer != null) clearTimeout(this.probeTimer)
  }

  get status (): Status {
    const provider = this.provider
    const pending = this.acked < this.version
    let state: State
    if (this.closeCode != null && this.closeCode >= 4400 && this.closeCode < 4500 &&
        !provider.shouldConnect) {
      state = 'refused'
    } else if (provider.wsconnected && provider.synced) {
      state = pending ? 'saving' : 'saved'
    } else if (!navigator.onLine) {
      state = 'offline'
    } else if (!this.everSynced) {
      state = provider.wsUnsuccessfulReconnects >= UNREACHABLE_AFTER ? 'unreachable' : 'connecting'
    } else {
      state = 'reconnecting'
    }
    return { state, pending, closeCode: this.closeCode, closeReason: this.closeReason }
  }

  private readonly emit = (): void => {
    const status = this.status
    const key = JSON.stringify(status)
    if (key !== this.last) {
      this.last = key
      this.onChange(status)
    }
  }

  private readonly onUpdate = (_update: Uint8Array, origin: unknown): void => {
    if (origin === this.provider) return // from the server (or another tab that sends it)
    this.version++
    this.scheduleProbe()
    this.emit()
  }

  private readonly onStatus = ({ status }: { status: string }): void => {
    // The provider sends its SyncStep1 right after announcing 'connected'.
    this.probes = status === 'connected' ? [HANDSHAKE] : []
    if (status === 'connected') {
      this.closeCode = null
      this.closeReason = ''
    }
    this.emit()
  }

  private readonly onSync = (synced: boolean): void => {
    if (synced) {
      this.everSynced = true
      this.probe() // confirms what the handshake uploaded
    }
    this.emit()
  }

  private readonly onClose = (event: CloseEvent | null): void => {
    if (event != null) {
      this.closeCode = event.code
      this.closeReason = event.reason
    }
    this.emit() // the provider emits 'closed' next if it will not retry
  }

  private onReply (): void {
    const version = this.probes.shift()
    if (version !== undefined && version > this.acked) this.acked = version
    if (this.acked < this.version && this.probes.length === 0) this.scheduleProbe()
    this.emit()
  }

  private scheduleProbe (): void {
    // One probe in flight at a time; changes made meanwhile get the next one. The short
    // delay lets a burst of keystrokes share a probe.
    if (this.probeTimer != null || this.probes.length > 0) return
    this.probeTimer = setTimeout(() => {
      this.probeTimer = null
      this.probe()
    }, 150)
  }

  private probe (): void {
    const ws = this.provider.ws
    if (ws == null || !this.provider.wsconnected || ws.readyState !== WebSocket.OPEN) return
    const encoder = encoding.createEncoder()
    encoding.writeVarUint(encoder, MESSAGE_SYNC)
    syncProtocol.writeSyncStep1(encoder, this.doc)
    ws.send(encoding.toUint8Array(encoder))
    this.probes.push(this.version)
  }
}

/** What the indicator says for each state. */
export function describe (status: Status): { label: string, detail: string } {
  const kept = status.pending ? 'Your edits are kept in this browser and sent when it is back.' : ''
  switch (status.state) {
    case 'saved':
      return { label: 'All changes saved', detail: 'Connected. The server has every change.' }
    case 'saving':
      return { label: 'Saving…', detail: 'Connected. Sending your latest changes.' }
    case 'connecting':
      return { label: 'Connecting…', detail: 'Opening a connection to the server.' }
    case 'reconnecting':
      return {
        label: status.pending ? 'Reconnecting… (edits kept)' : 'Reconnecting…',
        detail: `The connection dropped; retrying. ${kept}`.trim()
      }
    case 'offline':
      return {
        label: status.pending ? 'Offline (edits kept)' : 'Offline',
        detail: `This browser has no network. ${kept || 'You can keep editing.'}`
      }
    case 'unreachable':
      return {
        label: "Can't reach the server",
        detail: `Still trying. ${kept || 'You can keep editing; your edits are kept in this browser.'}`
      }
    case 'refused': {
      const labels: Record<number, string> = {
        4400: 'Invalid name', 4401: 'Sign-in needed', 4403: 'No access', 4404: 'Deleted', 4408: 'Sign-in needed', 4410: 'Replaced', 4413: 'Too large'
      }
      const label = labels[status.closeCode ?? 0] ?? 'Not connected'
      return { label, detail: status.closeReason || `Closed (${status.closeCode ?? ''})` }
    }
  }
}
