// The status page: polls /ui/status.json every 3 seconds and redraws each section (text only).
"use strict";
(function () {
  const bytes = (n) => { const u = ["B", "KB", "MB", "GB", "TB"]; let i = 0; while (n >= 1024 && i < 4) { n /= 1024; i++; } return `${n.toFixed(i ? 1 : 0)} ${u[i]}`; };
  function cells(tr, values, numeric) {
    values.forEach((value, i) => { const td = document.createElement("td"); td.textContent = value; if (numeric.includes(i)) td.className = "num"; tr.appendChild(td); });
    return tr;
  }
  function fill(id, rows, toValues, numeric = [], empty = "none") {
    const body = document.querySelector(`#${id} tbody`);
    body.replaceChildren(...(rows.length ? rows.map((row) => cells(document.createElement("tr"), toValues(row), numeric))
      : [cells(document.createElement("tr"), [empty], [])]));
  }
  function list(id, items) {
    document.getElementById(id).replaceChildren(...(items.length ? items : ["none"]).map((text) => {
      const li = document.createElement("li"); li.textContent = text; return li; }));
  }
  function show(s) {
    document.getElementById("updated").textContent = "updated " + new Date().toLocaleTimeString();
    document.getElementById("ingest-rate").textContent = s.ingest.per_second.toFixed(1);
    document.getElementById("ingest-total").textContent = `${s.ingest.since_start} stored since the server started`;
    document.getElementById("disk").textContent = `${bytes(s.storage.disk_used)} used, ${bytes(s.storage.disk_free)} free`;
    fill("areas", Object.entries(s.storage.areas), ([name, a]) => [name + (a.receives ? " (new instances)" : ""), bytes(a.bytes), bytes(a.free)], [1, 2]);
    fill("modalities", Object.entries(s.storage.by_modality), ([m, f]) => [m, f.instances, bytes(f.bytes)], [1, 2]);
    const max = Math.max(1, ...s.storage.studies_per_day.map((d) => d.studies));
    document.getElementById("per-day").replaceChildren(...s.storage.studies_per_day.map((d) => {
      const bar = document.createElement("div"); bar.style.height = `${(100 * d.studies) / max}%`; bar.title = `${d.day}: ${d.studies}`; return bar; }));
    document.getElementById("per-day-labels").replaceChildren(...s.storage.studies_per_day.map((d) => {
      const label = document.createElement("span"); label.textContent = d.day.slice(8); return label; }));
    fill("associations", s.associations, (a) => [a.peer, a.calling_aet, a.called_aet, a.state, a.stored, a.seconds], [4, 5]);
    list("connections", s.connections);
    list("problems", s.problems.map((p) => `${new Date(p.at * 1000).toLocaleTimeString()} ${p.level} ${p.logger}: ${p.message}`));
    fill("forwarding", s.forwarding, (d) => [d.destination, d.pending, d.in_flight, d.delivered, d.failed, d.oldest_pending_seconds, d.delivered_per_second, d.last_error], [1, 2, 3, 4, 5, 6]);
    fill("commitment", s.commitment, (c) => [c.received_at, c.requester_aet, c.state, c.num_requested, c.num_committed, c.num_failed], [3, 4, 5]);
  }
  function poll() {
    fetch("/ui/status.json", { credentials: "same-origin" }).then((r) => r.json()).then(show)
      .catch(() => { document.getElementById("updated").textContent = "cannot reach the server"; })
      .finally(() => setTimeout(poll, 3000));
  }
  poll();
})();
