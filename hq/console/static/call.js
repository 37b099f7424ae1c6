// A consultation's call in the console: WebRTC with the clinic's gateway, signalled through HQ's WebSocket.
// Media flows browser <-> gateway (STUN/TURN from HQ); HQ relays offers, answers and candidates. After a change
// of network the page dials again under the same participant (no re-join). No build step, no dependencies.
"use strict";

(function () {
  const page = JSON.parse(document.body.dataset.page || "{}");
  if (page.view !== "call") return;
  const store = sessionStorage;
  const key = "call:" + page.consultation;
  let me = JSON.parse(store.getItem(key) || "null");  // {peer, token}
  let ws = null, pc = null, joined = null, local = null, pending = [], ended = false;
  let disconnectedTimer = null, dials = 0;

  function el(tag, attrs, text) {
    const node = document.createElement(tag);
    for (const [k, v] of Object.entries(attrs || {})) node.setAttribute(k, v);
    if (text !== undefined) node.textContent = text;
    return node;
  }
  function slotNames(slots) {
    const counts = {};
    return slots.map(function (role) {
      const i = counts[role] || 0;
      counts[role] = i + 1;
      return (role === "camera" || role === "party-audio" || role === "party-video") ? role + "-" + i : role;
    });
  }
  function bySlot(slot) { return document.querySelector('[data-slot="' + CSS.escape(slot) + '"]'); }
  function setText(id, text) { const n = document.getElementById(id); if (n) n.textContent = text; }
  function send(doc) { if (ws && ws.readyState === WebSocket.OPEN) ws.send(JSON.stringify(doc)); else pending.push(doc); }
  function fmt(v) { return v === undefined || v === null ? "\u2014" : (typeof v === "number" ? v.toFixed(1) : String(v)); }

  // ---- signalling --------------------------------------------------------------------------
  function connectSocket() {
    window.hqLive.reconnecting(page.ws, {
      open: function (socket) {
        ws = socket;
        ws.send(JSON.stringify(Object.assign({type: "join"}, me || {})));
      },
      message: onSignal,
      again: function () { return !ended; },  // a dropped socket resumes, it does not leave
    });
  }

  function onSignal(msg) {
    if (msg.type === "joined") {
      joined = msg;
      me = {peer: msg.peer, token: msg.token};
      store.setItem(key, JSON.stringify(me));
      const queued = pending; pending = [];
      queued.forEach(send);
      if (!pc || pc.connectionState === "failed" || pc.connectionState === "closed") dial();
    } else if (msg.type === "answer" && pc) {
      pc.setRemoteDescription({type: "answer", sdp: msg.sdp}).catch(function (err) { note("answer: " + err); });
    } else if (msg.type === "candidate" && pc) {
      pc.addIceCandidate(msg.candidate || null).catch(function () {});
    } else if (msg.type === "state") {
      showState(msg.state);
    } else if (msg.type === "quality") {
      showQuality(msg);
    } else if (msg.type === "alerts") {
      showAlerts(msg);
    } else if (msg.type === "error") {
      note(msg.reason);
    } else if (msg.type === "bye") {
      note(msg.reason || "the call ended");
      if (pc) pc.close();
      setText("connection", "ended");
    }
  }

  function note(text) { setText("call-note", text || ""); }

  // ---- media -------------------------------------------------------------------------------
  async function localMedia() {
    if (local !== null) return local;
    try {
      local = await navigator.mediaDevices.getUserMedia({audio: true, video: {width: 640, height: 480}});
    } catch (err) {
      local = new MediaStream();  // no camera or microphone allowed: watch and listen only
      note("no camera or microphone: " + err.name);
    }
    const self = document.getElementById("self-view");
    if (self) self.srcObject = local;
    return local;
  }

  async function dial() {
    if (!joined || ended) return;
    dials += 1;
    const media = await localMedia();
    if (pc) pc.close();
    const conn = pc = new RTCPeerConnection({iceServers: joined.ice_servers, bundlePolicy: "max-bundle",
                                             iceTransportPolicy: joined.relay_only ? "relay" : "all"});
    const names = slotNames(joined.slots);
    joined.slots.forEach(function (role, i) {
      if (role === "send-audio" || role === "send-video") {
        const track = role === "send-audio" ? media.getAudioTracks()[0] : media.getVideoTracks()[0];
        conn.addTransceiver(track || (role === "send-audio" ? "audio" : "video"), {direction: "sendonly"});
        return;
      }
      const t = conn.addTransceiver(role.endsWith("audio") ? "audio" : "video", {direction: "recvonly"});
      const node = bySlot(names[i]);
      const target = node && (node.tagName === "FIGURE" ? node.querySelector("video") : node);
      if (target) {
        target.srcObject = new MediaStream([t.receiver.track]);
        if (target.tagName === "AUDIO") target.play().catch(function () { showSoundButton(); });
      }
    });
    conn.onicecandidate = function (ev) {
      if (conn !== pc) return;
      send({type: "candidate", candidate: ev.candidate ? ev.candidate.toJSON() : null});
    };
    conn.onconnectionstatechange = function () {
      if (conn !== pc) return;
      setText("connection", conn.connectionState);
      document.body.dataset.connection = conn.connectionState;
      if (conn.connectionState === "failed") {
        dial();
      } else if (conn.connectionState === "disconnected") {
        // A short outage recovers by itself; only a path that stays dead is dialled again.
        clearTimeout(disconnectedTimer);
        disconnectedTimer = setTimeout(function () { if (pc === conn && conn.connectionState !== "connected") dial(); },
                                       10000);
      }
    };
    await conn.setLocalDescription(await conn.createOffer());
    send({type: "offer", sdp: conn.localDescription.sdp});
  }

  function showSoundButton() {
    const button = document.getElementById("sound");
    if (!button) return;
    button.hidden = false;
    button.onclick = function () {
      document.querySelectorAll("audio[data-slot]").forEach(function (a) { a.play().catch(function () {}); });
      button.hidden = true;
    };
  }

  // ---- what the page shows -----------------------------------------------------------------
  function showState(state) {
    if (!state) return;
    setText("recording", state.recording ? "on" : "off");
    if (state.note) note(state.note);
    for (const s of state.slots || []) {
      const node = bySlot(s.slot);
      if (!node) continue;
      node.dataset.source = s.source || "";
      const caption = node.querySelector && node.querySelector("figcaption");
      if (caption) caption.textContent = (s.label || "waiting") + (s.state && s.state !== "ok" && s.state !== "connected"
                                                                     ? " (" + s.state + ")" : "");
    }
  }

  const FIGURES = ["rtt_ms", "loss_pct", "jitter_ms", "fps", "kbps", "tier"];
  function showQuality(msg) {
    setText("recording", msg.recording ? "on" : "off");
    const body = document.querySelector("#quality tbody");
    if (!body) return;
    for (const peer of msg.peers || []) {
      for (const s of peer.streams || []) {
        const sel = 'tr[data-peer="' + CSS.escape(peer.peer) + '"][data-stream="' + CSS.escape(s.stream) + '"]';
        let row = body.querySelector(sel);
        if (!row) {
          row = el("tr", {"data-peer": peer.peer, "data-stream": s.stream});
          row.append(el("td", {}, peer.name), el("td", {}, s.stream), el("td", {}, s.dir));
          FIGURES.forEach(function (f) { row.append(el("td", {"data-figure": f})); });
          body.append(row);
        }
        row.dataset.updated = msg.time;
        FIGURES.forEach(function (f) { row.querySelector('[data-figure="' + f + '"]').textContent = fmt(s[f]); });
      }
    }
  }

  function showAlerts(msg) {
    const list = document.getElementById("call-alerts");
    if (!list) return;
    for (const a of msg.opened || []) {
      const li = el("li", {class: "call-alert open", "data-alert": String(a.id), "data-kind": a.kind});
      li.append(el("time", {}, a.started), " ", el("strong", {}, a.kind), " " + a.peer + " " +
                (a.stream || "connection") + ": " + fmt(a.value) + " (threshold " + fmt(a.threshold) + ")");
      list.prepend(li);
    }
    for (const a of msg.closed || []) {
      const li = list.querySelector('[data-alert="' + CSS.escape(String(a.id)) + '"]');
      if (li) { li.classList.remove("open"); li.classList.add("closed"); }
    }
  }

  // ---- controls ------------------------------------------------------------------------------
  document.getElementById("mute").addEventListener("click", function (ev) {
    const tracks = local ? local.getAudioTracks() : [];
    const muted = tracks.length && tracks[0].enabled;
    tracks.forEach(function (t) { t.enabled = !muted; });
    ev.target.textContent = muted ? "Unmute" : "Mute";
  });
  document.getElementById("leave").addEventListener("click", function () {
    ended = true;
    send({type: "leave"});
    if (pc) pc.close();
    store.removeItem(key);
    setText("connection", "left");
  });
  // A new network (Wi-Fi to 4G): the old path is gone, dial again at once instead of waiting for ICE to fail.
  if (navigator.connection && navigator.connection.addEventListener) {
    navigator.connection.addEventListener("change", function () { setTimeout(dial, 1000); });
  }
  window.addEventListener("online", function () { setTimeout(dial, 1000); });

  // For tests and for the consultation page that embeds this one.
  window.callClient = {pc: function () { return pc; }, dial: dial, dials: function () { return dials; },
                       peer: function () { return me && me.peer; }};
  connectSocket();
})();
