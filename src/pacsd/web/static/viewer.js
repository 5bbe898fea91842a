// The series viewer: one canvas; wheel and arrow keys scroll through frames, dragging changes
// window/level (server-rendered PNGs), pans or zooms; presets, invert, reset, tag panel.
"use strict";
(function () {
  const data = JSON.parse(document.getElementById("viewer-data").textContent);
  const canvas = document.getElementById("canvas");
  const context = canvas.getContext("2d");
  const overlay = document.getElementById("overlay");
  const state = { index: 0, window: null, start: null, zoom: 1, panX: 0, panY: 0, invert: false,
                  bitmap: null, loading: false, wanted: null, tagsFor: null };

  function frameUrl() {
    const f = data.frames[state.index];
    let url = `/ui/instances/${encodeURIComponent(f.sop)}/frames/${f.frame}.png`;
    if (state.window) url += `?center=${state.window[0]}&width=${state.window[1]}`;
    return url;
  }

  // Load the current frame; while one load runs, remember only the latest wish (drag throttle).
  function load() {
    if (!data.frames.length) { overlay.textContent = "This series has no images."; return; }
    const url = frameUrl();
    if (state.loading) { state.wanted = url; return; }
    state.loading = true;
    fetch(url, { credentials: "same-origin" }).then(async (response) => {
      if (!response.ok) throw new Error((await response.json().catch(() => ({}))).error || response.statusText);
      const center = response.headers.get("X-Window-Center"), width = response.headers.get("X-Window-Width");
      state.start = center !== null ? [parseFloat(center), parseFloat(width)] : null;
      state.bitmap = await createImageBitmap(await response.blob());
      draw();
    }).catch((error) => { state.bitmap = null; draw(); overlay.textContent = "Cannot show this image: " + error.message; })
      .finally(() => {
        state.loading = false;
        if (state.wanted && state.wanted !== url) { state.wanted = null; load(); } else state.wanted = null;
      });
    if (state.tagsFor !== data.frames[state.index].sop && !document.getElementById("tag-panel").hidden) loadTags();
  }

  function draw() {
    const box = canvas.parentElement.getBoundingClientRect();
    canvas.width = Math.max(1, Math.floor(box.width));
    canvas.height = Math.max(1, Math.floor(box.height));
    context.setTransform(1, 0, 0, 1, 0, 0);
    context.fillStyle = "#000";
    context.fillRect(0, 0, canvas.width, canvas.height);
    const image = state.bitmap;
    if (!image) return;
    const fit = Math.min(canvas.width / image.width, canvas.height / image.height) * state.zoom;
    context.filter = state.invert ? "invert(1)" : "none";
    context.imageSmoothingEnabled = fit < 1;
    context.translate(canvas.width / 2 + state.panX, canvas.height / 2 + state.panY);
    context.drawImage(image, -image.width * fit / 2, -image.height * fit / 2, image.width * fit, image.height * fit);
    context.filter = "none";
    const f = data.frames[state.index];
    const w = state.window || state.start;
    overlay.textContent = `Image ${state.index + 1} / ${data.frames.length}` +
      (f.number !== null ? ` · #${f.number}` : "") + (f.frames > 1 ? ` · frame ${f.frame + 1}/${f.frames}` : "") +
      (w ? ` · W ${Math.round(w[1])} L ${Math.round(w[0])}` : "") + (state.zoom !== 1 ? ` · ${state.zoom.toFixed(2)}×` : "");
  }

  function step(delta) {
    const next = Math.min(data.frames.length - 1, Math.max(0, state.index + delta));
    if (next !== state.index) { state.index = next; load(); }
  }

  canvas.addEventListener("wheel", (event) => { event.preventDefault(); step(event.deltaY > 0 ? 1 : -1); }, { passive: false });
  document.addEventListener("keydown", (event) => {
    if (event.target.tagName === "INPUT" || event.target.tagName === "SELECT") return;
    if (event.key === "ArrowDown" || event.key === "ArrowRight" || event.key === "PageDown") { step(1); event.preventDefault(); }
    if (event.key === "ArrowUp" || event.key === "ArrowLeft" || event.key === "PageUp") { step(-1); event.preventDefault(); }
    if (event.key === "Home") { state.index = 0; load(); }
    if (event.key === "End") { state.index = data.frames.length - 1; load(); }
  });

  let drag = null;
  canvas.addEventListener("pointerdown", (event) => {
    canvas.setPointerCapture(event.pointerId);
    drag = { x: event.clientX, y: event.clientY, window: state.window || state.start,
             zoom: state.zoom, panX: state.panX, panY: state.panY,
             tool: event.button === 2 ? "pan" : document.getElementById("tool").value };
  });
  canvas.addEventListener("pointermove", (event) => {
    if (!drag) return;
    const dx = event.clientX - drag.x, dy = event.clientY - drag.y;
    if (drag.tool === "window" && drag.window) {
      const scale = Math.max(drag.window[1], 1) / 256;  // a drag across 256 px spans one window width
      state.window = [drag.window[0] + dy * scale, Math.max(1, drag.window[1] + dx * scale)];
      load();
    } else if (drag.tool === "pan") {
      state.panX = drag.panX + dx; state.panY = drag.panY + dy; draw();
    } else if (drag.tool === "zoom") {
      state.zoom = Math.min(20, Math.max(0.1, drag.zoom * Math.exp(-dy / 200))); draw();
    }
  });
  const endDrag = () => { drag = null; };
  canvas.addEventListener("pointerup", endDrag);
  canvas.addEventListener("pointercancel", endDrag);
  canvas.addEventListener("contextmenu", (event) => event.preventDefault());

  document.getElementById("preset").addEventListener("change", (event) => {
    const preset = data.presets[event.target.value];
    if (preset) { state.window = preset.slice(); load(); }
    event.target.value = "";
  });
  document.getElementById("invert").addEventListener("click", () => { state.invert = !state.invert; draw(); });
  document.getElementById("reset").addEventListener("click", () => {
    Object.assign(state, { window: null, zoom: 1, panX: 0, panY: 0, invert: false }); load();
  });

  function loadTags() {
    const sop = data.frames[state.index].sop;
    state.tagsFor = sop;
    fetch(`/ui/instances/${encodeURIComponent(sop)}/tags.json`, { credentials: "same-origin" })
      .then((r) => r.json()).then((result) => {
        const body = document.querySelector("#tag-table tbody");
        body.replaceChildren(...result.tags.map((row) => {
          const tr = document.createElement("tr");
          for (const text of [row.tag, "\u00a0".repeat(row.depth * 2) + row.name, row.vr, row.value]) {
            const td = document.createElement("td"); td.textContent = text; tr.appendChild(td);
          }
          return tr;
        }));
        filterTags();
      });
  }
  function filterTags() {
    const wanted = document.getElementById("tag-filter").value.toLowerCase();
    for (const tr of document.querySelectorAll("#tag-table tbody tr"))
      tr.hidden = wanted !== "" && !tr.textContent.toLowerCase().includes(wanted);
  }
  document.getElementById("tag-filter").addEventListener("input", filterTags);
  document.getElementById("toggle-tags").addEventListener("click", () => {
    const panel = document.getElementById("tag-panel");
    panel.hidden = !panel.hidden;
    if (!panel.hidden) loadTags();
    draw();
  });

  window.addEventListener("resize", draw);
  load();
  canvas.focus();
})();
