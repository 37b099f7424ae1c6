// Clinic HQ console, consultations: an expert's offers appear, are accepted or withdrawn live; a session's chat,
// stages and advice; the actions go to the JSON API with the session's CSRF token. No build step.
"use strict";

(function () {
  const page = JSON.parse(document.body.dataset.page || "{}");
  const csrf = (document.querySelector('meta[name="csrf-token"]') || {}).content || "";

  function el(tag, attrs, text) {
    const node = document.createElement(tag);
    for (const [k, v] of Object.entries(attrs || {})) node.setAttribute(k, v);
    if (text !== undefined && text !== null) node.textContent = text;
    return node;
  }
  function byPid(selector, pid) { return document.querySelector(selector + '[data-public-id="' + CSS.escape(pid) + '"]'); }

  function api(method, path, body) {
    return fetch(path, {method: method, headers: {"Content-Type": "application/json", "Accept": "application/json",
                                                  "X-CSRF-Token": csrf},
                        body: body === undefined ? undefined : JSON.stringify(body)})
      .then(function (r) {
        return r.json().catch(function () { return {}; }).then(function (doc) {
          if (!r.ok) { const err = new Error(doc.error || ("HTTP " + r.status)); err.doc = doc; throw err; }
          return doc;
        });
      });
  }

  // ---- offers (the list page) ---------------------------------------------------------------
  function offerCard(offer) {
    const c = offer.consultation;
    const card = el("div", {class: "offer", "data-public-id": c.public_id});
    card.append(el("h3", {}, (c.kind.charAt(0).toUpperCase() + c.kind.slice(1)) + " from " + c.clinic),
                el("p", {}, (c.patient || "patient not identified") + " \u00b7 " + (c.chief_complaint || "no details yet")),
                el("p", {class: "why"}, "Why you: "));
    const reasons = el("ul", {class: "reasons"});
    for (const r of offer.offer.reasons) reasons.append(el("li", {}, r));
    card.append(reasons, el("p", {class: "expires"}, "Round " + offer.offer.round + ", open until " + (offer.offer.expires || "")));
    card.append(el("button", {type: "button", class: "accept"}, "Accept"), " ",
                el("button", {type: "button", class: "decline"}, "Decline"), el("p", {class: "outcome"}));
    return card;
  }

  function showOffer(offer) {
    const offers = document.getElementById("offers");
    if (!offers) return;
    const old = byPid(".offer", offer.consultation.public_id);
    const card = offerCard(offer);
    if (old) old.replaceWith(card); else offers.prepend(card);
    updateNoOffers();
  }

  function closeOffer(pid, outcome, reason) {
    const card = byPid(".offer", pid);
    if (!card) return;
    card.classList.add("closed", outcome);
    card.querySelectorAll("button").forEach(function (b) { b.disabled = true; });
    card.querySelector(".outcome").textContent = (outcome === "expired" ? "Expired: " : "Withdrawn: ") + reason;
    updateNoOffers();
  }

  function updateNoOffers() {
    const none = document.getElementById("no-offers");
    if (none) none.hidden = !!document.querySelector(".offer:not(.closed)");
  }

  document.addEventListener("click", function (ev) {
    const button = ev.target.closest(".offer button");
    if (!button) return;
    const card = button.closest(".offer");
    const pid = card.dataset.publicId;
    const action = button.classList.contains("accept") ? "accept" : "decline";
    card.querySelectorAll("button").forEach(function (b) { b.disabled = true; });
    api("POST", "/api/v1/consultations/" + encodeURIComponent(pid) + "/" + action).then(function () {
      if (action === "accept") { location.href = "/consultations/" + encodeURIComponent(pid); return; }
      closeOffer(pid, "declined", "you declined");
    }).catch(function (err) { closeOffer(pid, "withdrawn", err.message); });
  });

  function updateRow(c) {
    const table = document.querySelector("#consultations tbody");
    if (!table) return;
    let row = byPid("tr.consultation", c.public_id);
    if (!row) {
      row = el("tr", {class: "consultation", "data-public-id": c.public_id});
      const link = el("a", {href: "/consultations/" + encodeURIComponent(c.public_id)}, c.kind);
      const first = el("td");
      first.append(link);
      row.append(first, el("td", {class: "status"}), el("td", {}, c.clinic), el("td", {}, c.patient || c.mrn || ""),
                 el("td", {}, c.chief_complaint || ""), el("td", {class: "expert"}), el("td", {}, c.requested));
      table.prepend(row);
    }
    const status = row.querySelector(".status");
    status.replaceChildren(el("span", {class: "badge status-" + c.status, "data-status": c.status}, c.status.replace("_", " ")));
    if (c.form_overdue) status.append(" ", el("span", {class: "badge overdue"}, "form overdue"));
    row.querySelector(".expert").textContent = c.expert || "";
  }

  // ---- the session page ------------------------------------------------------------------------
  function addMessage(m) {
    const chat = document.getElementById("chat");
    if (!chat || chat.querySelector('[data-id="' + m.id + '"]')) return;
    const li = el("li", {class: "message " + m.kind, "data-id": String(m.id)});
    li.append(el("strong", {}, m.author), " ", el("span", {class: "body"}, m.body), " ", el("time", {}, m.at));
    chat.append(li);
  }

  function showSession(c) {
    const status = document.querySelector("#status .badge");
    if (status) { status.className = "badge status-" + c.status; status.dataset.status = c.status; status.textContent = c.status.replace("_", " "); }
    const expert = document.getElementById("expert-name");
    if (expert) expert.textContent = c.expert || "";
    document.querySelectorAll("#stages li").forEach(function (li) { li.classList.toggle("current", li.dataset.stage === c.stage); });
    page.status = c.status;
  }

  const advice = page.advice ? page.advice.slice() : [];
  function describeItem(item) {
    const b = item.body;
    if (item.kind === "drug") return "Drug: " + [b.name, b.dose, b.route, b.frequency, b.duration].join(", ");
    if (item.kind === "procedure") return "Procedure: " + b.name + " (" + b.steps.join("; ") + ")";
    if (item.kind === "diagnosis") return "Diagnosis: " + b.code + (b.title ? " " + b.title : "") + " (" + b.certainty + ")";
    return "Note: " + b.text;
  }
  function drawAdvice() {
    const list = document.getElementById("advice-items");
    if (!list) return;
    list.replaceChildren(...advice.map(function (item, i) {
      const li = el("li", {class: "advice-item " + item.kind}, describeItem(item) + " ");
      const remove = el("button", {type: "button", class: "remove"}, "Remove");
      remove.addEventListener("click", function () { advice.splice(i, 1); drawAdvice(); });
      li.append(remove);
      return li;
    }));
  }
  function fieldsOf(fieldset) {
    const out = {kind: fieldset.dataset.kind};
    fieldset.querySelectorAll("input, select, textarea").forEach(function (input) {
      if (input.name === "steps") out.steps = input.value.split("\n").filter(function (s) { return s.trim(); });
      else if (input.value.trim()) out[input.name] = input.value.trim();
    });
    return out;
  }
  function clearFields(fieldset) {
    fieldset.querySelectorAll("input, textarea").forEach(function (input) { input.value = ""; });
  }

  function bindSession() {
    const pid = page.public_id;
    const base = "/api/v1/consultations/" + encodeURIComponent(pid);
    (page.messages || []).forEach(addMessage);
    drawAdvice();
    const chatForm = document.getElementById("chat-form");
    if (chatForm) chatForm.addEventListener("submit", function (ev) {
      ev.preventDefault();
      const input = chatForm.querySelector("input[name=body]");
      api("POST", base + "/messages", {body: input.value}).then(function (m) { addMessage(m); input.value = ""; })
        .catch(function (err) { alert(err.message); });
    });
    document.querySelectorAll("button.stage").forEach(function (button) {
      button.addEventListener("click", function () {
        api("POST", base + "/stage", {stage: button.dataset.stage}).then(showSession).catch(function (err) { alert(err.message); });
      });
    });
    document.querySelectorAll("#advice-editor fieldset button.add").forEach(function (button) {
      button.addEventListener("click", function () {
        const fieldset = button.closest("fieldset");
        const item = fieldsOf(fieldset);
        advice.push({kind: item.kind, body: item, pending: true});
        clearFields(fieldset);
        drawAdvice();
      });
    });
    const save = document.getElementById("save-advice");
    function saveAdvice() {
      const items = advice.map(function (a) { return a.pending ? a.body : Object.assign({kind: a.kind}, a.body); });
      document.getElementById("advice-error").textContent = "";
      return api("PUT", base + "/advice", {items: items}).then(function (doc) {
        advice.splice(0, advice.length, ...doc.advice);
        drawAdvice();
        document.getElementById("advice-saved").textContent = "Advice saved (" + doc.advice.length + " items).";
      }).catch(function (err) { document.getElementById("advice-error").textContent = err.message; throw err; });
    }
    if (save) save.addEventListener("click", function () { saveAdvice().catch(function () {}); });
    const issue = document.getElementById("issue-report");
    if (issue) issue.addEventListener("click", function () {
      document.getElementById("report-error").textContent = "";
      saveAdvice().then(function () {
        return api("POST", base + "/report", {opinion: document.getElementById("opinion").value});
      }).then(function (report) {
        const li = el("li", {"data-version": String(report.version)}, "Version " + report.version + " ");
        li.append(el("a", {href: base + "/reports/" + report.version + ".pdf"}, "PDF"), " ",
                  el("a", {href: base + "/reports/" + report.version + ".html"}, "HTML"));
        document.getElementById("reports").append(li);
      }).catch(function (err) { document.getElementById("report-error").textContent = err.message; });
    });
    const rating = document.getElementById("rating-form");
    if (rating) rating.addEventListener("submit", function (ev) {
      ev.preventDefault();
      api("POST", base + "/rating", {rating: Number(rating.rating.value), comment: rating.comment.value})
        .then(function (c) { document.getElementById("rating-state").textContent = "Rated " + c.rating + "/5"; })
        .catch(function (err) { document.getElementById("rating-state").textContent = err.message; });
    });
    const adoption = document.getElementById("adoption-form");
    if (adoption) adoption.addEventListener("submit", function (ev) {
      ev.preventDefault();
      api("POST", base + "/adoption", {adopted: adoption.adopted.value === "true", note: adoption.note.value})
        .then(function (c) { document.getElementById("adoption-state").textContent = c.advice_adopted ? "Advice adopted." : "Advice not adopted."; })
        .catch(function (err) { document.getElementById("adoption-state").textContent = err.message; });
    });
  }

  // ---- requesting (list page) -------------------------------------------------------------------
  const requestForm = document.getElementById("new-consultation");
  if (requestForm) requestForm.addEventListener("submit", function (ev) {
    ev.preventDefault();
    const body = {};
    new FormData(requestForm).forEach(function (v, k) { if (String(v).trim()) body[k] = String(v).trim(); });
    api("POST", "/api/v1/consultations", body).then(function (c) { location.href = "/consultations/" + encodeURIComponent(c.public_id); })
      .catch(function (err) { document.getElementById("request-error").textContent = err.message; });
  });

  // ---- live ---------------------------------------------------------------------------------------
  function onMessage(msg) {
    if (msg.type === "subscribed") {
      // Offers made while the socket was (re)connecting.
      if (document.getElementById("offers")) api("GET", "/api/v1/offers").then(function (doc) {
        doc.offers.forEach(function (o) { if (!byPid(".offer", o.consultation.public_id)) showOffer(o); });
      }).catch(function () {});
    }
    else if (msg.type === "consultation.offer") showOffer(msg);
    else if (msg.type === "consultation.offer_closed") closeOffer(msg.public_id, msg.outcome, msg.reason);
    else if (msg.type === "consultation.update") {
      updateRow(msg.consultation);
      if (page.view === "consultation" && msg.consultation.public_id === page.public_id) showSession(msg.consultation);
    } else if (msg.type === "consultation.message" && msg.public_id === page.public_id) addMessage(msg.message);
    else if (msg.type === "consultation.escalated" || msg.type === "consultation.form_overdue") {
      const box = document.getElementById("escalations");
      if (box) box.prepend(el("p", {class: "escalation"}, (msg.type === "consultation.escalated" ?
        "Escalated (round " + msg.round + (msg.exhausted ? ", no expert left" : "") + "): " : "Short form overdue: ") +
        msg.consultation.kind + " from " + msg.consultation.clinic));
      updateRow(msg.consultation);
    }
  }

  updateNoOffers();
  if (page.view === "consultation") bindSession();
  window.hqLive.connect(function () { return {kinds: ["event"]}; }, onMessage);
})();
