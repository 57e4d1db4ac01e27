// A space's page: listen live, wait honestly (queue, starting soon), react, raise a
// hand, speak when brought on stage, and play the replay once the space ends, all
// driven by the room state without reloading.

import {ApiError, request} from "./api.js";
import {join} from "./admission.js";
import {session} from "./page.js";
import {LivePlayer, ReplayPlayer, loadHls} from "./player.js";
import {RoomState} from "./roomstate.js";
import {Speaker, explainMicError, showMuted} from "./speaker.js";
import {Floats, renderStage} from "./stage.js";
import {
  $, $$, aboutText, localTime, pageData, setBusy, showView, toast, untilText, whenText,
} from "./ui.js";

const data = pageData();
const spaceId = data.space_id;
const base = `/api/v1/spaces/${spaceId}`;
const player = $("#player");
const STATUS_BADGE = {live: ["live", "Live"], scheduled: ["scheduled", "Upcoming"],
  starting: ["scheduled", "Starting soon"], ended: ["ended", "Replay"],
  cancelled: ["cancelled", "Cancelled"]};

const page = {
  doc: null,
  status: data.status,
  ticket: null, // {ticket, listener_id, beacon_every_s, expires_at}
  me: null, // person id on the stage: the ticket's listener, or the account's
  account: null,
  live: null, // LivePlayer
  replay: null,
  speaker: null,
  wantsAudio: false, // the visitor asked to listen (or to listen when it starts)
  joining: null,
  beacon: 0,
  hand: false,
  hands: 0, // raised hands in the last room state
  offer: null, // "invite" | "approved" | null
  invite: new URLSearchParams(location.search).get("invite"),
  endingTimer: 0,
};
const floats = new Floats($("#floats"));
const room = new RoomState(spaceId, onState, onTrouble);

function view(name) {
  showView(player, name);
}

// -- tickets and joining ---------------------------------------------------------------

const TICKET_KEY = `podium:ticket:${spaceId}`;

function rememberTicket(answer) {
  page.ticket = answer;
  page.me = answer.listener_id;
  sessionStorage.setItem(TICKET_KEY, JSON.stringify(answer));
}

function storedTicket() {
  try {
    const answer = JSON.parse(sessionStorage.getItem(TICKET_KEY) || "null");
    if (answer && Date.parse(answer.expires_at) > Date.now() + 60_000) return answer;
  } catch {
    // A damaged entry is the same as none.
  }
  return null;
}

/** A ticket, joining (with its queue) if there is none yet. */
async function ensureTicket() {
  if (page.ticket) return page.ticket;
  if (!page.joining) {
    page.joining = join(spaceId, {
      queued: showQueued,
      working: () => { view("joining"); $("#joining-text").textContent = "Checking your browser…"; },
      retrying: (error, wait) => {
        view("joining");
        $("#joining-text").textContent = `The space is busy (${error.message}). ` +
          `Trying again in ${Math.ceil(wait)} s…`;
      },
    }).then((answer) => {
      rememberTicket(answer);
      startBeacons();
      return answer;
    }).finally(() => { page.joining = null; });
  }
  return page.joining;
}

function showQueued(answer) {
  if (answer.reason === "pre_start") {
    view("waiting");
    const at = answer.starts_at ? new Date(answer.starts_at) : null;
    $("#waiting-text").textContent = at
      ? `Scheduled for ${localTime(at)} (${untilText((at - Date.now()) / 1000)}).`
      : "The host has not started yet.";
    return;
  }
  view("queued");
  const parts = [];
  if (answer.position) parts.push(`Position ${answer.position} of ${answer.queue_length}`);
  else parts.push(`${answer.queue_length} waiting`);
  parts.push(queueWait(answer));
  $("#queue-text").textContent = `${parts.join(" · ")}.`;
  const ahead = answer.position && answer.queue_length
    ? 1 - (answer.position - 1) / answer.queue_length : 0.05;
  $("#queue-bar").style.width = `${Math.round(Math.max(0.05, ahead) * 100)}%`;
}

