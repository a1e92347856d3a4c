/* The investigations list: each row's status and verdict follow the list websocket.
 *
 * An investigation that is not on this page (one started since it loaded), or a reconnect after
 * a drop (the list socket sends no backlog), shows a notice to reload instead. Data from the socket only ever becomes textContent.
 */
(function () {
  "use strict";

  const table = document.getElementById("investigations");
  const notice = document.getElementById("new-investigations");
  const firstPage = !table || table.dataset.page === "1";

  function rowOf(id) {
    if (!table) return null;
    for (const row of table.tBodies[0].rows) {
      if (row.dataset.investigationId === String(id)) return row;
    }
    return null;
  }

  function update(entry) {
    if (!entry || entry.id === undefined) return;
    const row = rowOf(entry.id);
    if (!row) {
      if (firstPage && notice) notice.hidden = false;
      return;
    }
    const status = row.querySelector(".status");
    status.dataset.status = String(entry.status || "");
    status.textContent = entry.status_label || entry.status || "";
    const verdict = row.querySelector(".verdict-badge");
    if (entry.verdict) {
      verdict.dataset.verdict = String(entry.verdict);
      verdict.textContent = String(entry.verdict);
    } else {
      delete verdict.dataset.verdict;
      verdict.textContent = "—";
    }
  }

  GatehouseLive.connect({
    name: "investigations",
    url: function () {
      return "/ws/investigations/";
    },
    onOpen: function (again) {
      // The list socket has no backlog: changes made while it was down are only on a reload.
      if (again && notice) notice.hidden = false;
    },
    onMessage: function (payload) {
      if (payload.type === "status") update(payload.investigation);
    },
  });
})();
