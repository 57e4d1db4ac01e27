// "Host a space": create one now or schedule it, and the spaces you host.

import {ApiError, api} from "./api.js";
import {session, signInFirst} from "./page.js";
import {$, $$, el, localTime, setBusy} from "./ui.js";

const LABEL = {live: "Live", scheduled: "Upcoming", ended: "Replay", cancelled: "Cancelled"};

function when(space) {
  if (space.status === "live") return `Live since ${localTime(new Date(space.started_at))}`;
  if (space.status === "scheduled") {
    return space.scheduled_start ? `Starts ${localTime(new Date(space.scheduled_start))}`
      : "Not scheduled yet";
  }
  return space.ended_at ? `Ended ${localTime(new Date(space.ended_at))}` : "";
}

async function mySpaces(user) {
  const list = $("#my-spaces");
  try {
    const {spaces} = await api("/api/v1/spaces?limit=200");
    const mine = spaces.filter((space) => space.host.id === user.id);
    const order = {live: 0, scheduled: 1, ended: 2, cancelled: 3};
    mine.sort((a, b) => order[a.status] - order[b.status]);
    list.replaceChildren(...mine.map((space) => el("li", {class: `space-card ${space.status}`},
      el("a", {href: space.status === "ended" || space.status === "cancelled"
        ? `/s/${space.id}` : `/s/${space.id}/host`},
      el("span", {class: "card-top"},
        el("span", {class: `badge ${space.status}`, text: LABEL[space.status]})),
      el("strong", {class: "card-title", text: space.title}),
      el("span", {class: "meta", text: when(space)})))));
    if (!mine.length) {
      list.replaceChildren(el("li", {class: "empty",
        text: "You have not hosted a space yet. Create your first one here."}));
    }
  } catch (error) {
    list.replaceChildren(el("li", {class: "empty", text: `Could not load: ${error.message}`}));
  }
}

function problemText(error) {
  if (!(error instanceof ApiError)) return "The server cannot be reached.";
  const errors = error.problem.errors;
  if (Array.isArray(errors) && errors.length) return errors.map((e) => e.message || e.msg).join(" ");
  return error.message;
}

async function create(event) {
  event.preventDefault();
  const form = event.currentTarget;
  const error = $("#form-error");
  const button = $("button[type=submit]", form);
  const values = Object.fromEntries(new FormData(form));
  const body = {
    title: values.title.trim(),
    description: values.description.trim(),
    in_feed: values.in_feed === "on",
  };
  let message = "";
  if (!body.title) message = "Give your space a title.";
  if (values.when === "later") {
    const start = new Date(values.starts);
    if (Number.isNaN(start.getTime())) message = "Choose when the space starts.";
    else if (start < new Date()) message = "Choose a start time in the future.";
    else body.scheduled_start = start.toISOString();
  }
  error.textContent = message;
  error.hidden = !message;
  if (message) return;
  setBusy(button, true);
  try {
    const space = await api("/api/v1/spaces", {method: "POST", body});
    location.assign(`/s/${space.id}/host`);
  } catch (failure) {
    error.textContent = problemText(failure);
    error.hidden = false;
    setBusy(button, false);
  }
}

async function start() {
  const signedIn = await session();
  if (!signedIn) return signInFirst();
  $("#create-form").addEventListener("submit", create);
  for (const radio of $$("input[name=when]")) {
    radio.addEventListener("change", () => {
      const later = $("input[name=when]:checked").value === "later";
      $("#schedule").hidden = !later;
      if (later && !$("#starts").value) {
        const soon = new Date(Date.now() + 3600_000);
        soon.setMinutes(0, 0, 0);
        const local = new Date(soon.getTime() - soon.getTimezoneOffset() * 60_000);
        $("#starts").value = local.toISOString().slice(0, 16);
      }
    });
  }
  mySpaces(signedIn.user);
}

start();
