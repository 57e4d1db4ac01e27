// Following a room's state: one long poll at a time (`?after=<version>`), so the page
// hears of a change at once and otherwise waits, costing the server one held request.

import {backoff, request, sleep} from "./api.js";

const MIN_GAP_S = 0.25;

export class RoomState {
  /**
   * `onState(document)` runs for every new version; `onTrouble(error|null)` says when the
   * state stops (or starts again) coming through.
   */
  constructor(spaceId, onState, onTrouble = () => {}) {
    this.url = `/api/v1/spaces/${spaceId}/state`;
    this.onState = onState;
    this.onTrouble = onTrouble;
    this.version = null;
    this.document = null;
    this.clockOffset = 0; // server clock minus ours, in seconds (when it is clearly off)
    this.controller = null;
  }

  start() {
    if (this.controller) return;
    this.controller = new AbortController();
    this.#run(this.controller.signal);
  }

  stop() {
    this.controller?.abort();
    this.controller = null;
  }

  async #run(signal) {
    let failures = 0;
    while (!signal.aborted) {
      const url = this.version === null ? this.url : `${this.url}?after=${this.version}`;
      try {
        // Revalidate: a held poll that timed out must not be answered again from the
        // browser's cache for the next second.
        const answer = await request(url, {signal, cache: "no-cache"});
        this.#clock(answer.headers);
        if (failures) this.onTrouble(null);
        failures = 0;
        const doc = answer.data;
        if (doc && doc.version !== this.version) {
          this.version = doc.version;
          this.document = doc;
          this.onState(doc);
        }
        await sleep(MIN_GAP_S, signal);
      } catch (error) {
        if (signal.aborted || error.name === "AbortError") return;
        this.onTrouble(error);
        try {
          await sleep(backoff(failures++, error.retryAfter, 1, 15), signal);
        } catch {
          return;
        }
      }
    }
  }

  // The Date header is stamped as the answer leaves (a held poll's too) and has whole
  // seconds: only a clock that is off by more than that is corrected (for "~N s behind
  // live", which compares the server's clock with ours).
  #clock(headers) {
    const date = Date.parse(headers.get("Date") || "");
    if (Number.isNaN(date)) return;
    const offset = (date + 500 - Date.now()) / 1000;
    this.clockOffset = Math.abs(offset) > 1.5 ? offset : 0;
  }
}
