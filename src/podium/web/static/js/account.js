// Sign-in and sign-up forms: the session API sets the cookies, then back to where the
// visitor came from (a local path only, so the page cannot be used to bounce elsewhere).

import {ApiError, api} from "./api.js";
import "./page.js";
import {$, $$, setBusy} from "./ui.js";

function nextPath() {
  const asked = new URLSearchParams(location.search).get("next") || "/host";
  // Only a path of this site, judged as the browser will read it: it drops tabs and line
  // breaks and reads "\" as "/", so "/<tab>/elsewhere" is "//elsewhere", another site.
  let url;
  try {
    url = new URL(asked, location.origin);
  } catch {
    return "/host";
  }
  if (!asked.startsWith("/") || url.origin !== location.origin) return "/host";
  return url.pathname + url.search + url.hash;
}

function explain(error) {
  if (!(error instanceof ApiError)) return "The server cannot be reached. Check your connection.";
  if (error.status === 401) return "That handle and password do not match.";
  if (error.status === 429) {
    const wait = error.retryAfter ? ` in ${Math.ceil(error.retryAfter)} s` : " later";
    return `Too many attempts. Try again${wait}.`;
  }
  const errors = error.problem.errors;
  if (Array.isArray(errors) && errors.length) {
    return errors.map((e) => e.message || e.msg || JSON.stringify(e)).join(" ");
  }
  return error.message;
}

function check(form) {
  for (const input of $$("input", form)) {
    if (!input.checkValidity()) {
      const label = $(`label[for="${input.id}"]`, form).textContent;
      input.focus();
      return `${label}: ${input.validationMessage}`;
    }
  }
  return "";
}

async function submit(event) {
  event.preventDefault();
  const form = event.currentTarget;
  const error = $("#form-error");
  const button = $("button[type=submit]", form);
  const problem = check(form);
  error.hidden = !problem;
  error.textContent = problem;
  if (problem) return;
  const values = Object.fromEntries(new FormData(form));
  const handle = values.handle.trim().toLowerCase();
  setBusy(button, true);
  try {
    if (form.dataset.mode === "signup") {
      await api("/api/v1/users", {method: "POST", body: {
        handle, display_name: (values.display_name || "").trim(), password: values.password}});
    }
    await api("/api/v1/session", {method: "POST", body: {handle, password: values.password}});
    location.assign(nextPath());
  } catch (failure) {
    error.textContent = explain(failure);
    error.hidden = false;
    setBusy(button, false);
  }
}

const form = $("#auth-form");
if (form) {
  form.addEventListener("submit", submit);
  for (const link of $$("a[data-keep-next]")) {
    link.href += location.search;
  }
  $("input", form).focus();
}
