// The host console: go live and speak, run the stage (requests, invites, mute, move to
// the audience, remove, co-hosts), watch the audience and the recording, end the space.

import {ApiError, api} from "./api.js";
import {drawChart} from "./chart.js";
import {session, signInFirst} from "./page.js";
import {RoomState} from "./roomstate.js";
import {Speaker, explainMicError, showMuted} from "./speaker.js";
import {ROLE_LABEL} from "./stage.js";
import {
  $, avatar, copyText, el, icon, pageData, setBusy, showView, toast, whenText,
} from "./ui.js";

const data = pageData();
const spaceId = data.space_id;
const base = `/api/v1/spaces/${spaceId}`;
const STATUS_BADGE = {live: ["live", "Live"], scheduled: ["scheduled", "Upcoming"],
  starting: ["scheduled", "Starting soon"], ended: ["ended", "Ended"],
  cancelled: ["cancelled", "Cancelled"]};
const ANALYTICS_EVERY_S = 5;

const page = {
  me: null,
  role: null,
  doc: null,
  speaker: null,
  handsSeen: -1,
  samples: [],
  analytics: null,
  analyticsAt: 0,
};
const room = new RoomState(spaceId, onState, (error) => {
  if (error) toast("Lost contact with the server; reconnecting…", "warn", 3);
});

function fail(error) {
  const box = $("#console-error");
  box.textContent = error instanceof ApiError ? error.message : String(error.message || error);
  box.hidden = false;
  setTimeout(() => { box.hidden = true; }, 8000);
}

async function act(path, button, body = undefined) {
  if (button) setBusy(button, true);
  try {
    return await api(path, {method: "POST", body});
  } catch (error) {
    fail(error);
    return null;
  } finally {
    if (button) setBusy(button, false);
  }
}

// -- status and lifecycle --------------------------------------------------------------

function onState(doc) {
  page.doc = doc;
  const seat = doc.stage.find((s) => s.person === page.me);
  page.role = seat ? seat.role : null;
  if (!["host", "cohost"].includes(page.role) && doc.status !== "ended") {
    fail(new Error("Only the host and co-hosts can use this console."));
  }
  const [css, label] = STATUS_BADGE[doc.status] || ["ended", doc.status];
  const badge = $("#status-badge");
  badge.className = `badge ${css}`;
  badge.textContent = label;
  $("#when").textContent = whenText(doc);
  const live = doc.status === "live";
  const host = page.role === "host";
  $("#golive-btn").hidden = !(host && ["scheduled", "starting"].includes(doc.status));
  $("#end-btn").hidden = !(host && live);
  $("#rec-chip").hidden = !(live && doc.recording === "ok");
  const upcoming = ["scheduled", "starting"].includes(doc.status);
  $("#speaker").hidden = !(live || upcoming) || !seat;
  $("#join-stage").disabled = !live;
  $("#invite-card").hidden = !live && !upcoming;
  if (!live && page.speaker) stopMic();
  if (page.speaker && seat && seat.muted !== page.speaker.muted) {
    showMuted(page.speaker, seat.muted);
  }
  renderStageList(doc);
  recording(doc);
  page.samples.push({t: Date.now(), v: doc.audience.concurrent});
  page.samples = page.samples.slice(-600);
  $("#stat-concurrent").textContent = String(doc.audience.concurrent);
  $("#stat-reactions").textContent = String(doc.reactions.total);
  if (doc.hands.count !== page.handsSeen) refreshHands(doc.hands.count);
  refreshAnalytics();
}

async function goLive(event) {
  const button = event.currentTarget;
  const started = await act(`${base}/start`, button);
  if (!started) return;
  toast("You are live.", "ok");
  startMic(); // the click that went live also lets the page ask for the microphone
}

function confirmDialog(title, text, yes) {
  return new Promise((resolve) => {
    const dialog = el("dialog", {class: "dialog", "aria-labelledby": "confirm-title"},
      el("h2", {id: "confirm-title", text: title}), el("p", {class: "meta", text}),
      el("div", {class: "row end"},
        el("button", {class: "btn btn-ghost", type: "button", text: "Cancel",
          onclick: () => dialog.close("no")}),
        el("button", {class: "btn btn-danger", type: "button", text: yes, id: "confirm-yes",
          onclick: () => dialog.close("yes")})));
    dialog.addEventListener("close", () => {
      resolve(dialog.returnValue === "yes");
      dialog.remove();
    });
    document.body.append(dialog);
    dialog.showModal();
  });
}

