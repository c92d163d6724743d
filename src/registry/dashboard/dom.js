// @ts-check
// Elements are only ever built with createElement and filled with textContent: the page's CSP
// (Trusted Types with no policy) makes HTML from strings throw, and instance data comes from
// clients.

/**
 * An element the page is known to have; a missing one is a broken page, said at once.
 * @template {HTMLElement} [T=HTMLElement]
 * @param {string} id
 * @param {{ new (): T, prototype: T }} [kind] what the element must be
 * @returns {T}
 */
export function byId(id, kind) {
  const node = document.getElementById(id)
  if (!(node instanceof (kind ?? HTMLElement))) throw new Error(`the page has no ${kind?.name ?? 'element'} #${id}`)
  return /** @type {T} */ (node)
}

/**
 * @template {keyof HTMLElementTagNameMap} K
 * @param {K} tag
 * @param {string} [className]
 * @param {string} [text]
 * @returns {HTMLElementTagNameMap[K]}
 */
export function el(tag, className, text) {
  const node = document.createElement(tag)
  if (className) node.className = className
  if (text !== undefined) node.textContent = text
  return node
}

/** Writes only a change, so that an unchanged text is not announced again nor relaid out. @param {Node} node @param {string} text */
export function setText(node, text) {
  if (node.textContent !== text) node.textContent = text
}
