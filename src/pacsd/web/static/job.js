// A background job's page: polls its state once a second until it is no longer running.
"use strict";
(function () {
  const id = document.getElementById("job").dataset.job;
  function poll() {
    fetch(`/ui/jobs/${id}.json`, { credentials: "same-origin" }).then((r) => r.json()).then((job) => {
      const progress = document.getElementById("job-progress");
      progress.max = Math.max(job.total, 1);
      progress.value = job.done;
      document.getElementById("job-count").textContent = `${job.done} of ${job.total} files`;
      const state = document.getElementById("job-state");
      state.textContent = job.state === "running" ? "running…" : `${job.state}: ${job.message}`;
      state.className = "big " + (job.state === "finished" ? "ok" : job.state === "failed" ? "failed" : "");
      document.getElementById("job-problems").replaceChildren(...job.problems.map((text) => {
        const li = document.createElement("li"); li.textContent = text; return li;
      }));
      if (job.state === "running") setTimeout(poll, 1000);
    });
  }
  poll();
})();
