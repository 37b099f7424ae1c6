// The call on the clinic's screen: WebRTC with the gateway on the LAN (offer with candidates gathered, posted to
// the gateway's local API), the experts' voices and pictures, the cameras as the experts see them. No build step.
"use strict";

(function () {
  const page = JSON.parse(document.body.dataset.page || "{}");
  if (!page.consultation) return;
  const base = "/api/v1/calls/" + encodeURIComponent(page.consultation);
  const peerKey = "call-peer:" + page.consultation;
  let peer = sessionStorage.getItem(peerKey);
  let pc = null;
  let mic = null;
  let redialTimer = null;
  let leaving = false;

  function slotNames(slots) {
    const counts = {};
    return slots.map(function (role) {
      const i = counts[role] || 0;
      counts[role] = i + 1;
      return (role === "camera" || role === "party-audio" || role === "party-video") ? role + "-" + i : role;
    });
  }
  function kind(role) { return role.endsWith("audio") ? "audio" : "video"; }
  function el(slot) { return document.querySelector('[data-slot="' + CSS.escape(slot) + '"]'); }
  function setText(id, text) { const n = document.getElementById(id); if (n) n.textContent = text; }

  function gathered(conn) {
    return new Promise(function (resolve) {
      if (conn.iceGatheringState === "complete") return resolve();
      const done = function () { if (conn.iceGatheringState === "complete") resolve(); };
      conn.addEventListener("icegatheringstatechange", done);
      setTimeout(resolve, 3000);  // on a LAN the host candidates come at once; do not wait for more
    });
  }

  async function connect() {
    if (pc) pc.close();
    const conn = pc = new RTCPeerConnection({iceServers: [], bundlePolicy: "max-bundle"});
    const names = slotNames(page.slots);
    page.slots.forEach(function (role, i) {
      if (role === "send-audio") {
        const track = mic && mic.getAudioTracks()[0];
        conn.addTransceiver(track || "audio", {direction: "sendonly"});
      } else if (role === "send-video") {
        conn.addTransceiver("video", {direction: "sendonly"});
      } else {
        const t = conn.addTransceiver(kind(role), {direction: "recvonly"});
        const node = el(names[i]);
        const media = node && (node.tagName === "FIGURE" ? node.querySelector("video") : node);
        if (media) media.srcObject = new MediaStream([t.receiver.track]);
      }
    });
    conn.onconnectionstatechange = function () {
      setText("connection", conn.connectionState);
      document.body.dataset.connection = conn.connectionState;
      if (conn !== pc || leaving) return;
      if (conn.connectionState === "failed" || conn.connectionState === "disconnected") scheduleRedial(5000);
    };
    await conn.setLocalDescription(await conn.createOffer());
    await gathered(conn);
    const resp = await fetch(base + "/offer", {method: "POST", headers: {"Content-Type": "application/json"},
      body: JSON.stringify({peer: peer, name: "Clinic screen", slots: page.slots, sdp: conn.localDescription.sdp})});
    const doc = await resp.json();
    if (!resp.ok) { setText("connection", "refused: " + doc.error); return; }
    peer = doc.peer;
    sessionStorage.setItem(peerKey, peer);
    await conn.setRemoteDescription({type: "answer", sdp: doc.sdp});
  }

  function scheduleRedial(afterMs) {
    // Same participant, new connection: the gateway keeps this screen's place in the call.
    if (redialTimer) return;
    redialTimer = setTimeout(function () {
      redialTimer = null;
      if (pc && (pc.connectionState === "failed" || pc.connectionState === "disconnected")) {
        connect().catch(function (err) { setText("connection", "error: " + err); scheduleRedial(5000); });
      }
    }, afterMs);
  }

  async function refresh() {
    try {
      const resp = await fetch(base + "?peer=" + encodeURIComponent(peer || ""));
      const doc = await resp.json();
      setText("recording", doc.recording ? "on" : "off");
      setText("note", doc.note || "");
      const box = document.getElementById("consent");
      if (box && document.activeElement !== box) box.checked = !!doc.consent;
      for (const s of (doc.state && doc.state.slots) || []) {
        const node = el(s.slot);
        const caption = node && node.querySelector && node.querySelector("figcaption");
        if (caption) caption.textContent = s.label || "waiting";
        if (node) node.dataset.source = s.source || "";
      }
    } catch (err) { /* the gateway restarting: try again at the next tick */ }
  }

  document.getElementById("consent").addEventListener("change", function (ev) {
    fetch(base + "/consent", {method: "POST", headers: {"Content-Type": "application/json"},
                              body: JSON.stringify({consent: ev.target.checked})}).then(refresh);
  });
  document.getElementById("leave").addEventListener("click", function () {
    leaving = true;
    if (pc) pc.close();
    fetch(base + "/leave", {method: "POST", headers: {"Content-Type": "application/json"},
                            body: JSON.stringify({peer: peer})});
    sessionStorage.removeItem(peerKey);
    setText("connection", "left");
  });

  window.localCall = {pc: function () { return pc; }, peer: function () { return peer; }};  // for tests
  const start = navigator.mediaDevices && navigator.mediaDevices.getUserMedia
    ? navigator.mediaDevices.getUserMedia({audio: true}).then(function (s) { mic = s; }, function () { mic = null; })
    : Promise.resolve();
  start.then(connect).catch(function (err) { setText("connection", "error: " + err); });
  setInterval(refresh, 2000);
  refresh();
})();
