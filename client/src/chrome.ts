/** The bar at the top of every page: brand, where you are, and who you are. */

import { h } from './dom'
import { initials } from './format'
import { type User, loadUser } from './identity'
import { askUser } from './dialog'
import { editorPath } from './route'

export interface Bar {
  element: HTMLElement
  /** Where page-specific controls go (status, people, buttons). */
  tools: HTMLElement
  setUser: (user: User | null) => void
}

/**
 * `crumbs` is the room name (its `/`-separated parts are shown as a path; the last one
 * links to the editor when `link` is true) and an optional page title after it.
 */
export function bar (room: string | null, page: string | null, onUser: (user: User) => void): Bar {
  const crumbs = h('nav', { class: 'crumbs', 'aria-label': 'Breadcrumb' },
    h('a', { href: '/', class: 'brand', title: 'All documents' },
      h('span', { class: 'brand-mark', 'aria-hidden': 'true' }),
      h('span', null, 'collab')
    )
  )
  if (room != null) {
    const parts = room.split('/')
    const name = h('span', { class: 'crumb-name', title: room, 'data-testid': 'room-name' })
    parts.forEach((part, index) => {
      if (index < parts.length - 1) {
        name.append(h('span', { class: 'crumb-folder' }, part, h('span', { class: 'crumb-sep' }, '/')))
      } else {
        name.append(h('span', null, part === '' ? '(untitled)' : part))
      }
    })
    crumbs.append(h('span', { class: 'crumb-sep', 'aria-hidden': 'true' }, '/'))
    crumbs.append(page != null ? h('a', { href: editorPath(room), class: 'crumb-link' }, name) : name)
  }
  if (page != null) {
    crumbs.append(h('span', { class: 'crumb-sep', 'aria-hidden': 'true' }, '/'), h('span', { class: 'crumb-page' }, page))
  }
  const tools = h('div', { class: 'bar-tools' })
  const me = h('button', { class: 'me', type: 'button', title: 'Change your name or colour', 'data-testid': 'me' })
  const setUser = (user: User | null): void => {
    me.replaceChildren()
    if (user == null) {
      me.hidden = true
      return
    }
    me.hidden = false
    me.append(
      h('span', { class: 'avatar', style: `background:${user.color}` }, initials(user.name)),
      h('span', { class: 'me-name' }, user.name)
    )
  }
  me.addEventListener('click', () => {
    void askUser(loadUser()).then(user => {
      if (user != null) {
        setUser(user)
        onUser(user)
      }
    })
  })
  setUser(loadUser())
  const element = h('header', { class: 'bar' }, crumbs, tools, me)
  return { element, tools, setUser }
}