// What the wait depends on, as the server said (its reason), in words.
function queueWait(answer) {
  if (answer.estimated_wait_s !== null && answer.estimated_wait_s !== undefined) {
    return `${aboutText(answer.estimated_wait_s)} to go`;
  }
  if (answer.reason === "overload") {
    return "the server is busy; your place is kept until it catches up";
  }
  return "waiting for a seat to free up";
}

function startBeacons() {
  clearInterval(page.beacon);
  const every = (page.ticket?.beacon_every_s || 15) * 1000;
  page.beacon = setInterval(() => {
    if (!page.live && !page.speaker) return; // counted only while listening or speaking
    request(`${base}/beacon`, {method: "POST", body: {ticket: page.ticket.ticket}}).catch(() => {});
  }, every);
}

// -- listening -------------------------------------------------------------------------

async function listen() {
  page.wantsAudio = true;
  unlockAudio($("#audio"));
  let answer;
  try {
    view("joining");
    $("#joining-text").textContent = "Joining…";
    answer = await ensureTicket();
  } catch (error) {
    return problem(error);
  }
  if (answer.status === "replay" || page.status === "ended") return showReplay();
  if (page.status !== "live") return showWaiting();
  startPlayer();
}

// Safari lets sound start only inside the click; a play() there unlocks the element
// (paused at once: the stream is attached later, after joining).
function unlockAudio(audio) {
  if (audio.src || audio.srcObject) return;
  audio.play().catch(() => {});
  audio.pause();
}

function startPlayer() {
  if (page.live || page.speaker) return;
  view("playing");
  $("#stop-btn").hidden = false;
  $("#playing-title").textContent = "Listening live";
  $("#latency").textContent = "Buffering…";
  page.live = new LivePlayer($("#audio"), `/hls/${spaceId}/index.m3u8`, data.hls, {
    onStatus: (status, detail) => {
      if (status === "blocked") {
        stopPlayer();
        view("listen");
        $("#listen-btn").lastChild.textContent = "Tap to listen";
      } else if (status === "error") {
        problem(new Error(detail || "Playback failed."));
      } else if (status === "buffering") {
        $("#latency").textContent = "Buffering…";
      }
    },
    onEnded: () => { if (page.status === "ended") showReplay(); },
  });
  page.live.clockOffset = () => room.clockOffset;
  page.live.start();
}

function stopPlayer() {
  page.live?.destroy();
  page.live = null;
}

function showWaiting() {
  view("waiting");
  const start = data.scheduled_start ? new Date(data.scheduled_start) : null;
  $("#waiting-text").textContent = start
    ? `Scheduled for ${localTime(start)} (${untilText((start - Date.now()) / 1000)}).`
    : "The host has not started yet.";
}

function problem(error) {
  if (error.name === "AbortError") return;
  view("problem");
  const busy = error instanceof ApiError && [429, 503].includes(error.status);
  $("#problem-title").textContent = busy ? "The space is very busy" : "We could not connect";
  $("#problem-text").textContent = error instanceof ApiError
    ? error.message : "The server cannot be reached. Check your connection.";
}

function updateLatency() {
  if (!page.live) return;
  const seconds = page.live.latency();
  if (seconds === null || page.live.audio.paused) return;
  $("#latency").textContent = seconds < 10
    ? `~${Math.max(0, seconds).toFixed(1)} s behind live` : `~${Math.round(seconds)} s behind live`;
}

function updateCountdown() {
  const node = $("#countdown");
  if (!node || node.closest("[hidden]")) return;
  const start = Number(node.dataset.at) * 1000;
  node.lastChild.textContent = start > Date.now()
    ? `Starts ${untilText((start - Date.now()) / 1000)}` : "Starting any moment now";
}

// -- the end, and the replay -----------------------------------------------------------

function showReplay() {
  clearTimeout(page.endingTimer);
  stopPlayer();
  clearInterval(page.beacon);
  view("ended");
  if (!page.replay) page.replay = new ReplayPlayer($("#player"), spaceId, data.hls);
  page.replay.prepare();
}

