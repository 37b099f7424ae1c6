// Clinic HQ console, schedule pages: times in the browser's own zone, the clinic's zone in request forms, and
// live updates of appointments (booked, delivered to the clinic's gateway, reminded, decided) over /ws.
"use strict";

(function () {
  const page = JSON.parse(document.body.dataset.page || "{}");
  const zone = Intl.DateTimeFormat().resolvedOptions().timeZone || "UTC";
  const LABELS = {booked: "Booked", pending_approval: "Waiting for a department head", rejected: "Not approved",
                  cancelled: "Cancelled"};
  const format = new Intl.DateTimeFormat(undefined, {weekday: "short", day: "numeric", month: "short",
                                                     year: "numeric", hour: "2-digit", minute: "2-digit",
                                                     timeZoneName: "short"});

  function localTime(node) {
    const at = new Date(node.getAttribute("datetime"));
    if (!isNaN(at.getTime())) {
      node.title = node.textContent;  // the UTC text stays at hand
      node.textContent = format.format(at);
    }
  }
  function timeNode(iso) {
    const node = document.createElement("time");
    node.className = "local";
    node.setAttribute("datetime", iso);
    node.textContent = iso;
    localTime(node);
    return node;
  }

  document.querySelectorAll("time.local").forEach(localTime);
  document.querySelectorAll("input[data-browser-zone]").forEach(function (input) {
    if (!input.value || input.value === "UTC") input.value = zone;
  });

  function confirmationText(a) {
    if (a.status !== "booked") return null;
    if (a.confirmed) {
      const span = document.createElement("span");
      span.append("delivered to the clinic's gateway ", timeNode(a.confirmed));
      return span;
    }
    return "waiting for the clinic's gateway to confirm";
  }

  function apply(msg) {
    const a = msg.appointment;
    const events = document.getElementById("live-events");
    if (events && msg.text) {
      const item = document.createElement("li");
      item.dataset.event = msg.event;
      item.dataset.appointment = String(a.appointment_id);
      item.textContent = msg.text;
      events.prepend(item);
    }
    document.querySelectorAll('[data-appointment="' + a.appointment_id + '"]').forEach(function (node) {
      const status = node.querySelector(".status");
      if (status) status.textContent = LABELS[a.status] || a.status;
      const cell = node.querySelector(".confirmation");
      if (cell) cell.replaceChildren(confirmationText(a) || "");
    });
    if (page.view === "appointment" && page.appointment_id === a.appointment_id) {
      const status = document.getElementById("status");
      if (status) status.textContent = LABELS[a.status] || a.status;
      const confirmation = document.getElementById("confirmation");
      if (confirmation) confirmation.replaceChildren(confirmationText(a) || "");
      const reminder = document.getElementById("reminder");
      if (reminder && a.reminded) reminder.replaceChildren(timeNode(a.reminded));
    }
  }

  window.hqLive.connect(function () { return {kinds: []}; },  // no vitals here: appointment news only
                        function (msg) { if (msg.type === "appointment") apply(msg); });
})();
