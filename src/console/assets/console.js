// The console works without this script; with it, times read in the viewer's time zone, the
// opt-in auto-refresh reloads the page while the tab is visible, forms with data-confirm ask
// first, and a "select all" box ticks every row box of its table.
(function () {
  "use strict";

  function localTimes() {
    var fmt = new Intl.DateTimeFormat(undefined, {
      year: "numeric", month: "2-digit", day: "2-digit",
      hour: "2-digit", minute: "2-digit", second: "2-digit", timeZoneName: "short"
    });
    document.querySelectorAll("time[datetime]").forEach(function (el) {
      var d = new Date(el.getAttribute("datetime"));
      if (!isNaN(d.getTime())) {
        el.textContent = fmt.format(d);
        el.classList.add("local");
      }
    });
  }

  function autoRefresh() {
    var box = document.getElementById("auto-refresh");
    if (!box) { return; }
    var key = "wharf.refresh." + document.body.getAttribute("data-section");
    var secs = parseInt(box.getAttribute("data-secs"), 10) || 15;
    var timer = null;
    function stop() { if (timer) { clearTimeout(timer); timer = null; } }
    function start() {
      stop();
      if (box.checked && document.visibilityState === "visible") {
        timer = setTimeout(function () { window.location.reload(); }, secs * 1000);
      }
    }
    box.checked = window.localStorage.getItem(key) === "on";
    box.addEventListener("change", function () {
      window.localStorage.setItem(key, box.checked ? "on" : "off");
      start();
    });
    document.addEventListener("visibilitychange", start);
    start();
  }

  function confirmations() {
    document.querySelectorAll("form[data-confirm]").forEach(function (form) {
      form.addEventListener("submit", function (event) {
        if (!window.confirm(form.getAttribute("data-confirm"))) { event.preventDefault(); }
      });
    });
  }

  function selectAll() {
    document.querySelectorAll("input[data-select-all]").forEach(function (all) {
      all.hidden = false;
      all.addEventListener("change", function () {
        var scope = document.querySelectorAll("input[name='" + all.getAttribute("data-select-all") + "']");
        scope.forEach(function (box) { box.checked = all.checked; });
      });
    });
  }

  document.addEventListener("DOMContentLoaded", function () {
    localTimes();
    autoRefresh();
    confirmations();
    selectAll();
  });
})();
