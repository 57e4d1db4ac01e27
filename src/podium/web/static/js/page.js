// What every page does: local times, and the account corner of the header. Page
// scripts import this module; it runs once however many import it.

import {ApiError, api, csrfToken, forgetSession} from "./api.js";
import {$, avatar, el, icon, localTimes, toast} from "./ui.js";

let current = null;

/** The signed-in session ({user, csrf_token}) or null, asked once per page. */
export function session() {
  if (current) return current;
  current = (async () => {
    if (!csrfToken()) return null; // no session cookie pair: skip a request that would 401
    try {
      return await api("/api/v1/session");
    } catch (error) {
      if (error instanceof ApiError && error.status === 401) forgetSession();
      return null;
    }
  })();
  return current;
}

/** Send the visitor to sign in, and back here afterwards. */
export function signInFirst() {
  const next = location.pathname + location.search;
  location.assign(`/signin?next=${encodeURIComponent(next)}`);
}

async function signOut() {
  try {
    await api("/api/v1/session", {method: "DELETE"});
  } catch (error) {
    toast(`Could not sign out: ${error.message}`, "error");
    return;
  }
  forgetSession();
  location.assign("/");
}

async function accountCorner() {
  const corner = $("#account");
  if (!corner) return;
  const signedIn = await session();
  if (!signedIn) return;
  const {user} = signedIn;
  const name = user.display_name || user.handle;
  corner.replaceChildren(
    el("a", {class: "me", href: "/host", title: `Signed in as @${user.handle}`},
      avatar(name, `u:${user.id}`, "xs"), el("span", {class: "me-name", text: name})),
    el("button", {class: "btn btn-small btn-ghost", type: "button", onclick: signOut,
      "aria-label": "Sign out"}, icon("leave"), el("span", {class: "hide-sm", text: "Sign out"})),
  );
}

localTimes();
accountCorner();
