// Patient pages: the DICOM upload on the timeline, sent with fetch so the session's CSRF token goes in a header
// (a form field would make HQ read the whole file before checking it). No build step, no dependencies.
"use strict";

(function () {
  const form = document.getElementById("imaging-upload");
  if (!form) return;
  const state = form.querySelector(".upload-state");
  const csrf = document.querySelector('meta[name="csrf-token"]');

  form.addEventListener("submit", function (event) {
    event.preventDefault();
    const input = form.querySelector('input[type="file"]');
    const file = input.files && input.files[0];
    if (!file) return;
    const limit = Number(form.dataset.maxBytes || "0");
    if (limit && file.size > limit) {
      state.textContent = "Too large: " + file.size.toLocaleString() + " bytes (at most " +
        limit.toLocaleString() + ").";
      state.className = "upload-state error";
      return;
    }
    const body = new FormData();
    body.append("file", file, file.name);
    state.textContent = "Uploading " + file.name + "\u2026";
    state.className = "upload-state busy";
    fetch(form.action, {method: "POST", body: body,
                        headers: {"X-CSRF-Token": csrf ? csrf.content : "", Accept: "application/json"}})
      .then(function (r) { return r.json().then(function (doc) { return {ok: r.ok, doc: doc}; }); })
      .then(function (res) {
        if (!res.ok) {
          state.textContent = "Not filed: " + (res.doc.error || "upload failed");
          state.className = "upload-state error";
          return;
        }
        const what = [res.doc.modality, res.doc.study_description].filter(Boolean).join(" \u00b7 ");
        state.textContent = (res.doc.duplicate ? "Already filed: " : "Filed: ") + (what || file.name);
        state.className = "upload-state done";
        setTimeout(function () { location.reload(); }, 600);
      })
      .catch(function (err) {
        state.textContent = "Upload failed: " + err;
        state.className = "upload-state error";
      });
  });
})();