async function endSpace(event) {
  const button = event.currentTarget;
  const sure = await confirmDialog("End the space?",
    "Everyone stops hearing it and the recording becomes the replay.", "End space");
  if (!sure) return;
  await stopMic();
  if (await act(`${base}/end`, button)) toast("The space has ended. The replay is ready.", "ok");
}

function recording(doc) {
  const state = $("#rec-state");
  const detail = $("#rec-detail");
  const words = {
    ok: ["Recording", "Every part is saved as it is made."],
    degraded: ["Degraded", "Some audio may be missing from the recording; the broadcast continues."],
    off: ["Off", "Starts when you go live."],
  };
  let [label, text] = words[doc.recording] || [doc.recording, ""];
  if (doc.status === "ended") {
    [label, text] = doc.recording === "off" ? ["Off", "Nothing was recorded."]
      : ["Saved", "The replay is on the space's page."];
  }
  state.className = `rec-state ${doc.status === "ended" ? "saved" : doc.recording}`;
  state.textContent = label;
  detail.replaceChildren(text);
  if (doc.status === "ended") {
    detail.append(" ", el("a", {href: `/s/${spaceId}`, text: "Play the replay"}));
  }
  const gap = doc.interruption;
  const notice = $("#rec-interruption");
  notice.hidden = !gap;
  if (gap) {
    const what = gap.moved ? "Media moved to another server" : "Media restarted";
    const at = new Date(gap.resumed_at).toLocaleTimeString();
    notice.textContent = `${what}, ${gap.lost_s.toFixed(1)} s lost (${at}); marked in the replay.`;
  }
}

// -- the microphone --------------------------------------------------------------------

async function startMic() {
  if (page.speaker) return;
  const panel = $("#speaker");
  $("#speaker-error").hidden = true;
  const button = $("#join-stage");
  setBusy(button, true);
  const speaker = new Speaker(spaceId, null, $("#monitor"), {
    onConnection: (state) => {
      $("#speaker-conn").textContent = {connected: "Connected", connecting: "Connecting…",
        failed: "Connection failed", disconnected: "Reconnecting…",
        reconnecting: "Reconnecting…"}[state] || state;
    },
    onLevel: (level) => {
      $("#meter-fill").style.width = `${Math.round(level * 100)}%`;
      $(".meter").setAttribute("aria-valuenow", String(Math.round(level * 100)));
    },
  });
  page.speaker = speaker;
  try {
    await speaker.start($("#music-mode").checked);
    showView(panel, "live", "sview");
    const seat = page.doc?.stage.find((s) => s.person === page.me);
    showMuted(page.speaker, Boolean(seat?.muted));
  } catch (error) {
    page.speaker = null;
    await speaker.stop();
    const box = $("#speaker-error");
    box.textContent = explainMicError(error);
    box.hidden = false;
  } finally {
    setBusy(button, false);
  }
}

async function stopMic() {
  const speaker = page.speaker;
  page.speaker = null;
  if (speaker) await speaker.stop();
  showView($("#speaker"), "offer", "sview");
}

async function toggleMute() {
  if (!page.speaker) return;
  const muted = !page.speaker.muted;
  showMuted(page.speaker, muted);
  const done = await act(`${base}/stage/me/${muted ? "mute" : "unmute"}`, null, {});
  if (!done) showMuted(page.speaker, !muted);
}

// -- the stage and the requests --------------------------------------------------------

/** A moderation button; `text` shows a word beside the icon, else the icon alone. */
function actionButton(name, label, person, iconName, style = "btn-ghost", text = "") {
  return el("button", {class: `btn btn-small ${style}${text ? "" : " btn-icon"}`, type: "button",
    title: label, "aria-label": label, "data-action": name,
    onclick: async (event) => {
      const path = `${base}/stage/${encodeURIComponent(person)}/${name}`;
      if (await act(path, event.currentTarget)) toast(`${label}: done.`, "ok", 2);
    }}, icon(iconName), text ? el("span", {text}) : null);
}

function seatActions(seat) {
  if (seat.person === page.me || seat.role === "host") return [];
  const host = page.role === "host";
  if (!host && seat.role === "cohost") return [];
  const name = seat.name || "Guest";
  const actions = [];
  if (!seat.muted) actions.push(actionButton("mute", `Mute ${name}`, seat.person, "mic-off"));
  if (host && seat.role === "speaker") {
    actions.push(actionButton("make-cohost", `Make ${name} co-host`, seat.person, "shield"));
  }
  if (host && seat.role === "cohost") {
    actions.push(actionButton("demote", `Make ${name} a speaker`, seat.person, "down"));
  }
  actions.push(actionButton("move-to-audience", `Move ${name} to the audience`, seat.person,
    "down"));
  actions.push(actionButton("remove", `Remove ${name}`, seat.person, "user-x", "btn-danger"));
  return actions;
}

