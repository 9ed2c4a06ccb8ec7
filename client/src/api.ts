/** collab's HTTP API, as the pages use it. Errors come back as `ApiError`. */

import { token } from './identity'
import { encodeRoom } from './route'

export class ApiError extends Error {
  constructor (readonly status: number, message: string) {
    super(message)
  }
}

/** Fetch `path`; the body as text, or an `ApiError` carrying the server's `{"error"}`. */
async function fetchText (path: string, init: RequestInit, accept: string): Promise<string> {
  const headers = new Headers(init.headers)
  headers.set('Accept', accept)
  const bearer = token()
  if (bearer != null) headers.set('Authorization', `Bearer ${bearer}`)
  if (init.body != null && !headers.has('Content-Type')) {
    headers.set('Content-Type', 'application/json')
  }
  let response: Response
  try {
    response = await fetch(path, { ...init, headers })
  } catch {
    throw new ApiError(0, "Can't reach the server.")
  }
  const text = await response.text()
  if (!response.ok) {
    let body: unknown = null
    try {
      body = text === '' ? null : JSON.parse(text)
    } catch {
      body = null
    }
    const message = typeof body === 'object' && body != null && 'error' in body
      ? String((body as { error: unknown }).error)
      : `${response.status} ${response.statusText}`
    throw new ApiError(response.status, message)
  }
  return text
}

export async function request<T> (path: string, init: RequestInit = {}): Promise<T> {
  const text = await fetchText(path, init, 'application/json')
  try {
    return (text === '' ? null : JSON.parse(text)) as T
  } catch {
    return null as T
  }
}

/** A GET answered with HTML (a rich-text version or diff): its text. */
export async function requestHtml (path: string): Promise<string> {
  return await fetchText(path, {}, 'text/html')
}

/** `/api/docs/{room}` + `rest`, with the room encoded the way the server decodes it. */
export function docPath (room: string, rest = ''): string {
  return '/api/docs/' + encodeRoom(room) + rest
}

export interface Person {
  name: string
  color: string
}

export type Access = 'none' | 'read' | 'write'

export interface Me {
  /** Whether the server checks tokens at all. */
  auth: boolean
  user: string | null
  name: string | null
  access?: Access
}

/** Who the server takes us for, and what we may do with `room`; `null` if it cannot say. */
export async function me (room: string | null): Promise<Me | null> {
  const abort = new AbortController()
  const timer = setTimeout(() => abort.abort(), 4000)
  try {
    const query = room != null ? '?' + new URLSearchParams({ room }).toString() : ''
    return await request<Me>('/api/me' + query, { signal: abort.signal })
  } catch {
    return null
  } finally {
    clearTimeout(timer)
  }
}

export interface DocSummary {
  name: string
  created: string
  updated: string
  size: number
  updates: number
  online: number
  people: Person[]
  access: Access
}

export interface DocPage {
  docs: DocSummary[]
  next: string | null
}

export async function listDocs (q: string, cursor: string | null, limit = 50): Promise<DocPage> {
  const params = new URLSearchParams({ limit: String(limit) })
  if (q !== '') params.set('q', q)
  if (cursor != null) params.set('cursor', cursor)
  return await request<DocPage>('/api/docs?' + params.toString())
}

// -- the history API (collab/api.py) ------------------------------------------------------

export interface DocInfo extends Lineages {
  name: string
  created: string
  seq: number
  time: string
  named_versions: number
}

export interface Entry {
  seq: number
  first_seq: number
  start: string
  end: string
  authors: string[]
  updates: number
  inserted: number
  deleted: number
  named: string[]
}

export interface Timeline {
  name: string
  seq: number
  entries: Entry[]
  next: string | null
}

export interface Span {
  op: 'equal' | 'insert' | 'delete'
  text: string
  author?: string
  first_seq?: number
  last_seq?: number
  start?: string
  end?: string
}

export interface Diff {
  root: string
  from: { seq: number, time: string }
  to: { seq: number, time: string }
  inserted: number
  deleted: number
  authors: string[]
  /** A text root's changes. */
  spans?: Span[]
  /** A rich-text root's union document (ProseMirror JSON with `ychange` marks). */
  doc?: ProseMirrorNode
  formatted?: number
}

/** A ProseMirror node as JSON (`{"type": "doc", "content": [...]}` at the top). */
export interface ProseMirrorNode {
  type: string
  attrs?: Record<string, unknown>
  content?: ProseMirrorNode[]
  marks?: Array<{ type: string, attrs?: Record<string, unknown> }>
  text?: string
}

export interface NamedVersion {
  id: number
  name: string
  seq: number
  created: string
  author: string | null
}

/**
 * `docPath(room, rest)` reading the history `lineage`: one a reset retired and kept
 * (docs/lineage.md), or with `null` the document's current one.
 */
function readPath (room: string, rest: string, lineage: string | null): string {
  const path = docPath(room, rest)
  if (lineage == null) return path
  return path + (path.includes('?') ? '&' : '?') + new URLSearchParams({ lineage }).toString()
}

/** What the history `lineage` (default the current one) holds, and the document's lineages. */
export async function docInfo (room: string, lineage: string | null = null): Promise<DocInfo> {
  return await request<DocInfo>(readPath(room, '/info', lineage))
}

