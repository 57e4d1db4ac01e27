// Speaking from the browser: the microphone, its level meter, publishing over WHIP
// (RFC 9725) and the mix-minus that comes back on the same peer connection, so a
// speaker hears the others with WebRTC latency instead of the broadcast's.

import {ApiError, request} from "./api.js";

const ICE_GATHER_S = 3;
// A session "disconnected" this long is taken as lost; the first try to publish again is
// at once, the next ones back off from RETRY_MS to RETRY_MAX_MS.
const LOST_AFTER_MS = 2000;
const RETRY_MS = 500;
const RETRY_MAX_MS = 5000;

/** getUserMedia constraints; music mode turns the voice processing off. */
export function micConstraints(music) {
  const processing = !music;
  return {audio: {echoCancellation: processing, noiseSuppression: processing,
    autoGainControl: processing, channelCount: 1}};
}

function gathered(pc) {
  // WHIP sends one offer with every candidate in it; on a host-only network gathering
  // ends at once, and an unreachable STUN server must not hold the speaker up.
  return new Promise((resolve) => {
    if (pc.iceGatheringState === "complete") return resolve();
    const done = () => pc.iceGatheringState === "complete" && resolve();
    pc.addEventListener("icegatheringstatechange", done);
    setTimeout(resolve, ICE_GATHER_S * 1000);
  });
}

/** Mute or unmute `speaker` (if there is one) and say so on the page's mute button. */
export function showMuted(speaker, muted) {
  speaker?.setMuted(muted);
  const button = document.querySelector("#mute-btn");
  button.setAttribute("aria-pressed", muted ? "true" : "false");
  button.lastChild.textContent = muted ? "Unmute" : "Mute";
}

/**
 * RFC 9725 section 4.6: ICE servers from a `Link` header (its values joined by commas, as
 * fetch gives them): `<turn:host?transport=tcp>; rel="ice-server"; username="u";
 * credential="c"; credential-type="password"`, as RTCIceServer dictionaries.
 */