function renderStageList(doc) {
  const list = $("#stage-list");
  $("#stage-count").textContent = `${doc.stage.length} of 13`;
  list.replaceChildren(...doc.stage.map((seat) => el("li",
    {class: `person${seat.talking ? " talking" : ""}${seat.muted ? " muted" : ""}`,
      "data-person": seat.person},
    el("span", {class: "seat-face"}, avatar(seat.name || "?", seat.person, "md")),
    el("span", {class: "person-text"},
      el("strong", {text: `${seat.name || "Guest"}${seat.person === page.me ? " (you)" : ""}`}),
      el("span", {class: "meta"}, ROLE_LABEL[seat.role] || seat.role,
        seat.muted ? " · muted" : "", seat.talking ? " · talking" : "")),
    el("span", {class: "person-actions"}, ...seatActions(seat)))));
}

async function refreshHands(count) {
  page.handsSeen = count;
  $("#hands-count").textContent = String(count);
  const list = $("#hands-list");
  if (!count) {
    list.replaceChildren(el("li", {class: "empty", text: "No raised hands."}));
    return;
  }
  let hands;
  try {
    ({hands} = await api(`${base}/hands`));
  } catch (error) {
    page.handsSeen = -1;
    return fail(error);
  }
  list.replaceChildren(...hands.map((hand) => el("li", {class: "person", "data-person": hand.person},
    el("span", {class: "seat-face"}, avatar(hand.name, hand.person, "md")),
    el("span", {class: "person-text"}, el("strong", {text: hand.name}),
      el("span", {class: "meta", text: `#${hand.position} in the queue`})),
    el("span", {class: "person-actions"},
      actionButton("approve", `Approve ${hand.name}`, hand.person, "check", "btn-primary",
        "Approve"),
      actionButton("decline", `Decline ${hand.name}`, hand.person, "x", "btn-ghost",
        "Decline")))));
}

async function createInvite(event) {
  const invite = await act(`${base}/invites`, event.currentTarget);
  if (!invite) return;
  $("#invite-row").hidden = false;
  $("#invite-url").value = invite.url;
  $("#invite-url").select();
}

// -- the audience ----------------------------------------------------------------------

async function refreshAnalytics() {
  if (Date.now() - page.analyticsAt < ANALYTICS_EVERY_S * 1000 && page.analytics) return draw();
  page.analyticsAt = Date.now();
  try {
    page.analytics = await api(`${base}/analytics`);
  } catch {
    return draw(); // not a moderator (yet) or a hiccup: the live samples still draw
  }
  const a = page.analytics;
  for (const key of ["peak", "unique", "joins"]) $(`#stat-${key}`).textContent = String(a[key]);
  draw();
}

function draw() {
  const minutes = (page.analytics?.minutes || []).map((m) => ({
    t: Date.parse(m.start), v: m.concurrent_max}));
  const first = page.samples[0]?.t ?? Infinity;
  drawChart($("#chart"), [...minutes.filter((p) => p.t < first), ...page.samples]);
}

// -- wiring ----------------------------------------------------------------------------

async function start() {
  const signedIn = await session();
  if (!signedIn) return signInFirst();
  page.me = `u:${signedIn.user.id}`;
  $("#golive-btn").addEventListener("click", goLive);
  $("#end-btn").addEventListener("click", endSpace);
  $("#join-stage").addEventListener("click", startMic);
  $("#leave-stage").addEventListener("click", stopMic);
  $("#leave-stage").lastChild.textContent = "Turn off mic";
  $("#join-stage").lastChild.textContent = "Turn on mic";
  $("#mute-btn").addEventListener("click", toggleMute);
  $("#music-mode").addEventListener("change", (event) => {
    page.speaker?.setMusicMode(event.currentTarget.checked)
      .catch((error) => toast(explainMicError(error), "error"));
  });
  $("#invite-btn").addEventListener("click", createInvite);
  $("#invite-copy").addEventListener("click", async () => {
    toast(await copyText($("#invite-url").value) ? "Invite link copied." : "Copy the link above.",
      "ok", 2);
  });
  room.start();
  setInterval(() => page.doc && refreshAnalytics(), ANALYTICS_EVERY_S * 1000);
  window.addEventListener("pagehide", () => page.speaker?.stop());
}

start();
