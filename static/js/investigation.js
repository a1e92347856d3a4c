/* One investigation's page: the saved transcript, then the live one, drawn by one renderer.
 *
 * The page embeds the events saved when it was rendered (#investigation-events); they are drawn
 * first, then the websocket is opened with ?after=<last seq drawn> and each new event is drawn
 * the same way. A dropped socket reconnects with backoff from the latest seq, so nothing is
 * missed or drawn twice. Event data is untrusted (the alert's text reaches the model): it only
 * ever becomes textContent, never markup.
 *
 * Each event's element is anchored as #event-<seq> (a request's evidence links there). An
 * "action" event (a request of this investigation made or changed: its summary) is drawn as the
 * request's state line. The decision cards are the server's, kept current by the approvals
 * socket (static/js/approvals.js); a request new to the page gets the card it sent placed here.
 */
(function () {
  "use strict";

  const make = GatehouseLive.make; // live.js, loaded first
  const readJSON = GatehouseLive.readJSON;

  const VERDICT_MARK = "<verdict>";

  const root = document.getElementById("investigation");
  if (!root) return;
  const investigationId = root.dataset.investigationId;
  const transcript = document.getElementById("transcript");
  const statusBadge = document.getElementById("status");
  const verdictCard = document.getElementById("verdict");
  const toolCallsUsed = document.getElementById("tool-calls-used");
  const decisions = document.getElementById("decisions");
  const decisionCards = document.getElementById("decision-cards");
  const Decisions = window.GatehouseDecisions || null;

  const STATUS_LABELS = readJSON("status-labels", {});

  let lastSeq = 0;
  const textBlocks = new Map(); // block id -> {element, raw}
  const toolCalls = new Map(); // tool_use_id -> entry element
  let resultsSeen = 0;

  // -- helpers ----------------------------------------------------------------------------
  /* Every string of an event arrives as the page shows it (hidden characters as escapes, by the
   * server: Event.as_message) and is drawn as given. A tool's arguments and result arrive as their
   * pretty JSON text too (input_json, result_json): JSON.stringify here would double an escape's
   * backslash. */
  function shownJSON(text) {
    return typeof text === "string" ? text : "";
  }

  function statusLabel(status) {
    return STATUS_LABELS[status] || String(status || "");
  }

  /* What of a block's text is shown: everything before the verdict block (the card shows
   * that), holding back a tail that may be the start of "<verdict>" split across chunks. */
  function visibleText(raw) {
    let cut = raw.indexOf(VERDICT_MARK);
    if (cut < 0) {
      for (let n = Math.min(VERDICT_MARK.length - 1, raw.length); n > 0; n--) {
        if (raw.endsWith(VERDICT_MARK.slice(0, n))) {
          cut = raw.length - n;
          break;
        }
      }
    }
    return (cut < 0 ? raw : raw.slice(0, cut)).trimEnd();
  }

  // -- the renderer: one event at a time, in seq order -------------------------------------
  function render(event) {
    if (!event || typeof event.seq !== "number" || event.seq <= lastSeq) return;
    lastSeq = event.seq;
    root.dataset.lastSeq = String(lastSeq);
    const data = event.data || {};
    const element = draw(event.kind, data);
    if (element && !element.id) element.id = "event-" + event.seq; // a text block: its first event
  }

  function draw(kind, data) {
    switch (kind) {
      case "text":
        return renderText(data);
      case "tool_call":
        return renderToolCall(data);
      case "tool_result":
        return renderToolResult(data);
      case "status":
        return renderStatus(data);
      case "verdict":
        return renderVerdict(data);
      case "action":
        return renderAction(data);
      default:
        return undefined; // a kind this page does not know yet
    }
  }

  function renderText(data) {
    const key = String(data.block);
    let block = textBlocks.get(key);
    if (!block) {
      const element = make("p", "text-block");
      element.dataset.block = key;
      transcript.appendChild(element);
      block = { element: element, raw: "" };
      textBlocks.set(key, block);
    }
    block.raw += typeof data.text === "string" ? data.text : "";
    block.element.textContent = visibleText(block.raw);
    block.element.hidden = block.element.textContent === "";
    return block.element;
  }

  function toolCallEntry(data) {
    const entry = make("div", "tool-call");
    entry.dataset.toolUseId = String(data.tool_use_id || "");
    const head = make("div", "tool-head");
    head.appendChild(make("span", "tool-name", data.name || "(unnamed tool)"));
    if (data.server) head.appendChild(make("span", "tool-server", data.server));
    if (data.write) head.appendChild(make("span", "write-badge", "write"));
    entry.appendChild(head);
    transcript.appendChild(entry);
    toolCalls.set(String(data.tool_use_id || ""), entry);
    return entry;
  }

  function renderToolCall(data) {
    const entry = toolCallEntry(data);
    entry.appendChild(make("pre", "tool-input json", shownJSON(data.input_json)));
    return entry;
  }

  function renderToolResult(data) {
    const entry = toolCalls.get(String(data.tool_use_id || "")) || toolCallEntry(data);
    const envelope = data.result && typeof data.result === "object" ? data.result : {};
    const previous = entry.querySelector(".tool-result");
    if (previous) previous.remove();

    let result;
    if (envelope.status === "error") {
      result = make("div", "tool-result error");
      const line = make("p", "error-line");
      line.appendChild(make("strong", "reason", envelope.reason || "error"));
      line.appendChild(make("span", "retryable", envelope.retryable ? "retryable" : "not retryable"));
      result.appendChild(line);
      if (envelope.guidance) result.appendChild(make("p", "guidance", envelope.guidance));
      const more = make("details");
      more.appendChild(make("summary", null, "Error envelope"));
      more.appendChild(make("pre", "json", shownJSON(data.result_json)));
      result.appendChild(more);
    } else {
      result = make("div", "tool-result ok");
      const details = make("details");
      const summary = make("summary");
      summary.appendChild(make("span", "result-status", "Result: " + (envelope.status || "ok")));
      if (envelope.source) summary.appendChild(make("span", "result-source", "from " + envelope.source));
      if (envelope.truncated) summary.appendChild(make("span", "truncated", "truncated"));
      details.appendChild(summary);
      details.appendChild(make("pre", "json", shownJSON(data.result_json)));
      result.appendChild(details);
    }
    entry.appendChild(result);

    resultsSeen += 1;
    if (toolCallsUsed && resultsSeen > Number(toolCallsUsed.textContent)) {
      toolCallsUsed.textContent = String(resultsSeen);
    }
    return result;
  }

  function renderStatus(data) {
    const line = make("p", "status-line");
    line.dataset.status = String(data.status || "");
    line.appendChild(make("span", "status-name", statusLabel(data.status)));
    if (data.message) line.appendChild(make("span", "status-message", data.message));
    transcript.appendChild(line);

    statusBadge.dataset.status = String(data.status || "");
    statusBadge.textContent = statusLabel(data.status);
    if (data.status === "failed" && !verdictCard.dataset.verdict) {
      verdictCard.querySelector(".verdict-value").textContent = "none: the investigation failed";
      setEndReason(data.message);
    }
    return line;
  }

  function setEndReason(text) {
    const paragraph = verdictCard.querySelector(".verdict-end-reason");
    paragraph.querySelector(".end-reason-text").textContent = text || "";
    paragraph.hidden = !text;
  }

  function renderVerdict(data) {
    const verdict = String(data.verdict || "inconclusive");
    verdictCard.dataset.verdict = verdict;
    verdictCard.querySelector(".verdict-value").textContent = verdict;

    const summary = verdictCard.querySelector(".verdict-summary");
    summary.textContent = data.summary || "";
    summary.hidden = !data.summary;

    const evidence = Array.isArray(data.evidence) ? data.evidence : [];
    const list = verdictCard.querySelector(".verdict-evidence");
    list.replaceChildren(...evidence.map((item) => make("li", null, item)));
    verdictCard.querySelector(".verdict-evidence-block").hidden = evidence.length === 0;
    setEndReason(data.end_reason);

    const line = make("p", "verdict-line");
    line.dataset.verdict = verdict;
    line.appendChild(make("span", "status-name", "verdict"));
    line.appendChild(make("span", "status-message", verdict));
    transcript.appendChild(line);
    return line;
  }

  /* A request made or changed: its state line (its card is the approvals socket's). Its target and
   * outcome arrive as the card shows them (hidden characters as escapes, by the server): drawn as given. */
  function renderAction(data) {
    const state = String(data.state || "");
    const line = make("p", "action-line");
    line.dataset.state = state;
    line.dataset.actionId = String(data.id);
    line.appendChild(make("span", "status-name", "action"));
    line.appendChild(make("span", "action-text", String(data.tool || "") + " " + String(data.target || "") + ": "));
    line.appendChild(make("span", "action-state", state));
    if (state === "pending" && Number(data.approvals) > 0) {
      line.appendChild(make("span", "action-approvals", " (" + data.approvals + " of " + data.approvals_needed + " approvals)"));
    }
    if (data.outcome) line.appendChild(make("span", "action-outcome", " — " + data.outcome));
    const card = make("a", "action-card-link", "decision");
    card.href = "#action-" + encodeURIComponent(String(data.id));
    line.appendChild(document.createTextNode(" "));
    line.appendChild(card);
    transcript.appendChild(line);
    return line;
  }

  /* A request of this investigation that has no card yet (made since the page loaded): its card as
   * the server sent it; pending cards go before the decided ones. */
  function addDecisionCard(summary, html) {
    if (!Decisions || !decisionCards || String(summary.investigation_id) !== String(investigationId)) return;
    if (document.getElementById("action-" + summary.id)) return;
    const card = Decisions.card(html);
    if (!card) return;
    const firstDecided = Array.from(decisionCards.children).find((other) => other.dataset.state !== "pending");
    if (summary.state === "pending" && firstDecided) decisionCards.insertBefore(card, firstDecided);
    else decisionCards.appendChild(card);
    decisions.hidden = false;
  }

  /* A live event: drawn like the saved ones; the transcript keeps following the end if the
   * reader was at the end. */
  function renderLive(event) {
    const following = transcript.scrollHeight - transcript.scrollTop - transcript.clientHeight < 40;
    render(event);
    if (following) transcript.scrollTop = transcript.scrollHeight;
  }

  /* The element the link's fragment names (#event-<seq>, #action-<id>); a fragment that is not
   * valid percent-encoding (#%E0) names nothing. */
  function fragmentTarget() {
    try {
      return window.location.hash ? document.getElementById(decodeURIComponent(window.location.hash.slice(1))) : null;
    } catch (error) {
      return null;
    }
  }

  // -- start: the saved events, then live -------------------------------------------------------
  if (Decisions) Decisions.onRequest(addDecisionCard);
  const saved = readJSON("investigation-events", []);
  (Array.isArray(saved) ? saved : []).forEach(render);
  transcript.scrollTop = transcript.scrollHeight;
  GatehouseLive.connect({
    name: "transcript",
    url: function () {
      return "/ws/investigations/" + encodeURIComponent(investigationId) + "/?after=" + lastSeq;
    },
    onMessage: function (payload) {
      if (payload.type === "event") renderLive(payload.event);
    },
  });
  const target = fragmentTarget();
  if (target) target.scrollIntoView({ block: "center" });
})();
