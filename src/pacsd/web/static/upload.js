// Upload by drag and drop or file picker: each file is POSTed (with the CSRF token) and stored
// through the archive's ingest path; the table shows each file's result.
"use strict";
(function () {
  const csrf = document.querySelector('meta[name="csrf-token"]').content;
  const zone = document.getElementById("dropzone");
  const progress = document.getElementById("upload-progress");
  const body = document.querySelector("#upload-results tbody");

  function row(name, text, ok) {
    const tr = document.createElement("tr");
    for (const value of [name, text]) { const td = document.createElement("td"); td.textContent = value; tr.appendChild(td); }
    tr.lastChild.className = ok ? "ok" : "failed";
    body.appendChild(tr);
  }

  async function uploadAll(files) {
    progress.hidden = false; progress.max = files.length; progress.value = 0;
    for (const file of files) {
      const form = new FormData();
      form.append("files", file, file.name);
      try {
        const response = await fetch("/ui/upload", { method: "POST", body: form, credentials: "same-origin",
                                                      headers: { "X-CSRF-Token": csrf } });
        const answer = await response.json();
        if (!answer.results) row(file.name, answer.error || response.statusText, false);
        for (const r of answer.results || [])
          row(r.file, r.ok ? `${r.action} (${r.sop_instance_uid})` : `refused: ${r.reason}`, r.ok);
      } catch (error) { row(file.name, String(error), false); }
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
