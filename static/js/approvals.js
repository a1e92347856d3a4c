/* Decisions on action requests, live: the decision cards (on the approval queue, on a request's
 * page, on an investigation's page), the queue itself, and the navigation's pending count with
 * the tab title.
 *
 * One websocket (/ws/approvals/) per page sends each change of a request the user may see, with
 * the card as the server rendered it for them (templates/investigations/_decision_card.html, the
 * one partial: escaped there, its buttons usable or not by what they may approve) and their
 * pending count; on (re)connect it sends a snapshot of the requests the page shows (shownQuery), so
 * a page catches up on what was made or changed between its render and the socket's open, or during
 * a drop. The messages are investigations/live_messages.py's schemas. A card shown is replaced by a
 * newer one; a card only moves to a state its state can still become (ActionRequest.TRANSITIONS, which
 * base.html hands over as #request-states), so a late or repeated message never undoes a newer
 * one. Nothing here builds a card: it is only ever the server's HTML.
 *
 * The decision forms are plain HTML forms; here they are posted with fetch (the server answers
 * JSON with the card as it is now) and the answer is shown on the card, so the page stays.
 *
 *   GatehouseDecisions.apply(summary, html)   a request's summary and its card, from any source
 *   GatehouseDecisions.onRequest(fn)          fn(summary, html) after each apply
 *   GatehouseDecisions.card(html)             the card's element, ready to be placed
 */
