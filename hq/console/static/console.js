// Clinic HQ console: live tiles and trend charts over the /ws WebSocket. No build step, no dependencies.
"use strict";

(function () {
  const page = JSON.parse(document.body.dataset.page || "{}");
  const MAX_POINTS = 2000;
  const series = new Map(); // metric -> {points: [[ms, value, key]], keys: Set}
  // The patient page shows one HQ patient, whose readings carry its record number at each clinic.
  const patientKeys = page.patient_keys || (page.patient_id ? [{clinic_id: null, patient_id: page.patient_id}] : []);
  function isOurs(item) {
    return patientKeys.some(function (k) {
      return k.patient_id === item.patient_id && (k.clinic_id === null || k.clinic_id === item.clinic_id);
    });
  }
  function tileSelector(item) {
    return ".tile" + sel("data-patient", item.patient_id) + sel("data-clinic", item.clinic_id) +
      sel("data-metric", item.metric);
  }

  function el(tag, attrs, text) {
    const node = document.createElement(tag);
    for (const [k, v] of Object.entries(attrs || {})) node.setAttribute(k, v);
    if (text !== undefined) node.textContent = text;
    return node;
  }
  function sel(attr, value) { return "[" + attr + '="' + CSS.escape(value) + '"]'; }
  function formatValue(v) {
    if (v === null || v === undefined) return "\u2014";
    return Number.isInteger(v) ? String(v) : v.toFixed(1);
  }
  function label(metric) {
    // The server's label table (hq/console/html.py METRIC_LABELS) comes with the page data.
    if (page.labels && page.labels[metric]) return page.labels[metric];
    const words = metric.replace(/^MDC_/, "").toLowerCase().split("_");
    return words.map(function (w) { return w.charAt(0).toUpperCase() + w.slice(1); }).join(" ");
  }

  // ---- tiles -------------------------------------------------------------------------------
  function patientContainer(item) {
    let block = document.querySelector(".patient" + sel("data-patient", item.patient_id) +
                                        sel("data-clinic", item.clinic_id));
    if (block) return block.querySelector(".tiles");
    if (page.view !== "fleet") return null;
    const clinic = clinicSection(item.clinic_id);
    block = el("div", {class: "patient", "data-patient": item.patient_id, "data-clinic": item.clinic_id});
    const href = "/patients/lookup?" + new URLSearchParams({clinic_id: item.clinic_id, mrn: item.patient_id});
    const link = el("a", {class: "patient-link", href: href}, item.patient_id);
    block.append(link, el("div", {class: "tiles"}));
    clinic.querySelector(".patients").prepend(block);
    return block.querySelector(".tiles");
  }

  function clinicSection(clinicId) {
    let section = document.querySelector("section.clinic" + sel("data-clinic", clinicId));
    if (section) return section;
    const empty = document.querySelector("#clinics .empty");
    if (empty) empty.remove();
    section = el("section", {class: "clinic", "data-clinic": clinicId});
    section.append(el("h2", {}, clinicId), el("div", {class: "gateways"}),
                   el("h3", {}, "Patients seen recently"), el("div", {class: "patients"}));
    document.getElementById("clinics").append(section);
    return section;
  }

  function updateTile(item) {
    if (!item.patient_id) return;
    let tile = document.querySelector(tileSelector(item));
    if (!tile) {
      const container = patientContainer(item);
      if (!container) return;
      tile = el("div", {class: "tile", "data-patient": item.patient_id, "data-clinic": item.clinic_id,
                        "data-metric": item.metric});
      const reading = el("div", {class: "reading"});
      reading.append(el("span", {class: "value"}), " ", el("span", {class: "unit"}));
      tile.append(el("div", {class: "label"}, label(item.metric)), reading, el("time", {class: "time"}));
      container.append(tile);
      if (page.view === "patient") ensureChart(item.metric);
    }
    const time = tile.querySelector(".time");
    if (time.getAttribute("datetime") && time.getAttribute("datetime") > item.time) return; // older backlog
    tile.querySelector(".value").textContent = formatValue(item.value);
    const unit = tile.querySelector(".unit");
    unit.textContent = (page.units && page.units[item.unit]) || item.unit || "";
    unit.title = item.unit || "";
    time.setAttribute("datetime", item.time);
    time.textContent = item.time;
    tile.classList.remove("fresh");
    void tile.offsetWidth; // restart the highlight animation
    tile.classList.add("fresh");
  }

  function showGap(item) {
    const card = document.querySelector(".gateway" + sel("data-gateway", item.gateway_id));
    const list = page.view === "fleet" ? card && card.querySelector(".gaps") : document.getElementById("gaps");
    if (!list || !item.gap || (page.view === "patient" && !isOurs(item))) return;
    list.prepend(el("li", {class: "gap", "data-device": item.device_id}, item.gap.text));
    while (list.children.length > 50) list.lastChild.remove();
  }

  function showAlarm(item) {
    if (!item.patient_id) return;
    const tile = document.querySelector(tileSelector(item));
    const active = !item.alarm || item.alarm.state !== "inactive";
    if (tile) tile.classList.toggle("alarming", active);
    const list = document.getElementById("alarms");
    if (!list) return;
    const a = item.alarm || {};
    const li = el("li", {class: "alarm priority-" + (a.priority || "none"), "data-metric": item.metric});
    li.append(el("time", {}, item.time), " ", el("strong", {}, label(item.metric)), " ",
              (a.text || a.event || "") + " ", el("small", {}, a.state || ""));
    list.prepend(li);
    while (list.children.length > 50) list.lastChild.remove();
  }

  // ---- gateways ----------------------------------------------------------------------------
  function updateGateway(gw) {
    let card = document.querySelector(".gateway" + sel("data-gateway", gw.gateway_id));
    if (!card) {
      if (page.view !== "fleet") return;
      card = el("div", {class: "gateway", "data-gateway": gw.gateway_id});
      const head = el("div", {class: "gateway-head"});
      head.append(el("strong", {}, gw.gateway_id), " ", el("span", {class: "badge"}));
      const meta = el("div", {class: "meta"});
      meta.append("last contact ", el("time", {class: "last-contact"}), " \u00b7 backlog ",
                  el("span", {class: "backlog"}), " \u00b7 ", el("span", {class: "software"}));
      card.append(head, meta, el("ul", {class: "lanes"}), el("ul", {class: "devices"}), el("ul", {class: "gaps"}));
      clinicSection(gw.clinic_id).querySelector(".gateways").append(card);
    }
    const badge = card.querySelector(".badge");
    badge.className = "badge " + gw.status;
    badge.textContent = gw.status;
    card.querySelector(".last-contact").textContent = gw.last_contact || "never";
    const backlog = card.querySelector(".backlog");
    backlog.textContent = gw.backlog_summary;
    backlog.dataset.count = String(gw.backlog);
    card.querySelector(".software").textContent = gw.software || "";
    card.querySelector(".lanes").replaceChildren(...Object.entries(gw.backlog_by_lane)
      .filter(function (entry) { return entry[1].count > 0; })
      .map(function (entry) { return el("li", {"data-lane": entry[0]}, entry[1].summary); }));
    const list = card.querySelector(".devices");
    list.replaceChildren(...gw.devices.map(function (d) {
      const li = el("li", {class: "device state-" + d.state, "data-device": d.device_id}, d.device_id + " ");
      li.append(el("small", {}, d.protocol + " \u00b7 " + d.state));
      return li;
    }));
  }

  // ---- trend charts ------------------------------------------------------------------------
  function ensureChart(metric) {
    if (document.querySelector("svg.chart" + sel("data-metric", metric))) return;
    const fig = el("figure", {class: "trend", "data-metric": metric});
    fig.append(el("figcaption", {}, label(metric)));
    const svg = document.createElementNS("http://www.w3.org/2000/svg", "svg");
    for (const [k, v] of Object.entries({class: "chart", "data-metric": metric, "data-points": "0",
                                          viewBox: "0 0 600 160", preserveAspectRatio: "none"})) {
      svg.setAttribute(k, v);
    }
    fig.append(svg);
    document.getElementById("charts").append(fig);
    loadSeries(metric);
  }

  function seriesFor(metric) {
    if (!series.has(metric)) series.set(metric, {points: [], keys: new Set()});
    return series.get(metric);
  }

  function addPoints(metric, items) {
    const s = seriesFor(metric);
    for (const item of items) {
      const key = item.gateway_id + "/" + item.seq;
      if (item.value === null || s.keys.has(key)) continue;
      s.keys.add(key);
      s.points.push([Date.parse(item.time), item.value, key]);
    }
    s.points.sort(function (a, b) { return a[0] - b[0]; });
    while (s.points.length > MAX_POINTS) s.keys.delete(s.points.shift()[2]);
    draw(metric);
  }

  function draw(metric) {
    const svg = document.querySelector("svg.chart" + sel("data-metric", metric));
    if (!svg) return;
    const pts = seriesFor(metric).points;
    svg.setAttribute("data-points", String(pts.length));
    const ns = "http://www.w3.org/2000/svg";
    svg.replaceChildren();
    if (!pts.length) return;
    const t0 = pts[0][0], t1 = Math.max(pts[pts.length - 1][0], t0 + 1);
    let lo = Math.min(...pts.map(function (p) { return p[1]; }));
    let hi = Math.max(...pts.map(function (p) { return p[1]; }));
    if (hi - lo < 1) { hi += 0.5; lo -= 0.5; }
    const x = function (t) { return 40 + (t - t0) / (t1 - t0) * 550; };
    const y = function (v) { return 150 - (v - lo) / (hi - lo) * 140; };
    const line = document.createElementNS(ns, "polyline");
    line.setAttribute("points", pts.map(function (p) { return x(p[0]).toFixed(1) + "," + y(p[1]).toFixed(1); }).join(" "));
    line.setAttribute("class", "line");
    svg.append(line);
    const last = pts[pts.length - 1];
    const dot = document.createElementNS(ns, "circle");
    dot.setAttribute("cx", x(last[0]).toFixed(1));
    dot.setAttribute("cy", y(last[1]).toFixed(1));
    dot.setAttribute("r", "3");
    dot.setAttribute("class", "last");
    svg.append(dot);
    for (const [v, yy] of [[hi, 12], [lo, 156]]) {
      const text = document.createElementNS(ns, "text");
      text.setAttribute("x", "2");
      text.setAttribute("y", String(yy));
      text.setAttribute("class", "axis");
      text.textContent = formatValue(Math.round(v * 10) / 10);
      svg.append(text);
    }
  }

  function loadSeries(metric) {
    for (const key of patientKeys) {
      const q = new URLSearchParams({patient_id: key.patient_id, metric: metric, kind: "observation",
                                     since: page.trend_since, limit: String(MAX_POINTS), order: "desc"});
      if (key.clinic_id) q.set("clinic_id", key.clinic_id);
      fetch("/api/v1/observations?" + q.toString(), {headers: {Accept: "application/json"}})
        .then(function (r) { return r.ok ? r.json() : Promise.reject(new Error("HTTP " + r.status)); })
        .then(function (doc) { addPoints(metric, doc.observations); })
        .catch(function (err) { console.warn("trend for", metric, "not loaded:", err); });
    }
  }

  // ---- the live connection -----------------------------------------------------------------
  function onMessage(msg) {
    if (msg.type === "gateway") {
      updateGateway(msg.gateway);
    } else if (msg.type === "observations") {
      const byMetric = new Map();
      for (const item of msg.items) {
        if (item.kind === "observation") {
          updateTile(item);
          if (page.view === "patient" && isOurs(item)) {
            if (!byMetric.has(item.metric)) byMetric.set(item.metric, []);
            byMetric.get(item.metric).push(item);
          }
        } else if (item.kind === "alarm") {
          showAlarm(item);
        } else if (item.kind === "gap") {
          showGap(item);
        }
      }
      for (const [metric, items] of byMetric) {
        ensureChart(metric);
        addPoints(metric, items);
      }
    }
  }

  function subscription() {
    const keys = patientKeys.filter(function (k) { return k.clinic_id !== null; });
    return page.view !== "patient" ? {} : keys.length ? {patients: keys} : {patient_id: page.patient_id};
  }

  if (page.view === "patient") {
    document.querySelectorAll("svg.chart").forEach(function (svg) { loadSeries(svg.dataset.metric); });
  }
  window.hqLive.connect(subscription, onMessage);
})();
