// Playback: the live program over LL-HLS (hls.js, or the browser's own HLS on Safari and
// where Media Source Extensions are missing), how far behind live the listener is, and
// the replay with its own controls.

import {ApiError, backoff, request, sleep} from "./api.js";
import {$, clockText, icon} from "./ui.js";

let hlsLoading = null;

/** Load the vendored hls.js once (it sets globalThis.Hls); null if it cannot load. */
export function loadHls(url) {
  if (!hlsLoading) {
    hlsLoading = import(url).then(() => globalThis.Hls || null, () => null);
  }
  return hlsLoading;
}

function isSafari() {
  const ua = navigator.userAgent;
  return /safari/i.test(ua) && !/chrome|chromium|crios|fxios|android/i.test(ua);
}

/** Whether to use the browser's own HLS: on Safari, or where hls.js cannot run. */
export function preferNative(audio, Hls) {
  const native = Boolean(audio.canPlayType("application/vnd.apple.mpegurl"));
  if (!native) return false;
  return isSafari() || !Hls || !Hls.isSupported();
}

/**
 * The live program in `audio`. Events: onStatus("buffering"|"playing"|"paused"|
 * "blocked"|"error", detail), onEnded() when the program's last part has played.
 */
export class LivePlayer {
  constructor(audio, playlistUrl, hlsUrl, events = {}) {
    this.audio = audio;
    this.url = playlistUrl;
    this.hlsUrl = hlsUrl;
    this.events = events;
    this.hls = null;
    this.native = false;
    this.clockOffset = () => 0;
    this.failures = 0;
    this.stalls = 0;
    this.#listen();
  }

  #listen() {
    const a = this.audio;
    const status = (s) => () => this.events.onStatus?.(s);
    a.addEventListener("playing", status("playing"));
    a.addEventListener("pause", () => { if (!a.ended) this.events.onStatus?.("paused"); });
    a.addEventListener("waiting", () => {
      this.stalls += 1;
      this.events.onStatus?.("buffering");
    });
    a.addEventListener("ended", () => this.events.onEnded?.());
  }

  async start() {
    const Hls = await loadHls(this.hlsUrl);
    this.native = preferNative(this.audio, Hls);
    if (this.native) {
      this.audio.src = this.url;
    } else if (Hls && Hls.isSupported()) {
      this.#attachHls(Hls);
    } else {
      this.events.onStatus?.("error", "This browser cannot play live audio (no HLS support).");
      return;
    }
    await this.play();
  }

  #attachHls(Hls) {
    const hls = new Hls({lowLatencyMode: true, backBufferLength: 30, enableWorker: true});
    hls.on(Hls.Events.ERROR, (_event, data) => {
      if (!data.fatal) return;
      if (data.type === Hls.ErrorTypes.MEDIA_ERROR) {
        hls.recoverMediaError();
        return;
      }
      this.events.onStatus?.("buffering");
      const wait = backoff(this.failures++, null, 1, 10);
      setTimeout(() => { if (this.hls === hls) hls.startLoad(); }, wait * 1000);
    });
    hls.on(Hls.Events.FRAG_LOADED, () => { this.failures = 0; });
    hls.loadSource(this.url);
    hls.attachMedia(this.audio);
    this.hls = hls;
  }

  async play() {
    try {
      await this.audio.play();
    } catch (error) {
      // Autoplay rules: without a recent click the browser may refuse to start sound.
      this.events.onStatus?.(error.name === "NotAllowedError" ? "blocked" : "error",
        error.message);
    }
  }

  pause() {
    this.audio.pause();
  }

  /** Seconds between the program time being heard and now, from PROGRAM-DATE-TIME. */
  latency() {
    let date = null;
    if (this.hls) {
      date = this.#programDate();
    } else if (this.native && this.audio.getStartDate) {
      const start = this.audio.getStartDate().getTime();
      if (!Number.isNaN(start)) date = new Date(start + this.audio.currentTime * 1000);
    }
    if (!date || Number.isNaN(date.getTime())) return null;
    return (Date.now() + this.clockOffset() * 1000 - date.getTime()) / 1000;
  }

  // hls.playingDate follows the fragment hls.js last marked as playing, which with
  // LL-HLS parts can be the segment still being made; the program's time is linear, so
  // the last whole segment that started before the playhead gives it exactly.
  #programDate() {
    const level = this.hls.levels?.[Math.max(0, this.hls.currentLevel)];
    const t = this.audio.currentTime;
    let best = null;
    for (const fragment of level?.details?.fragments || []) {
      if (fragment.programDateTime !== null && fragment.start <= t) best = fragment;
    }
    if (!best) return this.hls.playingDate;
    return new Date(best.programDateTime + (t - best.start) * 1000);
  }

  destroy() {
    this.hls?.destroy();
    this.hls = null;
    this.audio.pause();
    this.audio.removeAttribute("src");
    this.audio.load();
  }
}