export function iceServersFromLinks(header) {
  const servers = [];
  // A value: <URL> then parameters, each name=token or name="quoted \" string".
  const value = /\s*<([^>]*)>((?:\s*;\s*[\w-]+\s*(?:=\s*(?:"(?:[^"\\]|\\.)*"|[^;,\s]*))?)*)\s*(?:,|$)/gy;
  const param = /\s*;\s*([\w-]+)\s*(?:=\s*(?:"((?:[^"\\]|\\.)*)"|([^;,\s]*)))?/g;
  let match;
  while (value.lastIndex < header.length && (match = value.exec(header)) !== null) {
    const params = {};
    for (const [, name, quoted, token] of match[2].matchAll(param)) {
      params[name.toLowerCase()] = quoted !== undefined ? quoted.replace(/\\(.)/g, "$1") : token;
    }
    if (params.rel?.toLowerCase().split(/\s+/).includes("ice-server")) {
      const server = {urls: match[1]};
      if (params.username !== undefined) server.username = params.username;
      if (params.credential !== undefined) server.credential = params.credential;
      servers.push(server);
    }
  }
  return servers;
}

export class MicError extends Error {}

export function explainMicError(error) {
  if (!window.isSecureContext) {
    return "Browsers allow the microphone only on secure pages (https:// or localhost).";
  }
  if (error.name === "NotAllowedError") {
    return "The microphone is blocked. Allow it in your browser's site settings, then try again.";
  }
  if (error.name === "NotFoundError") return "No microphone was found on this device.";
  if (error.name === "NotReadableError") return "The microphone is in use by another app.";
  if (error instanceof ApiError) return error.message;
  return error.message || String(error);
}

/**
 * One speaker's connection. `bearer` is the listener ticket (or null for the signed-in
 * session, whose cookie and CSRF token authenticate). Events: onConnection(state, one
 * of RTCPeerConnection's or "reconnecting"), onLevel(0..1). A lost session is published
 * again by itself.
 */
export class Speaker {
  constructor(spaceId, bearer, monitor, events = {}) {
    this.whipUrl = `/api/v1/spaces/${spaceId}/whip`;
    this.bearer = bearer;
    this.monitor = monitor;
    this.events = events;
    this.music = false;
    this.stream = null;
    this.pc = null;
    this.sender = null;
    this.resource = null;
    this.audioContext = null;
    this.analyser = null;
    this.source = null;
    this.frame = 0;
    this.muted = false;
  }

  #headers(extra = {}) {
    return this.bearer ? {...extra, Authorization: `Bearer ${this.bearer}`} : extra;
  }

  async start(music = false) {
    this.music = music;
    if (!navigator.mediaDevices?.getUserMedia) {
      throw new MicError("This browser cannot use a microphone on this page.");
    }
    this.stream = await navigator.mediaDevices.getUserMedia(micConstraints(music));
    this.#meter();
    await this.#connect();
  }

  /** The STUN and TURN servers to publish through (TURN credentials are this speaker's
   * and short-lived): asked for before each offer, so that it holds the relay's
   * candidates. A server that gives none, or cannot say, leaves direct connections. */
  async #iceServers() {
    try {
      const answer = await fetch(this.whipUrl, {method: "OPTIONS", headers: this.#headers(),
        credentials: "same-origin"});
      return answer.ok ? iceServersFromLinks(answer.headers.get("Link") || "") : [];
    } catch {
      return [];
    }
  }

  /** One WHIP session for the microphone already taken. */
  async #connect() {
    const iceServers = await this.#iceServers();
    const pc = new RTCPeerConnection({bundlePolicy: "max-bundle", iceServers});
    this.pc = pc;
    const track = this.stream.getAudioTracks()[0];
    this.sender = pc.addTransceiver(track, {direction: "sendrecv", streams: [this.stream]}).sender;
    pc.addEventListener("track", (event) => {
      this.monitor.srcObject = event.streams[0] || new MediaStream([event.track]);
      this.monitor.play().catch(() => {});
    });
    pc.addEventListener("connectionstatechange", () => {
      if (pc !== this.pc) return; // a session given up already
      clearTimeout(this.lostTimer);
      this.events.onConnection?.(pc.connectionState);
      // "disconnected" can mend by itself; if it has not in a moment, or the session
      // failed, the server end is gone (it may have moved): publish again.
      if (pc.connectionState === "failed") this.#reconnect();
      if (pc.connectionState === "disconnected") {
        this.lostTimer = setTimeout(() => this.#reconnect(), LOST_AFTER_MS);
      }
    });
    await pc.setLocalDescription(await pc.createOffer());
    await gathered(pc);
    const answer = await request(this.whipUrl, {
      method: "POST", body: pc.localDescription.sdp,
      headers: this.#headers({"Content-Type": "application/sdp"}),
    });
    this.resource = new URL(answer.headers.get("Location"), location.href).pathname;
    await pc.setRemoteDescription({type: "answer", sdp: answer.data});
    // The server ending the session (a space handed to another server) closes its DTLS
    // end: the connection's state may not say so for many seconds, its transport's does.
    const transport = this.sender.transport;
    transport?.addEventListener("statechange", () => {
      if (pc !== this.pc) return;
      if (transport.state === "closed" || transport.state === "failed") this.#reconnect();
    });
    this.setMuted(this.muted);
  }

  /** Publish again through the space's WHIP URL, with a backoff, until it works, the
   * server refuses for good (a 4xx other than 429), or the speaker leaves. */
  #reconnect() {
    if (!this.stream || this.reconnecting) return;
    this.reconnecting = true;
    this.events.onConnection?.("reconnecting");
    const resource = this.resource;
    this.resource = null;
    if (resource) {
      request(resource, {method: "DELETE", headers: this.#headers()}).catch(() => {});
    }
    this.pc?.close();
    this.pc = null;
    // The first try is at once: a space handed to another server is waiting there.
    let delay = RETRY_MS / 2;
    const attempt = async () => {
      if (!this.stream) {
        this.reconnecting = false;
        return;
      }
      try {
        await this.#connect();
        this.reconnecting = false;
      } catch (error) {
        this.pc?.close();
        this.pc = null;
        if (error instanceof ApiError && error.status < 500 && error.status !== 429) {
          this.reconnecting = false;
          this.events.onConnection?.("failed");
          return;
        }
        delay = Math.min(RETRY_MAX_MS, delay * 2);
        setTimeout(attempt, delay);
      }
    };
    setTimeout(attempt, 0);
  }

  #meter() {
    if (!this.audioContext) {
      this.audioContext = new AudioContext();
      this.analyser = this.audioContext.createAnalyser();
      this.analyser.fftSize = 1024;
    }
    this.audioContext.resume().catch(() => {});
    this.source?.disconnect();
    this.source = this.audioContext.createMediaStreamSource(this.stream);
    this.source.connect(this.analyser);
    const samples = new Float32Array(this.analyser.fftSize);
    cancelAnimationFrame(this.frame);
    const tick = () => {
      this.analyser.getFloatTimeDomainData(samples);
      let sum = 0;
      for (const s of samples) sum += s * s;
      const db = 10 * Math.log10(sum / samples.length + 1e-12);
      // -60 dBFS (silence) … -6 dBFS (loud speech) across the meter.
      const level = this.muted ? 0 : Math.min(1, Math.max(0, (db + 60) / 54));
      this.events.onLevel?.(level);
      this.frame = requestAnimationFrame(tick);
    };
    tick();
  }

  setMuted(muted) {
    this.muted = muted;
    for (const track of this.stream?.getAudioTracks() || []) track.enabled = !muted;
  }

  /** Switch voice processing by taking the microphone again with new constraints. */
  async setMusicMode(music) {
    this.music = music;
    if (!this.stream) return;
    const fresh = await navigator.mediaDevices.getUserMedia(micConstraints(music));
    const track = fresh.getAudioTracks()[0];
    await this.sender.replaceTrack(track);
    for (const old of this.stream.getTracks()) old.stop();
    this.stream = fresh;
    this.setMuted(this.muted);
    this.#meter();
  }

  /** Leave: end the WHIP session (RFC 9725 4.3: DELETE the resource), release the mic. */
  async stop() {
    cancelAnimationFrame(this.frame);
    clearTimeout(this.lostTimer);
    const resource = this.resource;
    this.resource = null;
    if (resource) {
      await request(resource, {method: "DELETE", headers: this.#headers()}).catch(() => {});
    }
    this.pc?.close();
    this.pc = null;
    for (const track of this.stream?.getTracks() || []) track.stop();
    this.stream = null;
    this.source?.disconnect();
    this.audioContext?.close().catch(() => {});
    this.audioContext = null;
    this.monitor.srcObject = null;
    this.events.onLevel?.(0);
  }
}
