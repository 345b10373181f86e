// The page's texts come from the server's message catalogs (GET /api/messages): t(key, values)
// fills {name} placeholders; number() and percent() write numbers by the catalog's own rules
// (number.thousands, number.decimal, number.percent), the same ones convnet.i18n uses.
let catalog = {};
let language = "en";

export function useCatalog(lang, messages) {
  language = lang;
  catalog = messages;
  document.documentElement.lang = lang;
}

export const currentLanguage = () => language;

const PLACEHOLDER = /\{(\w+)\}/g;

export function t(key, values = {}) {
  const template = catalog[key] ?? key;
  return template.replace(PLACEHOLDER, (whole, name) => (name in values ? String(values[name]) : whole));
}

// Fill `element` with message `key`; a value may be a DOM node (a bold number, a <code>).
export function fill(element, key, values = {}) {
  const parts = (catalog[key] ?? key).split(/\{(\w+)\}/); // names at the odd indices
  element.replaceChildren(
    ...parts.map((part, i) => {
      if (i % 2 === 0) return document.createTextNode(part);
      const value = part in values ? values[part] : `{${part}}`;
      return value instanceof Node ? value : document.createTextNode(String(value));
    }),
  );
}

export function element(tag, text, className = "") {
  const made = document.createElement(tag);
  made.textContent = text;
  if (className) made.className = className;
  return made;
}

export function number(value, digits = 0) {
  const [whole, fraction] = Math.abs(value).toFixed(digits).split(".");
  const grouped = whole.replace(/\B(?=(\d{3})+(?!\d))/g, t("number.thousands"));
  const sign = value < 0 && Number(Math.abs(value).toFixed(digits)) !== 0 ? "-" : "";
  return sign + grouped + (fraction === undefined ? "" : t("number.decimal") + fraction);
}

export function percent(fraction, digits = 1) {
  return t("number.percent", { value: number(100 * fraction, digits) });
}

// Every element marked in the HTML: data-i18n sets its text, data-i18n-label its aria-label.
export function translate(root = document) {
  for (const marked of root.querySelectorAll("[data-i18n]")) marked.textContent = t(marked.dataset.i18n);
  for (const marked of root.querySelectorAll("[data-i18n-label]")) {
    marked.setAttribute("aria-label", t(marked.dataset.i18nLabel));
  }
}

// The visitor's own choice, else the server's --lang, else the first of the browser's
// languages the page has, else the server's default.
export function pickLanguage({ available, stored, fixed, fallback, browser }) {
  if (available.includes(stored)) return stored;
  if (fixed) return fallback;
  for (const tag of browser || []) {
    const code = String(tag).toLowerCase().split("-")[0];
    if (available.includes(code)) return code;
  }
  return fallback;
}
