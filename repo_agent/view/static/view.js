// repo-agent view: "show all" for capped texts, and the task table's filters and pages.
// Text is only ever set with textContent (never innerHTML), so nothing from a run can become markup.
(function () {
  "use strict";

  function byId(id) { return document.getElementById(id); }

  var fullNode = byId("full-texts");
  var fullTexts = fullNode ? JSON.parse(fullNode.textContent) : {};

  Array.prototype.forEach.call(document.querySelectorAll("button.show-all"), function (button) {
    button.addEventListener("click", function () {
      var target = byId(button.getAttribute("data-target"));
      var text = fullTexts[button.getAttribute("data-ref")];
      if (!target || typeof text !== "string") { return; }
      target.textContent = text;
      button.parentNode.textContent = "showing all " + text.length + " characters";
    });
  });

  var table = byId("task-table");
  if (!table) { return; }
  var rows = Array.prototype.slice.call(table.tBodies[0].rows);
  var pageSize = Math.max(1, parseInt(table.getAttribute("data-page-size"), 10) || 50);
  var page = 0;
  var outcome = byId("f-outcome"), stop = byId("f-stop");
  var parse = byId("f-parse"), loops = byId("f-loops"), refused = byId("f-refused");

  function cellMatches(cell) {
    if (outcome.value && cell.getAttribute("data-outcome") !== outcome.value) { return false; }
    if (stop.value && cell.getAttribute("data-stop") !== stop.value) { return false; }
    if (parse.checked && !(parseInt(cell.getAttribute("data-parse"), 10) > 0)) { return false; }
    if (loops.checked && !(parseInt(cell.getAttribute("data-loops"), 10) > 0)) { return false; }
    if (refused.checked && !(parseInt(cell.getAttribute("data-refused"), 10) > 0)) { return false; }
    return true;
  }

  function apply() {
    var matching = [];
    rows.forEach(function (row) {
      var any = false;
      Array.prototype.forEach.call(row.querySelectorAll(".cell"), function (cell) {
        var ok = cellMatches(cell);
        cell.classList.toggle("dim", !ok);
        any = any || ok;
      });
      if (any) { matching.push(row); }
    });
    var pages = Math.max(1, Math.ceil(matching.length / pageSize));
    page = Math.min(Math.max(page, 0), pages - 1);
    rows.forEach(function (row) { row.hidden = true; });
    var shown = matching.slice(page * pageSize, (page + 1) * pageSize);
    shown.forEach(function (row) { row.hidden = false; });
    byId("table-status").textContent = matching.length + " of " + rows.length + " tasks match";
    byId("page-label").textContent = "page " + (page + 1) + " of " + pages;
    byId("page-prev").disabled = page === 0;
    byId("page-next").disabled = page >= pages - 1;
  }

  [outcome, stop, parse, loops, refused].forEach(function (control) {
    control.addEventListener("change", function () { page = 0; apply(); });
  });
  byId("page-prev").addEventListener("click", function () { page -= 1; apply(); });
  byId("page-next").addEventListener("click", function () { page += 1; apply(); });
  apply();
}());
