// Console forms that upload a file (multipart, marked data-upload): sent with fetch so the session's CSRF token
// travels in the X-CSRF-Token header (HQ reads a multipart body for its csrf_token field only up to 1 MiB, so a
// larger file posted as a plain form is refused), and the page HQ answers with takes this one's place. Without
// script the form posts as usual, for files up to 1 MiB. No build step, no dependencies.
"use strict";

(function () {
  const csrf = document.querySelector('meta[name="csrf-token"]');

  function problem(form, text) {
    let state = form.querySelector(".upload-state");
    if (!state) {
      state = document.createElement("span");
      state.setAttribute("role", "status");
      form.appendChild(state);
    }
    state.textContent = text;
    state.className = "upload-state error";
  }

  // On the document, not the form: the answer replaces the body, and its form must work the same way.
  document.addEventListener("submit", function (event) {
    const form = event.target;
    if (!(form instanceof HTMLFormElement) || !form.hasAttribute("data-upload")) return;
    event.preventDefault();
    const button = form.querySelector('button[type="submit"]');
    if (button) button.disabled = true;
    fetch(form.action, {method: "POST", body: new FormData(form), credentials: "same-origin",
                        headers: {"X-CSRF-Token": csrf ? csrf.content : ""}})
      .then(function (r) { return r.text(); })
      .then(function (text) {
        const answer = new DOMParser().parseFromString(text, "text/html");
        document.title = answer.title;
        document.body.replaceWith(answer.body);
      })
      .catch(function (err) {
        if (button) button.disabled = false;
        problem(form, "Upload failed: " + err);
      });
  });
})();
