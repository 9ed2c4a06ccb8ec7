/**
 * Where each page lives, and how room names become URL paths.
 *
 * Room names may contain `/` and any Unicode letter. Each `/`-separated segment is
 * percent-encoded on its own, so `team/notes/été` becomes `team/notes/%C3%A9t%C3%A9`:
 * readable, and what the server percent-decodes back. The y-websocket client does not
 * escape room names (it opens `serverUrl + '/' + room`), so it is handed the encoded
 * form too.
 *
 * `/d/{room}/history` is the history of `{room}`. A room whose own name ends in
 * `/history` keeps that last slash encoded (`/d/a%2Fhistory` is the editor of
 * `a/history`), so every room has exactly one editor path and one history path.
 */

export type Route =
  | { page: 'list' }
  | { page: 'editor'; room: string }
  | { page: 'history'; room: string }
  | { page: 'missing' }

const HISTORY = '/history'

/** Percent-encode each `/`-separated segment of a room name, keeping the slashes. */
export function encodeRoom (room: string): string {
  return room.split('/').map(encodeURIComponent).join('/')
}

/** The editor's path for `room`. */
export function editorPath (room: string): string {
  let path = encodeRoom(room)
  if (path.endsWith(HISTORY)) {
    path = path.slice(0, -HISTORY.length) + '%2F' + HISTORY.slice(1)
  }
  return '/d/' + path
}

/** The history page's path for `room`. */
export function historyPath (room: string): string {
  return '/d/' + encodeRoom(room) + HISTORY
}

/** Which page a (still percent-encoded) `location.pathname` shows. */
export function parseRoute (pathname: string): Route {
  if (pathname === '/' || pathname === '') return { page: 'list' }
  if (!pathname.startsWith('/d/')) return { page: 'missing' }
  let rest = pathname.slice(3)
  let page: 'editor' | 'history' = 'editor'
  if (rest.endsWith(HISTORY) && rest.length > HISTORY.length) {
    page = 'history'
    rest = rest.slice(0, -HISTORY.length)
  }
  let room: string
  try {
    room = decodeURIComponent(rest)
  } catch {
    room = rest // a stray '%': take the name as written; the server judges it
  }
  return room === '' ? { page: 'missing' } : { page, room }
}
