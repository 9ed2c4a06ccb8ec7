/** Small modal dialogs: "what's your name?" and "name this version". */

import { h, icon } from './dom'
import { COLORS, type User, randomColor, saveUser } from './identity'
import { initials } from './format'

interface Field {
  title: string
  text: string
  label: string
  value: string
  placeholder: string
  submit: string
  /** Shown under the field; return an error message to refuse the value. */
  check?: (value: string) => string | null
  extra?: HTMLElement
  cancellable?: boolean
  onInput?: (value: string) => void
}

/** A one-field dialog; resolves with the trimmed value, or `null` when cancelled. */
export async function ask (field: Field): Promise<string | null> {
  return await new Promise(resolve => {
    const input = h('input', {
      type: 'text',
      value: field.value,
      placeholder: field.placeholder,
      maxlength: 512,
      required: true,
      autocomplete: 'off',
      spellcheck: 'false',
      'aria-label': field.label,
      'data-testid': 'dialog-input'
    })
    const error = h('p', { class: 'dialog-error', role: 'alert' })
    input.addEventListener('input', () => field.onInput?.(input.value))
    field.onInput?.(input.value)
    const close = (value: string | null): void => {
      dialog.close()
      dialog.remove()
      resolve(value)
    }
    const form = h('form', { method: 'dialog', class: 'dialog-body' },
      h('h2', null, field.title),
      h('p', { class: 'muted' }, field.text),
      h('label', { class: 'field' }, h('span', null, field.label), input),
      field.extra ?? null,
      error,
      h('div', { class: 'dialog-actions' },
        field.cancellable !== false
          ? h('button', { type: 'button', class: 'button', onclick: () => close(null) }, 'Cancel')
          : null,
        h('button', { type: 'submit', class: 'button primary', 'data-testid': 'dialog-submit' }, field.submit)
      )
    )
    form.addEventListener('submit', event => {
      event.preventDefault()
      const value = input.value.trim()
      const problem = value === '' ? `Please enter ${field.label.toLowerCase()}.` : field.check?.(value) ?? null
      if (problem != null) {
        error.textContent = problem
        input.focus()
        return
      }
      close(value)
    })
    const dialog = h('dialog', { class: 'dialog', 'aria-label': field.title }, form)
    dialog.addEventListener('cancel', event => {
      event.preventDefault()
      if (field.cancellable !== false) close(null)
    })
    document.body.append(dialog)
    dialog.showModal()
    input.focus()
    input.select()
  })
}

/** Ask for the name (and colour) others see; remembered in this browser. */
export async function askUser (current: User | null): Promise<User | null> {
  let color = current?.color ?? randomColor()
  const swatches = h('div', { class: 'swatches', role: 'radiogroup', 'aria-label': 'Colour' })
  const preview = h('span', { class: 'avatar large' })
  const paint = (): void => {
    for (const swatch of Array.from(swatches.children) as HTMLElement[]) {
      swatch.setAttribute('aria-checked', String(swatch.dataset.color === color))
    }
    preview.style.background = color
  }
  for (const c of COLORS) {
    swatches.append(h('button', {
      type: 'button',
      class: 'swatch',
      role: 'radio',
      style: `background:${c}`,
      'data-color': c,
      'aria-label': c,
      onclick: () => { color = c; paint() }
    }))
  }
  paint()
  const name = await ask({
    onInput: value => { preview.textContent = value.trim() === '' ? '' : initials(value) },
    title: current == null ? 'Welcome! What should others call you?' : 'Your name',
    text: 'Others see it next to your cursor, and history records it with your changes. It is remembered in this browser.',
    label: 'Your name',
    value: current?.name ?? '',
    placeholder: 'e.g. Ada Lovelace',
    submit: current == null ? 'Start editing' : 'Save',
    check: value => value.length > 60 ? 'Please use at most 60 characters.' : null,
    extra: h('div', { class: 'field' }, h('span', null, 'Colour'), h('div', { class: 'swatch-row' }, swatches, preview)),
    cancellable: current != null
  })
  if (name == null) return null
  return saveUser(name, color)
}

/** A full-page message for states the page cannot continue from. */
export function problem (kind: 'alert' | 'lock' | 'cloudOff', title: string, text: string, ...actions: HTMLElement[]): HTMLElement {
  return h('section', { class: 'problem', role: 'alert', 'data-testid': 'problem' },
    h('div', { class: 'problem-icon' }, icon(kind, 28)),
    h('h1', null, title),
    h('p', null, text),
    h('div', { class: 'problem-actions' }, ...actions)
  )
}
