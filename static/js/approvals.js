/* Decisions on action requests, live: the decision cards (on the approval queue, on a request's
 * page, on an investigation's page), the queue itself, and the navigation's pending count with
 * the tab title.
 *
 * One websocket (/ws/approvals/) per page sends each change of a request the user may see, with
 * the user's pending count; on (re)connect it sends a snapshot, so a page catches up after a drop.
 * Cards the server rendered are updated in place; a request that arrives live gets a card built
 * here with the class names of templates/investigations/_decision_card.html. A card only moves
 * to a state its state can still become (ActionRequest.TRANSITIONS, which base.html hands over as
 * #request-states), so a late or repeated message, from this socket or from an investigation's
 * own, never undoes a newer one.
 *
 * The decision forms are plain HTML forms; here they are posted with fetch (the server answers
 * JSON) and the answer is shown on the card, so the page stays. Request data (the agent's
 * reason above all) is untrusted: it only ever becomes textContent.
 *
 *   GatehouseDecisions.apply(summary, alert)   a request's summary, from any source
 *   GatehouseDecisions.onRequest(fn)           fn(summary, alert) after each apply
 *   GatehouseDecisions.build(summary, alert)   a new card element
 */
(function () {
  "use strict";

  const make = GatehouseLive.make; // live.js, loaded first
  const readJSON = GatehouseLive.readJSON;

  if (window.GatehouseDecisions) return; // both the base page and a page of cards may load this

  // The request's state machine (models.ActionRequest.TRANSITIONS, via core/transitions.py): per state,
  // the states it can still become, and the trail that led to it, so the card's trail follows from its
  // state whichever messages arrived and in whatever order.
  const STATES = readJSON("request-states", {});
  const REACHABLE = STATES.reachable || {};
  const TRAIL = STATES.trail || {};
  const WAITS_FOR_A_PERSON = new Set(["pending", "unconfirmed"]); // in the queue, and counted
  const LABELS = { unconfirmed: "Outcome unknown: check and confirm" };
  const TICK_MS = 15000;
  const handlers = [];

  // -- helpers ----------------------------------------------------------------------------
  function csrfToken() {
    const meta = document.querySelector('meta[name="csrf-token"]');
    return meta ? meta.content : "";
  }

  function label(state) {
    const text = String(state || "");
    return LABELS[text] || text.charAt(0).toUpperCase() + text.slice(1);
  }

  function approvableTools() {
    const tools = readJSON("approvable-tools", []);
    return new Set(Array.isArray(tools) ? tools.map(String) : []);
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

  // -- a card ---------------------------------------------------------------------------------
  function build(summary, alert) {
    const id = String(summary.id);
    const investigation = String(summary.investigation_id);
    const investigationUrl = "/investigations/" + encodeURIComponent(investigation) + "/";
    const requestUrl = "/approvals/" + encodeURIComponent(id) + "/";
    const may = approvableTools().has(String(summary.tool));

    const card = make("article", "decision-card");
    card.id = "action-" + id;
    card.dataset.actionId = id;
    card.dataset.investigationId = investigation;
    card.dataset.tool = String(summary.tool || "");
    card.dataset.mayApprove = may ? "true" : "false";

    const head = make("header", "decision-head");
    head.appendChild(make("span", "tool-name", summary.tool));
    head.appendChild(make("code", "decision-target", summary.target));
    head.appendChild(make("span", "action-state"));
    const history = make("a", "decision-history", "History");
    history.href = requestUrl;
    head.appendChild(history);
    card.appendChild(head);

    const trail = make("p", "decision-trail");
    trail.setAttribute("aria-label", "States so far");
    card.appendChild(trail);
    const outcome = make("p", "decision-outcome");
    outcome.hidden = true;
    card.appendChild(outcome);

    const facts = make("dl", "facts");
    function fact(term, detail, className) {
      facts.appendChild(make("dt", className || null, term));
      facts.appendChild(detail);
    }

    const alertCell = make("dd", "decision-alert");
    const alertLink = make("a", null, alert && alert.title ? alert.title : "Investigation #" + investigation);
    alertLink.href = investigationUrl;
    alertCell.appendChild(alertLink);
    if (alert && alert.source) {
      alertCell.appendChild(document.createTextNode(" "));
      alertCell.appendChild(make("code", null, alert.source + ":" + alert.external_id));
    }
    fact("Alert", alertCell);
    fact("Why", make("dd", "decision-reason", summary.reason || "(no reason given)"));

    const evidenceCell = make("dd");
    const evidence = Array.isArray(summary.evidence) ? summary.evidence : [];
    if (evidence.length) {
      const list = make("ul", "decision-evidence");
      evidence.forEach(function (item) {
        const link = make("a", null, String(item.tool || "tool result") + " ");
        link.href = investigationUrl + "#event-" + encodeURIComponent(String(item.seq));
        link.appendChild(make("small", null, "(event " + item.seq + ")"));
        const entry = make("li");
        entry.appendChild(link);
        list.appendChild(entry);
      });
      evidenceCell.appendChild(list);
    } else {
      evidenceCell.appendChild(make("span", "muted decision-evidence-none", "none cited"));
    }
    fact("Evidence", evidenceCell);

    const riskCell = make("dd");
    const risk = Array.isArray(summary.risk) ? summary.risk : [];
    if (risk.length) {
      const list = make("ul", "decision-risk");
      risk.forEach((line) => list.appendChild(make("li", null, line)));
      riskCell.appendChild(list);
    } else {
      riskCell.appendChild(make("span", "muted", "none noted"));
    }
    fact("Risk", riskCell);

    const approvals = make("dd", "decision-approvals");
    approvals.appendChild(make("span", "approvals-given", summary.approvals));
    approvals.appendChild(document.createTextNode(" of "));
    approvals.appendChild(make("span", "approvals-needed", summary.approvals_needed));
    if (Number(summary.approvals_needed) > 1) {
      approvals.appendChild(document.createTextNode(" "));
      approvals.appendChild(make("small", null, "(four-eyes: two different people)"));
    }
    fact("Approvals", approvals);
    const expiry = make("dd", "decision-expiry");
    const time = make("time", "time-left");
    time.dateTime = String(summary.expires_at || "");
    expiry.appendChild(time);
    fact("Expires", expiry, "decision-expiry");
    card.appendChild(facts);

    const form = make("form", "decision-form");
    form.method = "post";
    form.action = requestUrl + "approve";
    const token = make("input");
    token.type = "hidden";
    token.name = "csrfmiddlewaretoken";
    token.value = csrfToken();
    form.appendChild(token);
    const next = make("input");
    next.type = "hidden";
    next.name = "next";
    next.value = window.location.pathname + window.location.search;
    form.appendChild(next);
    const reasonLabel = make("label", null, "Reason ");
    reasonLabel.htmlFor = "reason-" + id;
    reasonLabel.appendChild(make("small", "muted", "(required to reject; the agent is told it)"));
    form.appendChild(reasonLabel);
    const reason = make("textarea");
    reason.id = "reason-" + id;
    reason.name = "reason";
    reason.rows = 2;
    reason.maxLength = 1000;
    form.appendChild(reason);
    const buttons = make("div", "decision-buttons");
    [["approve", "Approve"], ["reject", "Reject"]].forEach(function (pair) {
      const button = make("button", pair[0], pair[1]);
      button.type = "submit";
      button.formAction = requestUrl + pair[0];
      buttons.appendChild(button);
    });
    form.appendChild(buttons);
    const note = make("p", "decision-note", "You are not allowed to approve " + summary.tool + ".");
    note.hidden = may;
    form.appendChild(note);
    card.appendChild(form);
    const message = make("p", "decision-message");
    message.setAttribute("role", "status");
    message.setAttribute("aria-live", "polite");
    card.appendChild(message);

    fill(card, summary);
    return card;
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

  /* A newer summary than the card shows: moves it forward. Returns whether it did. */
  function update(card, summary) {
    const next = String(summary.state);
    const shown = card.dataset.state;
    if (!(next in REACHABLE)) return false;
    if (shown in REACHABLE) {
      if (next !== shown && !REACHABLE[shown].includes(next)) return false; // older, or another final state: the first stands
      if (next === shown && Number(summary.approvals) < Number(card.dataset.approvals)) return false;
    }
    fill(card, summary);
    return true;
  }

  function fill(card, summary) {
    const state = String(summary.state);
    card.dataset.state = state;
    card.dataset.approvals = String(summary.approvals);

    const badge = card.querySelector(".action-state");
    badge.dataset.state = state;
    badge.textContent = label(state);
    card.querySelector(".decision-trail").replaceChildren(
      ...(TRAIL[state] || [state]).map(function (passed) {
        const step = make("span", "trail-state", passed);
        step.dataset.state = passed;
        return step;
      })
    );
    const outcome = card.querySelector(".decision-outcome");
    outcome.textContent = summary.outcome || "";
    outcome.hidden = !summary.outcome;
    card.querySelector(".approvals-given").textContent = String(summary.approvals);
    card.querySelector(".approvals-needed").textContent = String(summary.approvals_needed);

    document.querySelectorAll('.can-become[data-action-id="' + card.dataset.actionId + '"]').forEach((line) => showReachable(line, state));

    const pending = state === "pending";
    card.querySelectorAll(".decision-expiry").forEach((element) => (element.hidden = !pending));
    card.querySelector(".decision-form").hidden = !pending;
    tick(card);
  }

  /* The time left, and the buttons: usable only by someone allowed, while pending, before expiry, not while posting. */
  function tick(card) {
    const time = card.querySelector(".time-left");
    let expired = false;
    if (time && card.dataset.state === "pending") {
      const left = timeLeft(time.getAttribute("datetime"));
      time.textContent = left.text;
      expired = left.expired;
    }
    const form = card.querySelector(".decision-form");
    const blocked = card.dataset.mayApprove !== "true" || expired || form.dataset.busy === "true";
    form.querySelectorAll("button, textarea").forEach((element) => (element.disabled = blocked));
  }

  function say(card, text, kind) {
    const message = card.querySelector(".decision-message");
    message.textContent = text;
    message.dataset.kind = kind;
  }

  // -- applying a change, from wherever it came -----------------------------------------------------
  function apply(summary, alert) {
    if (!summary || summary.id === undefined) return;
    cardsOf(summary.id).forEach((card) => update(card, summary));
    handlers.forEach((handler) => handler(summary, alert || null));
  }

  function onRequest(handler) {
    handlers.push(handler);
  }

  // -- posting a decision without leaving the page --------------------------------------------------
  document.addEventListener("submit", function (event) {
    const form = event.target;
    if (!(form instanceof HTMLFormElement) || !form.classList.contains("decision-form") || !window.fetch) return;
    const card = form.closest(".decision-card");
    if (!card) return;
    event.preventDefault();
    const button = event.submitter;
    const url = button && button.formAction ? button.formAction : form.action;
    const rejecting = Boolean(button && button.classList.contains("reject"));
    if (rejecting && !form.elements.reason.value.trim()) {
      say(card, "Say why you reject it: the agent is told your reason.", "error");
      form.elements.reason.focus();
      return;
    }
    const body = new FormData(form);
    form.dataset.busy = "true";
    tick(card);
    say(card, rejecting ? "Rejecting…" : "Approving…", "busy");
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
        if (answer.data.request) apply(answer.data.request);
        say(card, answer.data.detail || (answer.ok ? "Done." : "Refused."), answer.ok ? "ok" : "error");
        if (answer.ok) form.elements.reason.value = "";
      })
      .catch(function (error) {
        say(card, error && error.message && !(error instanceof TypeError) ? error.message : "Could not reach the console: nothing was decided. Try again.", "error");
      })
      .finally(function () {
        delete form.dataset.busy;
        tick(card);
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

  function placeInQueue(summary, alert) {
    let card = cardsOf(summary.id)[0];
    if (!card) card = build(summary, alert);
    if (WAITS_FOR_A_PERSON.has(card.dataset.state)) {
      if (card.parentElement !== queueList) queueList.appendChild(card);
    } else if (card.parentElement !== recentList) {
      recentList.prepend(card);
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
      apply(payload.request, payload.alert);
    } else if (payload.type === "snapshot" && Array.isArray(payload.requests)) {
      payload.requests.forEach((entry) => apply(entry.request, entry.alert));
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

  function start() {
    document.querySelectorAll(".decision-card").forEach(tick);
    window.setInterval(() => document.querySelectorAll('.decision-card[data-state="pending"]').forEach(tick), TICK_MS);
    const listens = document.getElementById("nav-approvals-count") || document.querySelector("[data-approvals-live]");
    if (!listens || !window.GatehouseLive) return;
    const query = queueList ? "?queue=1" : "";
    GatehouseLive.connect({
      url: () => "/ws/approvals/" + query,
      onMessage: onMessage,
    });
  }

  window.GatehouseDecisions = { apply: apply, build: build, onRequest: onRequest };
  // After every deferred script has run, so that the pages' own handlers are in place.
  if (document.readyState === "loading") document.addEventListener("DOMContentLoaded", start);
  else start();
})();
