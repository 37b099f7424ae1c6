// Clinic staff screen: keeps the HQ link badge and consultation states current by polling the gateway's
// own JSON API (it is on the LAN, next to the screen). No build step, no dependencies.
"use strict";

(function () {
  const page = JSON.parse(document.body.dataset.page || "{}");

  function getJson(path) {
    return fetch(path, {headers: {Accept: "application/json"}, cache: "no-store"})
      .then(function (r) { return r.ok ? r.json() : Promise.reject(new Error("HTTP " + r.status)); });
  }

  function showLink(connected) {
    const badge = document.getElementById("link-state");
    if (!badge) return;
    badge.className = "link " + (connected ? "up" : "down");
    badge.textContent = connected ? "HQ link: connected" : "HQ link: offline (work is queued and sent later)";
  }

  function setState(node, state, text) {
    if (!node || (node.dataset.state === state && node.textContent === text)) return;
    node.dataset.state = state;
    node.textContent = text;
    node.className = node.className.replace(/\bstate-\S+/g, "").trim() + " state-" + state;
  }

  function refreshConsultation() {
    getJson("/api/v1/consultations/" + encodeURIComponent(page.public_id)).then(function (c) {
      setState(document.getElementById("state"), c.state, c.text);
      // The report, the follow-up forms and a sent form change the page's structure: reload for them.
      const needsReload = (c.report && !document.getElementById("report")) ||
        (c.form && !document.querySelector(".form-done")) ||
        (c.form && c.form_queued === false && document.querySelector(".form-state") &&
         document.querySelector(".form-state").textContent.indexOf("queued") === 0);
      if (needsReload) location.reload();
    }).catch(function () {});
  }

  function refreshList() {
    getJson("/api/v1/consultations").then(function (doc) {
      for (const c of doc.consultations) {
        const item = document.querySelector('.consultation[data-public-id="' + CSS.escape(c.public_id) + '"] .state');
        setState(item, c.state, c.text);
      }
    }).catch(function () {});
  }

  function tick() {
    getJson("/api/v1/status").then(function (s) { showLink(s.connected); }).catch(function () { showLink(false); });
    if (page.view === "consultation") refreshConsultation();
    if (page.view === "home" || page.view === "consultations") refreshList();
  }

  setInterval(tick, 1000);
})();
