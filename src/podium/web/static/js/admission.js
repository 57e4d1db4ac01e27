// Joining a space by the join contract: admitted (a ticket), the replay, a fair queue
// (position, estimate, automatic retry that keeps the place), a proof of work when the
// server asks for one, and backoff with full jitter on refusals, within a retry budget.

import {ApiError, backoff, request, retryable, sleep} from "./api.js";

const RETRY_BUDGET = 8;
const POW_YIELD_EVERY = 4000;

// SHA-256 in plain JavaScript: crypto.subtle exists only on secure origins (a LAN
// address over plain HTTP is not one), and one synchronous hash per nonce is faster
// than one promise per nonce anyway.
const K = new Uint32Array([
  0x428a2f98, 0x71374491, 0xb5c0fbcf, 0xe9b5dba5, 0x3956c25b, 0x59f111f1, 0x923f82a4,
  0xab1c5ed5, 0xd807aa98, 0x12835b01, 0x243185be, 0x550c7dc3, 0x72be5d74, 0x80deb1fe,
  0x9bdc06a7, 0xc19bf174, 0xe49b69c1, 0xefbe4786, 0x0fc19dc6, 0x240ca1cc, 0x2de92c6f,
  0x4a7484aa, 0x5cb0a9dc, 0x76f988da, 0x983e5152, 0xa831c66d, 0xb00327c8, 0xbf597fc7,
  0xc6e00bf3, 0xd5a79147, 0x06ca6351, 0x14292967, 0x27b70a85, 0x2e1b2138, 0x4d2c6dfc,
  0x53380d13, 0x650a7354, 0x766a0abb, 0x81c2c92e, 0x92722c85, 0xa2bfe8a1, 0xa81a664b,
  0xc24b8b70, 0xc76c51a3, 0xd192e819, 0xd6990624, 0xf40e3585, 0x106aa070, 0x19a4c116,
  0x1e376c08, 0x2748774c, 0x34b0bcb5, 0x391c0cb3, 0x4ed8aa4a, 0x5b9cca4f, 0x682e6ff3,
  0x748f82ee, 0x78a5636f, 0x84c87814, 0x8cc70208, 0x90befffa, 0xa4506ceb, 0xbef9a3f7,
  0xc67178f2,
]);

/** SHA-256 of `bytes`, as 8 big-endian 32-bit words. */
export function sha256(bytes) {
  const length = bytes.length;
  const blocks = Math.ceil((length + 9) / 64);
  const padded = new Uint8Array(blocks * 64);
  padded.set(bytes);
  padded[length] = 0x80;
  const view = new DataView(padded.buffer);
  view.setUint32(padded.length - 4, length * 8);
  view.setUint32(padded.length - 8, Math.floor(length / 0x20000000));
  const h = new Uint32Array([0x6a09e667, 0xbb67ae85, 0x3c6ef372, 0xa54ff53a, 0x510e527f,
    0x9b05688c, 0x1f83d9ab, 0x5be0cd19]);
  const w = new Uint32Array(64);
  const rotr = (x, n) => (x >>> n) | (x << (32 - n));
  for (let block = 0; block < blocks; block++) {
    for (let i = 0; i < 16; i++) w[i] = view.getUint32(block * 64 + i * 4);
    for (let i = 16; i < 64; i++) {
      const s0 = rotr(w[i - 15], 7) ^ rotr(w[i - 15], 18) ^ (w[i - 15] >>> 3);
      const s1 = rotr(w[i - 2], 17) ^ rotr(w[i - 2], 19) ^ (w[i - 2] >>> 10);
      w[i] = w[i - 16] + s0 + w[i - 7] + s1;
    }
    let [a, b, c, d, e, f, g, k] = h;
    for (let i = 0; i < 64; i++) {
      const t1 = k + (rotr(e, 6) ^ rotr(e, 11) ^ rotr(e, 25)) + ((e & f) ^ (~e & g)) + K[i] + w[i];
      const t2 = (rotr(a, 2) ^ rotr(a, 13) ^ rotr(a, 22)) + ((a & b) ^ (a & c) ^ (b & c));
      k = g; g = f; f = e; e = (d + t1) >>> 0; d = c; c = b; b = a; a = (t1 + t2) >>> 0;
    }
    h[0] += a; h[1] += b; h[2] += c; h[3] += d; h[4] += e; h[5] += f; h[6] += g; h[7] += k;
  }
  return h;
}

function leadingZeroBits(words) {
  let bits = 0;
  for (const word of words) {
    if (word === 0) { bits += 32; continue; }
    return bits + Math.clz32(word);
  }
  return bits;
}

/** A decimal nonce with sha256(token + ":" + nonce) starting with `difficulty` zero bits. */
export async function solveProofOfWork(token, difficulty, signal) {
  const encoder = new TextEncoder();
  for (let nonce = 0; ; nonce++) {
    if (nonce % POW_YIELD_EVERY === 0) {
      await sleep(0, signal); // let the page breathe (and the visitor leave)
    }
    if (leadingZeroBits(sha256(encoder.encode(`${token}:${nonce}`))) >= difficulty) {
      return String(nonce);
    }
  }
}

/**
 * Join space `spaceId`. Resolves to the admitted (or replay) answer. Calls
 * `events.queued(answer)` for every queued answer, `events.working()` while solving a
 * proof of work, and `events.retrying(error, seconds)` before each backoff. Rejects with
 * the last error when the retry budget is spent or the refusal is final.
 */
export async function join(spaceId, events = {}, signal = undefined) {
  let queueToken = null;
  let proof = null;
  let failures = 0;
  for (;;) {
    const body = {};
    if (queueToken) body.queue_token = queueToken;
    if (proof) body.pow = proof;
    let answer;
    try {
      answer = await request(`/api/v1/spaces/${spaceId}/join`, {
        method: "POST", body: Object.keys(body).length ? body : undefined, signal,
      });
    } catch (error) {
      proof = null;
      const challenge = error instanceof ApiError && error.status === 428 &&
        error.problem.challenge;
      if (challenge) {
        events.working?.();
        proof = {token: challenge.token,
          nonce: await solveProofOfWork(challenge.token, challenge.difficulty, signal)};
        continue;
      }
      if (!retryable(error) || failures >= RETRY_BUDGET) throw error;
      const wait = backoff(failures++, error.retryAfter);
      events.retrying?.(error, wait);
      await sleep(wait, signal);
      continue;
    }
    proof = null;
    failures = 0;
    const data = answer.data || {};
    if (answer.status === 202 || data.status === "queued") {
      queueToken = data.queue_token || queueToken;
      events.queued?.(data);
      // The server already spreads the crowd's retries: wait exactly what it says.
      const retry = Number(data.retry_after_s ?? answer.headers.get("Retry-After") ?? 2);
      await sleep(Number.isFinite(retry) ? retry : 2, signal);
      continue;
    }
    return {status: "admitted", ...data};
  }
}
