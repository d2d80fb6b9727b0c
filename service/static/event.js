/* One event: its snapshot, its clip and its details, kept up to date from the live feed. */
"use strict";

const eventId = Number(location.pathname.split("/").pop());

function show(event) {
  document.getElementById("title").textContent = "event #" + event.id + " \u00b7 " + event.stream_name;
  document.title = "smokewatch: event #" + event.id;
  const snapshot = document.getElementById("snapshot");
  if (event.snapshot_url && snapshot.getAttribute("src") !== event.snapshot_url) snapshot.src = event.snapshot_url;
  document.getElementById("snapshot-caption").textContent = event.snapshot_url
    ? "Snapshot: the annotated frame at the moment smoke was confirmed (" + when(event.opened_at) + ")."
    : "No snapshot (dropped by retention).";
  const clip = document.getElementById("clip");
  if (event.clip_url && clip.getAttribute("src") !== event.clip_url) clip.src = event.clip_url;
  clip.hidden = !event.clip_url;
  document.getElementById("clip-caption").textContent = event.clip_url
    ? "Clip: the frames before and after the moment smoke was confirmed."
    : "The clip is written once the frames after the confirmation have been seen.";
  const details = document.getElementById("details");
  details.replaceChildren();
  const rows = [
    ["state", el("span", { class: "badge-" + event.state, text: event.state })],
    ["stream", el("a", { href: "/", text: event.stream_name + " (" + event.stream_id + ")" })],
    ["first seen", when(event.first_seen_at)],
    ["confirmed", when(event.opened_at)],
    ["last seen", when(event.last_seen_at)],
    ["closed", event.closed_at ? when(event.closed_at) + " (" + event.close_reason + ")" : "\u2014"],
    ["p(smoke) max", event.max_score.toFixed(3)],
    ["frames with smoke", String(event.positive_frames)],
    ["reopened", String(event.reopened)],
  ];
  for (const [name, value] of rows) details.append(el("dt", { text: name }), el("dd", {}, value));
  const boxes = document.getElementById("boxes");
  boxes.replaceChildren(...event.boxes.map((b) =>
    el("li", { text: "#" + b.track_id + " [" + b.box.map((v) => v.toFixed(0)).join(", ") + "] p=" + b.smoke_prob.toFixed(2) })));
}

api("/events/" + eventId).then((event) => {
  show(event);
  const update = (changed) => { if (changed.id === eventId) show(changed); };
  liveFeed("?stream=" + encodeURIComponent(event.stream_id), {
    "event.updated": update, "event.reopened": update, "event.closed": update,
  });
}).catch((error) => {
  document.getElementById("title").textContent = String(error.message || error);
});