(function () {
  "use strict";

  if (window.GatehouseDecisions) return; // both the base page and a page of cards may load this

  const make = GatehouseLive.make; // live.js, loaded first
  const readJSON = GatehouseLive.readJSON;
  // The request's state machine (models.ActionRequest.TRANSITIONS, via core/transitions.py): per state,
  // the states it can still become.
  const STATES = readJSON("request-states", {});
  const REACHABLE = STATES.reachable || {};
  const WAITS_FOR_A_PERSON = new Set(["pending", "unconfirmed"]); // in the queue, and counted
  const TICK_MS = 15000;
  const handlers = [];
  const posting = new Set(); // ids of the requests whose decision is being posted from this page

  // -- helpers ----------------------------------------------------------------------------
  function csrfToken() {
    const meta = document.querySelector('meta[name="csrf-token"]');
    return meta ? meta.content : "";
  }

  function cardsOf(id) {
    return Array.from(document.querySelectorAll(".decision-card")).filter((card) => card.dataset.actionId === String(id));
  }

  function timeLeft(iso) {
    const left = Date.parse(iso) - Date.now();
    if (!(left > 0)) return { text: "expired: nobody can decide it now", expired: true };
    const minutes = Math.floor(left / 60000);
    if (minutes < 1) return { text: "in " + Math.max(1, Math.round(left / 1000)) + " s", expired: false };
    if (minutes < 60) return { text: "in " + minutes + " min", expired: false };
    return { text: "in " + Math.floor(minutes / 60) + " h " + (minutes % 60) + " min", expired: false };
  }

  // -- a card: the server's HTML, from the one partial ---------------------------------------------
  /* The card the server rendered (templates/investigations/_decision_card.html, escaped there) as an
   * element, its time left and buttons set; null for anything else. */
  function card(html) {
    const template = document.createElement("template");
    template.innerHTML = String(html || "").trim();
    const element = template.content.firstElementChild;
    if (!element || !element.classList.contains("decision-card")) return null;
    tick(element);
    return element;
  }

  /* A request page's line of the states the request can still become (templates/investigations/action.html). */
  function showReachable(line, state) {
    const next = REACHABLE[state] || [];
    line.querySelector(".can-become-none").hidden = next.length > 0;
    line.querySelector(".can-become-states").replaceChildren(
      ...next.map(function (later) {
        const step = make("span", "trail-state", later);
        step.dataset.state = later;
        return step;
      })
    );
  }

  /* Whether `next` shows a later state of the request than `shown`: a card only moves to a state its
   * state can still become; in the same state, only to as many approvals or more. */
  function newer(next, shown) {
    const to = next.dataset.state;
    const from = shown.dataset.state;
    if (!(to in REACHABLE)) return false;
    if (!(from in REACHABLE)) return true;
    if (to !== from) return REACHABLE[from].includes(to); // older, or another final state: the first stands
    return Number(next.dataset.approvals) >= Number(shown.dataset.approvals);
  }
  /* A newer card in the place of one shown, keeping the reason being typed and what the card said. */
  function replace(shown, html) {
    const next = card(html);
    if (!next || !newer(next, shown)) return;
    const typed = shown.querySelector("textarea");
    const field = next.querySelector("textarea");
    const focused = Boolean(typed) && document.activeElement === typed;
    if (typed && field) field.value = typed.value;
    const said = shown.querySelector(".decision-message");
    const message = next.querySelector(".decision-message");
    if (said && message) {
      message.textContent = said.textContent;
      if (said.dataset.kind) message.dataset.kind = said.dataset.kind;
    }
    shown.replaceWith(next);
    if (focused && field && !field.disabled) field.focus();
  }

  /* The time left, and the buttons: usable only by someone allowed, while pending, before expiry, not while posting. */
  function tick(element) {
    const time = element.querySelector(".time-left");
    let expired = false;
    if (time && element.dataset.state === "pending") {
      const left = timeLeft(time.getAttribute("datetime"));
      time.textContent = left.text;
      expired = left.expired;
    }
    const form = element.querySelector(".decision-form");
    const blocked = element.dataset.mayApprove !== "true" || expired || posting.has(element.dataset.actionId);
    form.querySelectorAll("button, textarea").forEach((field) => (field.disabled = blocked));
  }

  function say(card, text, kind) {
    const message = card.querySelector(".decision-message");
    message.textContent = text;
    message.dataset.kind = kind;
  }

  // -- applying a change, from wherever it came -----------------------------------------------------
  function apply(summary, html) {
    if (!summary || summary.id === undefined) return;
    cardsOf(summary.id).forEach((shown) => replace(shown, html));
    const shown = cardsOf(summary.id)[0];
    const state = shown ? shown.dataset.state : String(summary.state);
    document.querySelectorAll('.can-become[data-action-id="' + summary.id + '"]').forEach((line) => showReachable(line, state));
    handlers.forEach((handler) => handler(summary, html));
  }

  function onRequest(handler) {
    handlers.push(handler);
  }

  // -- posting a decision without leaving the page --------------------------------------------------
  document.addEventListener("submit", function (event) {
    const form = event.target;
    if (!(form instanceof HTMLFormElement) || !form.classList.contains("decision-form") || !window.fetch) return;
    const shown = form.closest(".decision-card");
    if (!shown) return;
    event.preventDefault();
    const id = shown.dataset.actionId;
    const current = () => cardsOf(id)[0] || shown; // a newer card may have replaced it meanwhile
    const button = event.submitter;
    const url = button && button.formAction ? button.formAction : form.action;
    const rejecting = Boolean(button && button.classList.contains("reject"));
    if (rejecting && !form.elements.reason.value.trim()) {
      say(shown, "Say why you reject it: the agent is told your reason.", "error");
      form.elements.reason.focus();
      return;
    }
    const body = new FormData(form);
    posting.add(id);
    tick(shown);
    say(shown, rejecting ? "Rejecting…" : "Approving…", "busy");
    fetch(url, {
      method: "POST",
      body: body,
      credentials: "same-origin",
      headers: { Accept: "application/json", "X-CSRFToken": csrfToken() },
    })
      .then(function (response) {
        const type = response.headers.get("Content-Type") || "";
        if (!type.includes("application/json")) {
          throw new Error("The console did not take it (" + response.status + "): sign in again and retry.");
        }
        return response.json().then((data) => ({ ok: response.ok, data: data || {} }));
      })
      .then(function (answer) {
        if (answer.data.request) apply(answer.data.request, answer.data.card);
        say(current(), answer.data.detail || (answer.ok ? "Done." : "Refused."), answer.ok ? "ok" : "error");
        const reason = current().querySelector("textarea");
        if (answer.ok && reason) reason.value = "";
      })
      .catch(function (error) {
        say(current(), error && error.message && !(error instanceof TypeError) ? error.message : "Could not reach the console: nothing was decided. Try again.", "error");
      })
      .finally(function () {
        posting.delete(id);
        tick(current());
      });
  });

  // -- the pending count: navigation badge, tab title ---------------------------------------------
  function setCount(count) {
    const n = Math.max(0, Number(count) || 0);
    const badge = document.getElementById("nav-approvals-count");
    if (badge) {
      badge.textContent = String(n);
      badge.dataset.count = String(n);
      badge.hidden = n === 0;
    }
    document.title = (n > 0 ? "(" + n + ") " : "") + document.title.replace(/^\(\d+\) /, "");
  }

  // -- the queue page -------------------------------------------------------------------------------
  const queueList = document.getElementById("approval-queue");
  const recentList = document.getElementById("approval-recent");

  function placeInQueue(summary, html) {
    const placed = cardsOf(summary.id)[0] || card(html);
    if (!placed) return;
    if (WAITS_FOR_A_PERSON.has(placed.dataset.state)) {
      if (placed.parentElement !== queueList) queueList.appendChild(placed);
    } else if (placed.parentElement !== recentList) {
      recentList.prepend(placed);
    }
    const limit = Number(recentList.dataset.limit) || 20;
    while (recentList.children.length > limit) recentList.lastElementChild.remove();
    refreshQueue();
  }

  function refreshQueue() {
    const waiting = queueList.children.length;
    document.getElementById("queue-empty").hidden = waiting > 0;
    document.getElementById("recent-empty").hidden = recentList.children.length > 0;
    document.getElementById("queue-count").textContent = String(waiting);
  }

  if (queueList && recentList) onRequest(placeInQueue);

  // -- the socket ---------------------------------------------------------------------------------
  function onMessage(payload) {
    if (typeof payload.pending === "number") setCount(payload.pending);
    if (payload.type === "request") {
      apply(payload.request, payload.card);
    } else if (payload.type === "snapshot" && Array.isArray(payload.requests)) {
      payload.requests.forEach((entry) => apply(entry.request, entry.card));
      if (queueList && Array.isArray(payload.pending_ids)) {
        // Decided while this page was not listening, and no longer among the recent ones.
        const pending = new Set(payload.pending_ids.map(String));
        Array.from(queueList.children).forEach(function (card) {
          if (!pending.has(card.dataset.actionId)) card.remove();
        });
        refreshQueue();
      }
    }
  }

  /* What the page shows (its [data-approvals-live]), for the snapshot: the queue, an investigation's
   * requests, one request; or nothing but the navigation's count. */
  function shownQuery() {
    const shown = document.querySelector("[data-approvals-live]");
    if (!shown) return "";
    if (shown.dataset.approvalsLive === "queue") return "?queue=1";
    const id = shown.dataset.approvalsId;
    return id ? "?" + shown.dataset.approvalsLive + "=" + encodeURIComponent(id) : "";
  }

  function start() {
    document.querySelectorAll(".decision-card").forEach(tick);
    window.setInterval(() => document.querySelectorAll('.decision-card[data-state="pending"]').forEach(tick), TICK_MS);
    const listens = document.getElementById("nav-approvals-count") || document.querySelector("[data-approvals-live]");
    if (!listens || !window.GatehouseLive) return;
    const query = shownQuery();
    GatehouseLive.connect({
      name: "approvals",
      url: () => "/ws/approvals/" + query,
      onMessage: onMessage,
    });
  }

  window.GatehouseDecisions = { apply: apply, card: card, onRequest: onRequest };
  // After every deferred script has run, so that the pages' own handlers are in place.
  if (document.readyState === "loading") document.addEventListener("DOMContentLoaded", start);
  else start();
})();
