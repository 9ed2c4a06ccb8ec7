/** How times, sizes and names are shown. */

const units: Array<[Intl.RelativeTimeFormatUnit, number]> = [
  ['year', 365 * 24 * 3600],
  ['month', 30 * 24 * 3600],
  ['week', 7 * 24 * 3600],
  ['day', 24 * 3600],
  ['hour', 3600],
  ['minute', 60]
]
const relative = new Intl.RelativeTimeFormat(undefined, { numeric: 'auto' })
const absolute = new Intl.DateTimeFormat(undefined, { dateStyle: 'medium', timeStyle: 'short' })
const precise = new Intl.DateTimeFormat(undefined, { dateStyle: 'medium', timeStyle: 'medium' })

/** "just now", "5 minutes ago", "yesterday"... */
export function ago (time: string | number | Date, now = Date.now()): string {
  const seconds = Math.round((new Date(time).getTime() - now) / 1000)
  if (Math.abs(seconds) < 45) return 'just now'
  for (const [unit, size] of units) {
    if (Math.abs(seconds) >= size || unit === 'minute') {
      return relative.format(Math.round(seconds / size), unit)
    }
  }
  return 'just now'
}

/** "22 Nov 2026, 14:05". */
export function when (time: string | number | Date): string {
  return absolute.format(new Date(time))
}

/** "22 Nov 2026, 14:05:31". */
export function whenPrecisely (time: string | number | Date): string {
  return precise.format(new Date(time))
}

/** "512 B", "3.4 KB", "1.2 MB". */
export function bytes (n: number): string {
  if (n < 1000) return `${n} B`
  if (n < 1000 * 1000) return `${(n / 1000).toFixed(n < 10000 ? 1 : 0)} KB`
  return `${(n / 1000 / 1000).toFixed(1)} MB`
}

/** "Ada Lovelace" -> "AL"; "bob" -> "B". */
export function initials (name: string): string {
  const words = name.trim().split(/\s+/).filter(Boolean)
  if (words.length === 0) return '?'
  const letters = words.length === 1 ? [words[0]] : [words[0], words[words.length - 1]]
  return letters.map(w => Array.from(w)[0].toUpperCase()).join('')
}

export function plural (n: number, one: string, many = one + 's'): string {
  return `${n.toLocaleString()} ${n === 1 ? one : many}`
}
