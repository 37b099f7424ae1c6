// The console's WebSockets to HQ, shared by the page scripts: `reconnecting` keeps one open, reopening it after a
// drop with exponential backoff and jitter (0.5 s doubling to 10 s, back to 0.5 s once open), so that a restarted
// HQ is not stampeded by every open console at once; `connect` is the live updates over /ws on top of it
// (subscribe on every open, the state in the header: body[data-live] and the #live-state badge). No build step.
"use strict";

window.hqLive = (function () {
  const FIRST_DELAY_MS = 500;
  const MAX_DELAY_MS = 10000;

  // `handlers.open(ws)` after each (re)open, `handlers.message(msg)` for each message (parsed JSON),
  // `handlers.closed()` after each drop, `handlers.again()` whether to reopen (default: always).
  function reconnecting(path, handlers) {
    let delay = FIRST_DELAY_MS;
    function open() {
      const ws = new WebSocket((location.protocol === "https:" ? "wss://" : "ws://") + location.host + path);
      ws.onopen = function () {
        delay = FIRST_DELAY_MS;
        handlers.open(ws);
      };
      ws.onmessage = function (ev) { handlers.message(JSON.parse(ev.data)); };
      ws.onclose = function () {
        if (handlers.closed) handlers.closed();
        if (handlers.again && !handlers.again()) return;
        setTimeout(open, delay + Math.random() * delay);
        delay = Math.min(delay * 2, MAX_DELAY_MS);
      };
    }
    open();
  }

  function setLive(state) {
    document.body.dataset.live = state;
    const badge = document.getElementById("live-state");
    if (badge) badge.textContent = state === "subscribed" ? "live" : state;
  }

  // `subscription()`: what to subscribe to, asked at each open (the page may know more by then);
  // `onMessage(msg)`: every message ("subscribed" included, after the header shows it).
  function connect(subscription, onMessage) {
    reconnecting("/ws", {
      open: function (ws) {
        setLive("connected");
        ws.send(JSON.stringify({subscribe: subscription()}));
      },
      message: function (msg) {
        if (msg.type === "subscribed") setLive("subscribed");
        onMessage(msg);
      },
      closed: function () { setLive("reconnecting"); },
    });
  }

  return {reconnecting: reconnecting, connect: connect, setLive: setLive};
})();
