// Small DOM helpers shared by the pages: elements, icons, avatars, times and toasts.

export const $ = (selector, root = document) => root.querySelector(selector);
export const $$ = (selector, root = document) => [...root.querySelectorAll(selector)];

/** An element with attributes (class, text, on*, aria-*, …) and children. */
export function el(tag, attrs = {}, ...children) {
  const node = document.createElement(tag);
  for (const [key, value] of Object.entries(attrs)) {
    if (value === null || value === undefined || value === false) continue;
    if (key === "class") node.className = value;
    else if (key === "text") node.textContent = value;
    else if (key.startsWith("on")) node.addEventListener(key.slice(2), value);
    else node.setAttribute(key, value === true ? "" : value);
  }
  for (const child of children.flat()) {
    if (child === null || child === undefined || child === false) continue;
    node.append(child instanceof Node ? child : document.createTextNode(String(child)));
  }
  return node;
}

const SVG = "http://www.w3.org/2000/svg";

/** An icon from the page's sprite (decorative unless labelled). */
export function icon(name, label = null) {
  const svg = document.createElementNS(SVG, "svg");
  svg.setAttribute("class", "icon");
  svg.setAttribute("focusable", "false");
  if (label) {
    svg.setAttribute("role", "img");
    svg.setAttribute("aria-label", label);
  } else {
    svg.setAttribute("aria-hidden", "true");
  }
  const use = document.createElementNS(SVG, "use");
  use.setAttribute("href", `#i-${name}`);
  svg.append(use);
  return svg;
}

export function svg(tag, attrs = {}) {
  const node = document.createElementNS(SVG, tag);
  for (const [key, value] of Object.entries(attrs)) node.setAttribute(key, String(value));
  return node;
}

// Must match podium.web.shell.avatar: the sum of the key's UTF-8 bytes modulo HUES.
const HUES = 10;

export function hueOf(key) {
  let sum = 0;
  for (const byte of new TextEncoder().encode(key)) sum += byte;
  return sum % HUES;
}

export function initials(name) {
  const words = String(name || "").replace(/_/g, " ").split(/\s+/).filter(Boolean);
  return (words.slice(0, 2).map((w) => [...w][0]).join("") || "?").toUpperCase();
}

export function avatar(name, key, size = "sm") {
  return el("span", {class: `avatar avatar-${size} hue-${hueOf(key)}`, "aria-hidden": "true",
    text: initials(name)});
}

/** m:ss or h:mm:ss. */
export function clockText(seconds) {
  if (!Number.isFinite(seconds) || seconds < 0) return "–:––";
  const s = Math.floor(seconds);
  const h = Math.floor(s / 3600);
  const m = Math.floor((s % 3600) / 60);
  const pad = (n) => String(n).padStart(2, "0");
  return h ? `${h}:${pad(m)}:${pad(s % 60)}` : `${m}:${pad(s % 60)}`;
}

/** "in 5 min", "in 2 h 10 min", "any moment now". */
export function untilText(seconds) {
  if (seconds <= 30) return "any moment now";
  const minutes = Math.round(seconds / 60);
  if (minutes < 60) return `in ${minutes} min`;
  const hours = Math.floor(minutes / 60);
  if (hours < 48) return `in ${hours} h${minutes % 60 ? ` ${minutes % 60} min` : ""}`;
  return `in ${Math.round(hours / 24)} days`;
}

/** "about 40 s", "about 3 min". */
export function aboutText(seconds) {
  if (seconds < 60) return `about ${Math.max(1, Math.round(seconds))} s`;
  return `about ${Math.round(seconds / 60)} min`;
}

export function localTime(date) {
  return date.toLocaleString(undefined,
    {weekday: "short", day: "numeric", month: "short", hour: "2-digit", minute: "2-digit"});
}

/** When a space was or will be live, from its room state, in the reader's time zone. */
export function whenText(doc) {
  const at = (value) => localTime(new Date(value));
  if (doc.status === "live" && doc.started_at) return `Live since ${at(doc.started_at)}`;
  if (doc.status === "ended" && doc.ended_at) {
    const minutes = doc.started_at
      ? Math.max(1, Math.round((Date.parse(doc.ended_at) - Date.parse(doc.started_at)) / 60000))
      : null;
    return `Ended ${at(doc.ended_at)}${minutes ? ` · ${minutes} min` : ""}`;
  }
  if (doc.status === "cancelled") return "Cancelled";
  return doc.scheduled_start ? `Starts ${at(doc.scheduled_start)}` : "Not scheduled yet";
}

/** Rewrite every <time datetime> below `root` in the reader's time zone. */
export function localTimes(root = document) {
  for (const node of $$("time[datetime]", root)) {
    const date = new Date(node.getAttribute("datetime"));
    if (!Number.isNaN(date.getTime())) node.textContent = localTime(date);
  }
}

export function toast(message, kind = "info", seconds = 4) {
  const box = $("#toasts");
  if (!box) return;
  const item = el("div", {class: `toast ${kind}`, text: message});
  box.append(item);
  setTimeout(() => item.classList.add("leaving"), seconds * 1000);
  setTimeout(() => item.remove(), seconds * 1000 + 400);
}

/** Show the one element of `root` whose data-<attr> is `name`; hide its siblings. */
export function showView(root, name, attr = "view") {
  for (const node of $$(`[data-${attr}]`, root)) node.hidden = node.dataset[attr] !== name;
}

export function pageData() {
  const node = $("#page-data");
  return node ? JSON.parse(node.textContent) : {};
}

export function setBusy(button, busy) {
  button.disabled = busy;
  button.setAttribute("aria-busy", busy ? "true" : "false");
}

export async function copyText(text) {
  try {
    await navigator.clipboard.writeText(text);
    return true;
  } catch {
    return false;
  }
}
