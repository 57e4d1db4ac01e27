// Drawing the room: the stage (avatars, who is talking, who is muted) and reactions
// floating up as they arrive.

import {$, avatar, el, icon} from "./ui.js";

export const ROLE_LABEL = {host: "Host", cohost: "Co-host", speaker: "Speaker"};
const MAX_FLOATS = 24;

/** The same markup as podium.web.spacepage.seat_item, kept up to date in place. */
function seatNode(seat) {
  const face = el("span", {class: "seat-face"}, avatar(seat.name || "?", seat.person, "lg"));
  return el("li", {class: "seat", "data-person": seat.person},
    face,
    el("span", {class: "seat-name", text: seat.name || "Guest"}),
    el("span", {class: "seat-role", text: ROLE_LABEL[seat.role] || seat.role}));
}

function updateSeat(node, seat, me) {
  node.classList.toggle("talking", Boolean(seat.talking));
  node.classList.toggle("muted", Boolean(seat.muted));
  node.classList.toggle("me", seat.person === me);
  const face = $(".seat-face", node);
  let mark = $(".seat-muted", face);
  if (seat.muted && !mark) {
    mark = el("span", {class: "seat-muted"}, icon("mic-off", "muted"));
    face.append(mark);
  } else if (!seat.muted && mark) {
    mark.remove();
  }
  $(".seat-name", node).textContent = seat.name || "Guest";
  const role = ROLE_LABEL[seat.role] || seat.role;
  $(".seat-role", node).textContent = seat.person === me ? `${role} · you` : role;
  const state = [ROLE_LABEL[seat.role], seat.muted ? "muted" : "",
    seat.talking ? "talking" : ""].filter(Boolean).join(", ");
  node.setAttribute("aria-label", `${seat.name || "Guest"}: ${state}`);
}

/** Make list `root` show `seats`, reusing the nodes of people still there. */
export function renderStage(root, seats, me = null) {
  const existing = new Map([...root.children].map((node) => [node.dataset.person, node]));
  const wanted = seats.map((seat) => {
    const node = existing.get(seat.person) || seatNode(seat);
    updateSeat(node, seat, me);
    return node;
  });
  for (const [person, node] of existing) {
    if (!seats.some((s) => s.person === person)) node.remove();
  }
  wanted.forEach((node, index) => {
    if (root.children[index] !== node) root.insertBefore(node, root.children[index] || null);
  });
}

/** Reactions float up from the dock; at most MAX_FLOATS at once. */
export class Floats {
  constructor(root) {
    this.root = root;
    this.totals = null;
    this.own = new Map();
  }

  /** One of the visitor's own reactions: shown at once, not again when counted. */
  mine(emoji) {
    this.own.set(emoji, (this.own.get(emoji) || 0) + 1);
    this.float(emoji);
  }

  /** New totals from the room state: float the difference (others' reactions). */
  update(totals) {
    if (this.totals) {
      for (const [emoji, count] of Object.entries(totals)) {
        let fresh = count - (this.totals[emoji] || 0);
        const own = Math.min(this.own.get(emoji) || 0, Math.max(0, fresh));
        this.own.set(emoji, (this.own.get(emoji) || 0) - own);
        fresh -= own;
        for (let i = 0; i < Math.min(fresh, 6); i++) setTimeout(() => this.float(emoji), i * 160);
      }
    }
    this.totals = {...totals};
  }

  float(emoji) {
    if (this.root.childElementCount >= MAX_FLOATS) return;
    const bubble = el("span", {class: "float", text: emoji});
    bubble.style.left = `${8 + Math.random() * 84}%`;
    bubble.style.animationDuration = `${2.4 + Math.random() * 1.2}s`;
    bubble.addEventListener("animationend", () => bubble.remove());
    this.root.append(bubble);
  }
}
