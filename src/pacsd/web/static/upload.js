// Upload by drag and drop or file picker: each file is sent with STOW-RS (POST /dicom-web/studies,
// multipart/related, with the session's CSRF token), so it takes the ingest path every image
// takes; the table shows each file's result from the store response.
"use strict";
(function () {
  const csrf = document.querySelector('meta[name="csrf-token"]').content;
  const zone = document.getElementById("dropzone");
  const progress = document.getElementById("upload-progress");
  const body = document.querySelector("#upload-results tbody");
  const REFERENCED = "00081199", FAILED = "00081198", SOP_INSTANCE = "00081155", TEXT_VALUE = "0040A160";

  function row(name, text, ok) {
    const tr = document.createElement("tr");
    for (const value of [name, text]) { const td = document.createElement("td"); td.textContent = value; tr.appendChild(td); }
    tr.lastChild.className = ok ? "ok" : "failed";
    body.appendChild(tr);
  }

  const first = (item, tag) => ((item[tag] || {}).Value || [""])[0];

  function stowBody(file, boundary) {
    return new Blob([`--${boundary}\r\nContent-Type: application/dicom\r\n\r\n`, file, `\r\n--${boundary}--\r\n`]);
  }

  async function stow(file) {
    const boundary = "pacsd-" + crypto.getRandomValues(new Uint32Array(4)).join("-");
    const response = await fetch("/dicom-web/studies", {
      method: "POST", body: stowBody(file, boundary), credentials: "same-origin",
      headers: { "Content-Type": `multipart/related; type="application/dicom"; boundary=${boundary}`,
                 "Accept": "application/dicom+json", "X-CSRF-Token": csrf },
    });
    const answer = await response.json().catch(() => ({ error: response.statusText }));
    if (answer.error) { row(file.name, answer.error, false); return; }
    for (const item of (answer[REFERENCED] || {}).Value || []) row(file.name, `stored (${first(item, SOP_INSTANCE)})`, true);
    for (const item of (answer[FAILED] || {}).Value || []) row(file.name, `refused: ${first(item, TEXT_VALUE)}`, false);
  }

  async function uploadAll(files) {
    progress.hidden = false; progress.max = files.length; progress.value = 0;
    for (const file of files) {
      try { await stow(file); } catch (error) { row(file.name, String(error), false); }
      progress.value += 1;
    }
  }

  zone.addEventListener("dragover", (event) => { event.preventDefault(); zone.classList.add("over"); });
  zone.addEventListener("dragleave", () => zone.classList.remove("over"));
  zone.addEventListener("drop", (event) => {
    event.preventDefault(); zone.classList.remove("over");
    uploadAll([...event.dataTransfer.files]);
  });
  document.getElementById("file-input").addEventListener("change", (event) => uploadAll([...event.target.files]));
})();