export async function timeline (room: string, cursor: string | null, gapSeconds: number, lineage: string | null = null): Promise<Timeline> {
  const params = new URLSearchParams({ limit: '100', gap: String(gapSeconds) })
  if (cursor != null) params.set('cursor', cursor)
  return await request<Timeline>(readPath(room, '/history?' + params.toString(), lineage))
}

function diffQuery (from: number, to: number, root: string | null): string {
  const params = new URLSearchParams({ from: String(from), to: String(to) })
  if (root != null) params.set('root', root)
  return params.toString()
}

/** The newest seq and when it was written: one stored row read, no document rebuilt. */
export async function newest (room: string): Promise<{ seq: number, time: string | null }> {
  const page = await request<Timeline>(docPath(room, '/history?limit=1&raw=1'))
  return { seq: page.seq, time: page.entries[0]?.end ?? null }
}

/** What changed in `root` (default the main root) from version `from` to `to`. */
export async function diff (room: string, from: number, to: number, root: string | null = null, lineage: string | null = null): Promise<Diff> {
  return await request<Diff>(readPath(room, '/diff?' + diffQuery(from, to, root), lineage))
}

/** The same for a rich-text root, as the server's HTML (`<ins>` / `<del>` by author). */
export async function diffHtml (room: string, from: number, to: number, root: string, lineage: string | null = null): Promise<string> {
  return await requestHtml(readPath(room, '/diff?' + diffQuery(from, to, root) + '&format=html', lineage))
}

/** The newest version of a rich-text root as the server's HTML. */
export async function contentHtml (room: string, root: string): Promise<string> {
  return await requestHtml(docPath(room, '/content?' + new URLSearchParams({ format: 'html', root }).toString()))
}

/**
 * What a document holds: `text` (collab's own Markdown text, or nothing yet), `rich`
 * (a rich-text root written by Tiptap, ProseMirror, BlockNote or Lexical), or `other`
 * (only maps or arrays); `doc` is a rich-text document's newest version as ProseMirror
 * JSON. The server's main-root rule decides
 * (`collab/history/shape.py`): a document is rich text when its main root is.
 */
export type Kind = 'text' | 'rich' | 'other'

export interface Shape {
  kind: Kind
  doc: ProseMirrorNode | null
}

export async function docShape (room: string): Promise<Shape> {
  let doc: ProseMirrorNode
  try {
    doc = await request<ProseMirrorNode>(docPath(room, '/content?format=prosemirror'))
  } catch (error) {
    // 404: no such document yet (opening it creates a text document); 400: the main
    // root is not rich text (the message ends in its kind).
    if (error instanceof ApiError && error.status === 404) return { kind: 'text', doc: null }
    if (error instanceof ApiError && error.status === 400) {
      return { kind: / is text$/.test(error.message) ? 'text' : 'other', doc: null }
    }
    throw error
  }
  // A main root whose content was all deleted reads as the empty document: nothing tells
  // its kind, and nothing is lost by editing it as text. Tiptap always keeps a paragraph.
  if ((doc.content ?? []).length === 0) return { kind: 'text', doc: null }
  return { kind: 'rich', doc }
}

/** The main root's name (what every `?root=` defaults to), from the newest version. */
export async function mainRoot (room: string): Promise<string> {
  return (await request<Diff>(docPath(room, '/diff?from=latest&to=latest'))).root
}

export async function namedVersions (room: string, lineage: string | null = null): Promise<NamedVersion[]> {
  const body = await request<{ named_versions: NamedVersion[] }>(readPath(room, '/named-versions', lineage))
  return body.named_versions
}

export async function nameVersion (room: string, seq: number, name: string, user: string): Promise<NamedVersion> {
  return await request<NamedVersion>(docPath(room, '/named-versions'), {
    method: 'POST', body: JSON.stringify({ seq, name, user })
  })
}

export async function deleteNamedVersion (room: string, id: number): Promise<void> {
  await request<null>(docPath(room, `/named-versions/${id}`), { method: 'DELETE' })
}

/**
 * Make version `seq` the current content, as a new change. With `lineage`, the version is
 * of that retired history, and is restored into the current document all the same.
 */
export async function restore (room: string, seq: number, user: string, lineage: string | null = null): Promise<{ restored: number, seq: number, changed: boolean }> {
  const body = lineage == null ? { seq, user } : { seq, user, lineage }
  return await request(docPath(room, '/restore'), { method: 'POST', body: JSON.stringify(body) })
}

/** Why a history was retired: `load --replace`, a purge, or a reset (which keeps it). */
export type RetiredReason = 'replaced' | 'purged' | 'reset'

export interface RetiredLineage {
  lineage: string
  /** When it was retired (ISO time). */
  retired: string
  reason: RetiredReason
  /** Its history is kept: every history read takes `?lineage=` to read it. */
  readable: boolean
}

export interface Lineages {
  /** The id of the document's current history; null for documents older than lineages. */
  lineage: string | null
  /** The histories its name retired, oldest first. */
  retired_lineages: RetiredLineage[]
}

export interface LineageInfo extends Lineages {
  name: string
}

/** Which history the document has now (docs/lineage.md); null when it does not exist yet. */
export async function lineageOf (room: string): Promise<LineageInfo | null> {
  try {
    return await request<LineageInfo>(docPath(room, '/lineage'))
  } catch (error) {
    if (error instanceof ApiError && error.status === 404) return null
    throw error
  }
}
