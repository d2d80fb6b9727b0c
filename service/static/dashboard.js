/* The camera wall: every stream with its status and latest annotated frame, and events live. */
"use strict";

const cameras = new Map(); // id -> {node, parts, frameAt}
const events = new Map(); // id -> {node, parts}

function cameraCard(stream) {
  const parts = {
    name: el("h3", { class: "name", title: stream.url }),
    state: el("span", { class: "state" }),
    condition: el("span", { class: "condition" }),
    image: el("img", { class: "frame", alt: "latest annotated frame of " + stream.name }),
    noFrame: el("span", { class: "no-frame", text: "no frame yet" }),
    fps: el("dd"), dropped: el("dd"), reconnects: el("dd"), last: el("dd"),
    error: el("p", { class: "error" }),
    alert: el("a", { class: "alert-link" }),
  };
  parts.image.hidden = true;
  const node = el("article", { class: "camera", "data-stream-id": stream.id },
    el("div", { class: "head" }, parts.name, parts.condition, parts.state),
    parts.alert,
    el("div", { class: "frame-box" }, parts.image, parts.noFrame),
    el("dl", { class: "stats" },
      el("div", {}, el("dt", { text: "frames/s" }), parts.fps),
      el("div", {}, el("dt", { text: "dropped" }), parts.dropped),
      el("div", {}, el("dt", { text: "reconnects" }), parts.reconnects),
      el("div", {}, el("dt", { text: "last frame" }), parts.last)),
    parts.error);
  parts.image.addEventListener("load", () => { parts.image.hidden = false; parts.noFrame.hidden = true; });
  return { node, parts, frameAt: null, processed: -1 };
}

function showStream(stream) {
  let card = cameras.get(stream.id);
  if (!card) {
    card = cameraCard(stream);
    cameras.set(stream.id, card);
    document.getElementById("cameras").append(card.node);
  }
  const s = stream.status, p = card.parts;
  p.name.textContent = stream.name;
  p.state.textContent = s.state;
  p.state.className = "state " + s.state;
  p.condition.textContent = s.condition;
  p.condition.className = "condition " + s.condition;
  p.condition.hidden = s.condition !== "dark" && s.condition !== "frozen";
  p.fps.textContent = s.fps.toFixed(2);
  p.dropped.textContent = s.frames_dropped;
  p.reconnects.textContent = s.reconnects;
  p.last.textContent = ago(s.last_frame_at);
  p.error.textContent = s.state === "online" ? "" : (s.last_error || "");
  p.alert.hidden = !s.open_event_id;
  if (s.open_event_id) {
    p.alert.textContent = "SMOKE: event #" + s.open_event_id;
    p.alert.href = "/ui/events/" + s.open_event_id;
  }
  card.node.classList.toggle("alerting", !!s.open_event_id);
  if (s.frames_processed !== card.processed && s.frames_processed > 0) {
    card.processed = s.frames_processed;
    p.image.src = stream.frame_url + "?n=" + s.frames_processed;
  }
  document.getElementById("no-cameras").hidden = cameras.size > 0;
}

function refreshStreams() {
  return api("/streams").then((streams) => {
    const seen = new Set(streams.map((s) => s.id));
    for (const [id, card] of cameras) {
      if (!seen.has(id)) { card.node.remove(); cameras.delete(id); }
    }
    streams.forEach(showStream);
    const online = streams.filter((s) => s.status.online).length;
    const alerting = streams.filter((s) => s.status.open_event_id).length;
    document.getElementById("summary").textContent =
      online + "/" + streams.length + " online" + (alerting ? ", " + alerting + " alerting" : "");
  }).catch(() => {});
}

function eventItem(event) {
  const parts = {
    thumb: el("img", { alt: "snapshot of event " + event.id }),
    link: el("a", { href: "/ui/events/" + event.id }),
    meta: el("div", { class: "meta" }),
  };
  const node = el("li", { class: "event", "data-event-id": event.id }, parts.thumb, el("div", {}, parts.link, parts.meta));
  return { node, parts };
}

function showEvent(event) {
  let item = events.get(event.id);
  if (!item) {
    item = eventItem(event);
    const list = document.getElementById("events");
    const newer = [...events.keys()].filter((id) => id > event.id).length;
    list.insertBefore(item.node, list.children[newer + 1] || null); // after the "no event" line and newer events
    events.set(event.id, item);
  }
  const p = item.parts;
  item.node.className = "event " + event.state;
  p.thumb.hidden = !event.snapshot_url;
  if (event.snapshot_url && p.thumb.getAttribute("src") !== event.snapshot_url) p.thumb.src = event.snapshot_url;
  p.link.textContent = "#" + event.id + " " + event.stream_name;
  p.meta.textContent = event.state + " \u00b7 opened " + when(event.opened_at) + " \u00b7 p max " + event.max_score.toFixed(2);
  document.getElementById("no-events").hidden = events.size > 0;
}

function start() {
  refreshStreams();
  setInterval(refreshStreams, 2000);
  api("/events?limit=50").then((page) => page.events.slice().reverse().forEach(showEvent)).catch(() => {});
  const onEvent = (event) => { showEvent(event); refreshStreams(); };
  liveFeed("", {
    "event.opened": onEvent, "event.reopened": onEvent, "event.updated": showEvent, "event.closed": onEvent,
    "stream.status": () => refreshStreams(),
  });
}

start();