/**
 * The replay with play/pause, a seek bar, ±15 s and a download link. It plays the single
 * file when it is ready, else the ended playlist (complete at once) through hls.js.
 */
export class ReplayPlayer {
  constructor(root, spaceId, hlsUrl) {
    this.root = root;
    this.audio = $("#replay-audio", root);
    this.fileUrl = `/hls/${spaceId}/replay.m4a`;
    this.playlistUrl = `/hls/${spaceId}/index.m3u8`;
    this.hlsUrl = hlsUrl;
    this.hls = null;
    this.loaded = false;
    this.seeking = false;
    this.#wire();
  }

  #wire() {
    const a = this.audio;
    const seek = $("#replay-seek", this.root);
    $("#replay-play", this.root).addEventListener("click", () => this.toggle());
    $("#replay-back", this.root).addEventListener("click", () => this.skip(-15));
    $("#replay-fwd", this.root).addEventListener("click", () => this.skip(15));
    seek.addEventListener("input", () => {
      this.seeking = true;
      $("#replay-pos", this.root).textContent = clockText(Number(seek.value));
    });
    seek.addEventListener("change", () => {
      this.seeking = false;
      a.currentTime = Number(seek.value);
    });
    const sync = () => this.#render();
    for (const name of ["timeupdate", "durationchange", "play", "pause", "ended",
      "loadedmetadata"]) {
      a.addEventListener(name, sync);
    }
  }

  async prepare() {
    if (this.loaded) return;
    this.loaded = true;
    this.audio.preload = "metadata";
    const ready = await this.#fileReady();
    if (ready) {
      this.audio.src = this.fileUrl;
    } else {
      const Hls = await loadHls(this.hlsUrl);
      if (preferNative(this.audio, Hls) || !Hls) {
        this.audio.src = this.playlistUrl;
      } else {
        this.hls = new Hls({enableWorker: true});
        this.hls.loadSource(this.playlistUrl);
        this.hls.attachMedia(this.audio);
      }
      this.#waitForFile();
    }
  }

  async #fileReady() {
    try {
      // One byte is enough to know the file is there (the route answers GET only).
      await request(this.fileUrl, {headers: {Range: "bytes=0-0"}, cache: "no-store"});
      this.#download(true);
      return true;
    } catch (error) {
      this.#download(false, error);
      return false;
    }
  }

  // The single file follows the end within seconds; until then the playlist plays.
  async #waitForFile() {
    for (let attempt = 0; attempt < 30; attempt++) {
      await sleep(backoff(Math.min(attempt, 3), 1, 1, 4));
      if (await this.#fileReady()) return;
    }
  }

  #download(ready, error = null) {
    const link = $("#replay-download", this.root);
    const note = $("#replay-note", this.root);
    link.classList.toggle("disabled", !ready);
    link.setAttribute("aria-disabled", ready ? "false" : "true");
    if (ready) {
      link.href = this.fileUrl;
      note.textContent = "";
    } else {
      link.removeAttribute("href");
      const gone = error instanceof ApiError && error.status === 404;
      note.textContent = gone ? "The download is not available; the replay plays here."
        : "Preparing the download…";
    }
  }

  async toggle() {
    await this.prepare();
    if (this.audio.paused) {
      await this.audio.play().catch(() => {});
    } else {
      this.audio.pause();
    }
  }

  skip(seconds) {
    const a = this.audio;
    if (!Number.isFinite(a.duration)) return;
    a.currentTime = Math.max(0, Math.min(a.duration, a.currentTime + seconds));
  }

  #render() {
    const a = this.audio;
    const seek = $("#replay-seek", this.root);
    const button = $("#replay-play", this.root);
    const playing = !a.paused && !a.ended;
    button.replaceChildren(icon(playing ? "pause" : "play"));
    button.setAttribute("aria-label", playing ? "Pause the replay" : "Play the replay");
    if (Number.isFinite(a.duration) && a.duration > 0) {
      seek.max = String(a.duration);
      seek.disabled = false;
      $("#replay-dur", this.root).textContent = clockText(a.duration);
    }
    if (!this.seeking) {
      seek.value = String(a.currentTime);
      $("#replay-pos", this.root).textContent = clockText(a.currentTime);
    }
    seek.setAttribute("aria-valuetext", `${clockText(a.currentTime)} of ${clockText(a.duration)}`);
  }
}