function ended() {
  stopSpeaking(false);
  $("#speaker").hidden = true;
  if (page.live && !page.live.audio.paused) {
    // Let the last seconds play out (the listener is behind live), then the replay.
    $("#playing-title").textContent = "The space has ended";
    const behind = (page.live.latency() || 2) + 4;
    page.endingTimer = setTimeout(showReplay, behind * 1000);
  } else {
    showReplay();
  }
}

// -- the room state --------------------------------------------------------------------

function onState(doc) {
  const before = page.status;
  page.doc = doc;
  page.status = doc.status === "starting" ? "scheduled" : doc.status;
  const [css, label] = STATUS_BADGE[doc.status] || ["ended", doc.status];
  const badge = $("#status-badge");
  badge.className = `badge ${css}`;
  badge.textContent = label;
  $("#room").className = `room ${css}`;
  $("#when").textContent = whenText(doc);
  const live = page.status === "live";
  $("#audience-chip").hidden = !(live || page.status === "ended");
  $("#audience").textContent = live ? `${doc.audience.concurrent} listening`
    : `${doc.audience.peak} at peak`;
  $("#rec-chip").hidden = !(live && doc.recording === "ok");
  // Reactions and hands belong to a live room; sharing works before and after too.
  $("#dock").hidden = !live && page.status !== "scheduled";
  $(".reactions").hidden = !live;
  $("#hand-btn").hidden = !live || Boolean(mySeat(doc));
  renderStageLater(doc);
  floats.update(doc.reactions.totals);
  for (const button of $$(".reaction")) {
    const recent = doc.reactions.recent[button.dataset.emoji] || 0;
    $(".reaction-count", button).textContent = recent ? String(recent) : "";
  }
  followStage(doc);
  if (before === page.status) return;
  if (page.status === "ended") ended();
  else if (page.status === "cancelled") { stopPlayer(); view("cancelled"); }
  else if (live && page.wantsAudio && !page.speaker) startPlayer();
  else if (live && ["scheduled", "waiting"].includes(currentView())) view("listen");
}

function currentView() {
  return $$("[data-view]", player).find((node) => !node.hidden)?.dataset.view;
}

// Listeners hear the program a second or two late: show who talks when they hear it.
function renderStageLater(doc) {
  const over = ["ended", "cancelled"].includes(doc.status);
  // Once it is over nobody talks or is muted: the stage is the list of who spoke.
  const seats = over ? doc.stage.map((s) => ({...s, talking: false, muted: false})) : doc.stage;
  const delay = page.live && !page.speaker ? (page.live.latency() || 0) : 0;
  setTimeout(() => {
    renderStage($("#stage"), seats, page.me);
    $("#stage-title").textContent = over ? "Speakers" : "On stage";
    $("#stage-count").textContent = over ? "" : `${doc.stage.length} of 13`;
  }, Math.min(delay, 5) * 1000);
}

function onTrouble(error) {
  $("#room").classList.toggle("offline", Boolean(error));
  if (error) toast("Lost contact with the room; reconnecting…", "warn", 3);
}

// -- on the stage ----------------------------------------------------------------------

function mySeat(doc) {
  return page.me ? doc.stage.find((seat) => seat.person === page.me) : null;
}

function followStage(doc) {
  const seat = mySeat(doc);
  $("#console-link").hidden = !(seat && ["host", "cohost"].includes(seat.role));
  if (seat && seat.role === "host") return; // the host speaks from the console
  if (seat) {
    if (page.hand) setHand(false);
    if (!page.speaker && !page.offer && page.status === "live") offer("approved");
    if (page.speaker && seat.muted !== page.speaker.muted) showMuted(page.speaker, seat.muted);
  } else if (page.speaker) {
    stopSpeaking(false);
    $("#speaker").hidden = true;
    toast("You are back in the audience.");
    startPlayer();
  } else if (page.offer === "approved") {
    page.offer = null;
    $("#speaker").hidden = true;
  } else if (page.hand && doc.hands.count < page.hands) {
    checkHand(); // a hand went down, and not onto the stage: perhaps this one
  }
  page.hands = doc.hands.count;
  $("#hand-btn").hidden = Boolean(seat) || page.status !== "live";
}

