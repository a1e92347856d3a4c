/* The pages' shared helpers. Above all a websocket that stays connected: it drives the #live-indicator, reconnects with capped
 * exponential backoff (sooner when the browser comes back online), and hands each parsed JSON
 * message to the page. `url()` is asked again on every connect, so a page can resume from what
 * it has already shown.
 *
 *   GatehouseLive.connect({name: "...", url: () => "/ws/...", onMessage: (payload) => ..., onOpen: (again) => ...});
 *
 * The indicator reports one socket: the one its data-socket names (base.html: the approvals socket,
 * unless the page names its own), so a page whose own socket is not open never says "live".
 */
window.GatehouseLive = (function () {
  "use strict";

  const INDICATOR_TEXT = { live: "live", connecting: "connecting…", offline: "offline", ended: "access ended: reload" };
  const ACCESS_ENDED = 4403; // core/sockets.py: signed out, deactivated, or the role or grant is gone

  function setIndicator(name, state) {
    const indicator = document.getElementById("live-indicator");
    if (!indicator || indicator.dataset.socket !== name) return;
    indicator.dataset.state = state;
    indicator.textContent = INDICATOR_TEXT[state];
  }

  function connect(options) {
    let socket = null;
    let attempts = 0;
    let retryTimer = null;
    let openedBefore = false;

    function open() {
      retryTimer = null;
      setIndicator(options.name, "connecting");
      const scheme = window.location.protocol === "https:" ? "wss:" : "ws:";
      const ws = new WebSocket(scheme + "//" + window.location.host + options.url());
      socket = ws;
      ws.addEventListener("open", function () {
        attempts = 0;
        setIndicator(options.name, "live");
        if (options.onOpen) options.onOpen(openedBefore);
        openedBefore = true;
      });
      ws.addEventListener("message", function (message) {
        let payload;
        try {
          payload = JSON.parse(message.data);
        } catch (error) {
          return;
        }
        if (payload) options.onMessage(payload);
      });
      ws.addEventListener("close", function (event) {
        if (socket !== ws) return;
        socket = null;
        if (event.code === ACCESS_ENDED) {
          setIndicator(options.name, "ended"); // reconnecting would be refused: a reload signs in again
          return;
        }
        setIndicator(options.name, "offline");
        if (retryTimer !== null) return;
        const delay = Math.min(30000, 1000 * Math.pow(2, attempts)) * (0.5 + Math.random() / 2);
        attempts += 1;
        retryTimer = window.setTimeout(open, delay);
      });
    }

    window.addEventListener("online", function () {
      if (retryTimer === null) return;
      window.clearTimeout(retryTimer);
      open();
    });
    open();
  }

  /* An element with a class and text: event data only ever becomes textContent. */
  function make(tag, className, text) {
    const element = document.createElement(tag);
    if (className) element.className = className;
    if (text !== undefined && text !== null) element.textContent = String(text);
    return element;
  }

  /* The JSON a template embedded with json_script, or the fallback. */
  function readJSON(id, fallback) {
    const element = document.getElementById(id);
    try {
      return element ? JSON.parse(element.textContent) : fallback;
    } catch (error) {
      return fallback;
    }
  }

  return { connect: connect, make: make, readJSON: readJSON };
})();
