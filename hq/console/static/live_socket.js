// The console's live connection, shared by the page scripts: a WebSocket to HQ's /ws that subscribes on every
// (re)connect, hands each message on, shows its state in the header (body[data-live], the #live-state badge) and,
// when it drops, reconnects with exponential backoff and jitter (0.5 s doubling to 10 s, back to 0.5 s once
// connected), so that a restarted HQ is not stampeded by every open console at once. No build step.
"use strict";

window.hqLive = (function () {
  const FIRST_DELAY_MS = 500;
  const MAX_DELAY_MS = 10000;

  function setLive(state) {
    document.body.dataset.live = state;
    const badge = document.getElementById("live-state");
    if (badge) badge.textContent = state === "subscribed" ? "live" : state;
  }

  // `subscription()`: what to subscribe to, asked at each connect (the page may know more by then);
  // `onMessage(msg)`: every message, parsed ("subscribed" included, after the badge shows it).
  function connect(subscription, onMessage) {
    let delay = FIRST_DELAY_MS;
    function open() {
      const ws = new WebSocket((location.protocol === "https:" ? "wss://" : "ws://") + location.host + "/ws");
      ws.onopen = function () {
        delay = FIRST_DELAY_MS;
        setLive("connected");
        ws.send(JSON.stringify({subscribe: subscription()}));
      };
      ws.onmessage = function (ev) {
        const msg = JSON.parse(ev.data);
        if (msg.type === "subscribed") setLive("subscribed");
        onMessage(msg);
      };
      ws.onclose = function () {
        setLive("reconnecting");
        setTimeout(open, delay + Math.random() * delay);
        delay = Math.min(delay * 2, MAX_DELAY_MS);
      };
    }
    open();
  }

  return {connect: connect, setLive: setLive};
})();
