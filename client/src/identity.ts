/**
 * Who this browser is: a display name and a colour, chosen once and remembered in
 * localStorage. Others see them next to this person's cursor, in the list of who is
 * here, and history records the name as the author of their edits.
 *
 * Once the server checks tokens, `?token=` on any page is remembered too and sent with
 * every connection (the WebSocket's `token` parameter, the API's Bearer header).
 */

export interface User {
  name: string
  color: string
  /** The colour of this person's selection, as others see it. */
  colorLight: string
}

/** Distinct, readable colours for cursors and avatars (with white text on them). */
export const COLORS = [
  '#2563eb', '#db2777', '#059669', '#d97706', '#7c3aed', '#dc2626',
  '#0891b2', '#65a30d', '#c026d3', '#ea580c', '#4f46e5', '#0d9488'
]

/**
 * A stable colour for an author name, as history shows it (history records names, not
 * the colours people chose): the same name has the same colour on every page.
 */
export function authorColor (name: string): string {
  let hash = 0
  for (const char of name) hash = (hash * 31 + char.codePointAt(0)!) >>> 0
  return COLORS[hash % COLORS.length]
}

const USER_KEY = 'collab:user'
const TOKEN_KEY = 'collab:token'

function storage (): Storage | null {
  try {
    return window.localStorage
  } catch {
    return null // storage disabled: nothing is remembered, everything else works
  }
}

/** The remembered user, or `null` on a first visit. */
export function loadUser (): User | null {
  try {
    const raw = storage()?.getItem(USER_KEY)
    if (raw == null) return null
    const value = JSON.parse(raw) as Partial<User>
    if (typeof value.name !== 'string' || value.name.trim() === '') return null
    const color = typeof value.color === 'string' && /^#[0-9a-f]{6}$/i.test(value.color)
      ? value.color
      : COLORS[0]
    return { name: value.name.trim().slice(0, 60), color, colorLight: color + '33' }
  } catch {
    return null
  }
}

export function saveUser (name: string, color: string): User {
  const user = { name: name.trim().slice(0, 60), color, colorLight: color + '33' }
  storage()?.setItem(USER_KEY, JSON.stringify({ name: user.name, color }))
  return user
}

/** A colour for someone who has not picked one: random, so two newcomers differ. */
export function randomColor (): string {
  return COLORS[Math.floor(Math.random() * COLORS.length)]
}

/**
 * The access token, if any: taken from `?token=` (then removed from the address bar, so
 * it does not end up in screenshots or shared links) and remembered.
 */
let cachedToken: string | null | undefined

export function token (): string | null {
  if (cachedToken !== undefined) return cachedToken
  cachedToken = readToken()
  return cachedToken
}

function readToken (): string | null {
  const url = new URL(window.location.href)
  const fromUrl = url.searchParams.get('token')
  if (fromUrl != null) {
    storage()?.setItem(TOKEN_KEY, fromUrl)
    url.searchParams.delete('token')
    window.history.replaceState(window.history.state, '', url.pathname + url.search + url.hash)
    return fromUrl
  }
  return storage()?.getItem(TOKEN_KEY) ?? null
}

const KIND_KEY = 'collab:kind:'

/** Remember that `room` is rich text (or no longer is), for when the server cannot say. */
export function rememberKind (room: string, kind: string): void {
  if (kind === 'rich') storage()?.setItem(KIND_KEY + room, kind)
  else storage()?.removeItem(KIND_KEY + room)
}

export function rememberedKind (room: string): string | null {
  return storage()?.getItem(KIND_KEY + room) ?? null
}

/** Forget the token (after the server refused it). */
export function forgetToken (): void {
  cachedToken = null
  storage()?.removeItem(TOKEN_KEY)
}
