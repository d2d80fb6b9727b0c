/* Shared by the dashboard pages: API calls with the key cookie, the live feed, formatting. */
"use strict";

const KEY_COOKIE = "smokewatch_api_key";

function api(path) {
  return fetch(path, { credentials: "same-origin", cache: "no-store" }).then((response) => {
    if (response.status === 401) {
      askForKey();
      throw new Error("unauthorized");
    }
    if (!response.ok) {
      return response.json().then((body) => { throw new Error(body.error ? body.error.message : response.statusText); });
    }
    return response.json();
  });
}

function askForKey() {
  const form = document.getElementById("key-form");
  if (!form || form.classList.contains("shown")) return;
  form.classList.add("shown");
  form.addEventListener("submit", (e) => {
    e.preventDefault();
    const key = document.getElementById("key").value;
    document.cookie = KEY_COOKIE + "=" + encodeURIComponent(key) + "; path=/; SameSite=Strict";
    location.reload();
  });
}

/* EventSource reconnects by itself and sends Last-Event-ID, so nothing is missed across reconnections. */
function liveFeed(query, handlers) {
  const status = document.getElementById("live-status");
  const source = new EventSource("/events/live" + (query || ""));
  source.onopen = () => { status.textContent = "live"; status.className = "connected"; };
  source.onerror = () => { status.textContent = "reconnecting"; status.className = "disconnected"; };
  for (const [kind, handler] of Object.entries(handlers)) {
    source.addEventListener(kind, (message) => handler(JSON.parse(message.data)));
  }
  return source;
}

function el(tag, attrs, ...children) {
  const node = document.createElement(tag);
  for (const [name, value] of Object.entries(attrs || {})) {
    if (value === null || value === undefined) continue;
    if (name === "class") node.className = value;
    else if (name === "text") node.textContent = value;
    else node.setAttribute(name, value);
  }
  for (const child of children) node.append(child);
  return node;
}

function when(unix) {
  if (!unix) return "never";
  return new Date(unix * 1000).toLocaleString();
}

function ago(unix) {
  if (!unix) return "never";
  const s = Math.max(0, Date.now() / 1000 - unix);
  if (s < 60) return s.toFixed(0) + " s ago";
  if (s < 3600) return (s / 60).toFixed(0) + " min ago";
  return (s / 3600).toFixed(1) + " h ago";
}