function offer(kind) {
  page.offer = kind;
  const panel = $("#speaker");
  panel.hidden = false;
  showView(panel, "offer", "sview");
  $("#speaker-title").lastChild.textContent = kind === "invite"
    ? "You are invited to speak" : "The host brought you on stage";
  panel.scrollIntoView({behavior: "smooth", block: "nearest"});
  if (kind === "approved") toast("Your hand was approved: join the stage when ready.", "ok");
}

async function joinStage() {
  const button = $("#join-stage");
  setBusy(button, true);
  $("#speaker-error").hidden = true;
  try {
    const ticket = await ensureTicket();
    if (page.offer === "invite") {
      const name = await askName("Join the stage", "Join");
      await request(`${base}/invites/accept`, {method: "POST",
        body: {invite: page.invite, ticket: ticket.ticket, name}});
    }
    stopPlayer();
    page.speaker = new Speaker(spaceId, ticket.ticket, $("#monitor"), {
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
    await page.speaker.start($("#music-mode").checked);
    showView($("#speaker"), "live", "sview");
    view("playing");
    $("#stop-btn").hidden = true;
    $("#playing-title").textContent = "You are on stage";
    $("#latency").textContent = "Hearing the room directly";
    page.offer = null;
  } catch (error) {
    await stopSpeaking(false);
    const box = $("#speaker-error");
    box.textContent = explainMicError(error);
    box.hidden = false;
  } finally {
    setBusy(button, false);
  }
}

async function stopSpeaking(leave) {
  const speaker = page.speaker;
  page.speaker = null;
  if (speaker) await speaker.stop();
  if (leave && page.ticket) {
    await request(`${base}/stage/me/leave`, {method: "POST",
      body: {ticket: page.ticket.ticket}}).catch(() => {});
  }
}

async function leaveStage() {
  await stopSpeaking(true);
  page.offer = null;
  $("#speaker").hidden = true;
  if (page.status === "live") startPlayer();
}

async function toggleMute() {
  if (!page.speaker) return;
  const muted = !page.speaker.muted;
  showMuted(page.speaker, muted);
  try {
    await request(`${base}/stage/me/${muted ? "mute" : "unmute"}`, {method: "POST",
      body: {ticket: page.ticket.ticket}});
  } catch (error) {
    showMuted(page.speaker, !muted);
    toast(error.message, "error");
  }
}

// -- hands, reactions, sharing ---------------------------------------------------------

/** The visitor's name for the stage (an account's is known); words fit the purpose. */
function askName(title = "Ask to speak", action = "Raise hand") {
  if (page.account) return Promise.resolve("");
  const dialog = $("#hand-dialog");
  const input = $("#hand-name");
  $("#hand-title").textContent = title;
  $("#hand-form button[type=submit]").textContent = action;
  input.value = localStorage.getItem("podium:name") || "";
  return new Promise((resolve, reject) => {
    const done = (event) => {
      event.preventDefault();
      if (!input.value.trim()) return input.focus();
      localStorage.setItem("podium:name", input.value.trim());
      cleanup();
      dialog.close();
      resolve(input.value.trim());
    };
    // Cancel, Escape, or anything else that closes the dialog without a name.
    const cancel = () => {
      cleanup();
      if (dialog.open) dialog.close();
      reject(new DOMException("no name given", "AbortError"));
    };
    const cleanup = () => {
      $("#hand-form").removeEventListener("submit", done);
      $("#hand-cancel").removeEventListener("click", cancel);
      dialog.removeEventListener("close", cancel);
    };
    $("#hand-form").addEventListener("submit", done);
    $("#hand-cancel").addEventListener("click", cancel);
    dialog.addEventListener("close", cancel);
    dialog.showModal();
    input.focus();
  });
}

function setHand(raised) {
  page.hand = raised;
  const button = $("#hand-btn");
  button.setAttribute("aria-pressed", raised ? "true" : "false");
  button.classList.toggle("active", raised);
  button.lastChild.textContent = raised ? "Lower hand" : "Raise hand";
}

async function toggleHand() {
  const button = $("#hand-btn");
  setBusy(button, true);
  try {
    const ticket = await ensureTicket();
    if (page.hand) {
      await request(`${base}/hand`, {method: "DELETE", body: {ticket: ticket.ticket}});
      setHand(false);
      toast("Hand lowered.");
    } else {
      const name = await askName();
      const answer = await request(`${base}/hand`, {method: "POST",
        body: {ticket: ticket.ticket, ...(name ? {name} : {})}});
      setHand(true);
      toast(`Hand raised: you are number ${answer.data.position} in the queue.`, "ok");
    }
  } catch (error) {
    if (error.name !== "AbortError") toast(error.message, "error");
  } finally {
    setBusy(button, false);
  }
}

// The room state counts the raised hands without naming anyone: when the count drops
// while this visitor's hand is up and they are not on the stage, ask where their hand is.
async function checkHand() {
  try {
    const ticket = await ensureTicket();
    const answer = await request(`${base}/hand/status`, {method: "POST",
      body: {ticket: ticket.ticket}});
    if (page.hand && answer.data.position === null && !mySeat(page.doc)) {
      setHand(false);
      toast("The host declined your request to speak for now. You can raise your hand again.",
        "warn", 6);
    }
  } catch (error) {
    // Unknown for now: the next change of the room state asks again.
  }
}

async function react(event) {
  const emoji = event.currentTarget.dataset.emoji;
  try {
    const ticket = await ensureTicket();
    floats.mine(emoji);
    await request(`${base}/reactions`, {method: "POST", body: {ticket: ticket.ticket, emoji}});
  } catch (error) {
    if (error instanceof ApiError && error.status === 429) toast("Easy! Reactions are limited.");
    else toast(error.message, "error");
  }
}

async function share() {
  const url = `${location.origin}/s/${spaceId}`;
  if (navigator.share) {
    try {
      await navigator.share({title: data.title, url});
      return;
    } catch (error) {
      if (error.name === "AbortError") return;
    }
  }
  try {
    await navigator.clipboard.writeText(url);
    toast("Link copied.", "ok");
  } catch {
    toast(url, "info", 8);
  }
}

// -- wiring ----------------------------------------------------------------------------

async function start() {
  $("#listen-btn").addEventListener("click", listen);
  $("#arm-btn")?.addEventListener("click", listen);
  $("#retry-btn").addEventListener("click", listen);
  $("#stop-btn").addEventListener("click", () => {
    page.wantsAudio = false;
    stopPlayer();
    view("listen");
  });
  $("#queue-cancel").addEventListener("click", () => location.reload());
  $("#hand-btn").addEventListener("click", toggleHand);
  $("#share-btn").addEventListener("click", share);
  for (const button of $$(".reaction")) button.addEventListener("click", react);
  $("#join-stage").addEventListener("click", joinStage);
  $("#decline-stage").addEventListener("click", leaveStage);
  $("#leave-stage").addEventListener("click", leaveStage);
  $("#mute-btn").addEventListener("click", toggleMute);
  $("#music-mode").addEventListener("change", (event) => {
    page.speaker?.setMusicMode(event.currentTarget.checked)
      .catch((error) => toast(explainMicError(error), "error"));
  });
  setInterval(updateLatency, 1000);
  setInterval(updateCountdown, 1000);
  updateCountdown();
  if (page.status === "ended") showReplay();
  if (page.status === "live") loadHls(data.hls); // fetch it now, before the click
  const signedIn = await session();
  page.account = signedIn?.user || null;
  const stored = storedTicket();
  if (stored) {
    rememberTicket(stored);
    startBeacons();
  } else if (page.account) {
    page.me = `u:${page.account.id}`;
  }
  if (page.invite && page.status !== "ended") offer("invite");
  room.start();
}

start();
