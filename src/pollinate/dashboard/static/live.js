// pollinate dashboard: refresh each [data-live] element from its fragment URL.
// No framework and no inline script (the pages' Content-Security-Policy forbids it).
"use strict";

(function () {
  function refresh(element) {
    var url = element.getAttribute("data-live");
    fetch(url, { credentials: "same-origin", cache: "no-store" })
      .then(function (response) {
        if (response.status === 401) {
          element.setAttribute("data-live-state", "logged-out");
          return null;
        }
        return response.ok ? response.text() : null;
      })
      .then(function (html) {
        if (html !== null) {
          var open = openDetails(element);
          element.innerHTML = html;
          reopen(element, open);
          element.setAttribute("data-live-state", "ok");
          element.setAttribute("data-live-updated", String(Date.now()));
        }
      })
      .catch(function () {
        element.setAttribute("data-live-state", "offline");
      });
  }

  // A <details> the reader opened stays open across refreshes (matched by position).
  function openDetails(element) {
    var open = [];
    Array.prototype.forEach.call(element.querySelectorAll("details"), function (d, i) {
      if (d.open) {
        open.push(i);
      }
    });
    return open;
  }

  function reopen(element, open) {
    var details = element.querySelectorAll("details");
    open.forEach(function (i) {
      if (details[i]) {
        details[i].open = true;
      }
    });
  }

  function start() {
    var elements = document.querySelectorAll("[data-live]");
    Array.prototype.forEach.call(elements, function (element) {
      var interval = parseInt(element.getAttribute("data-interval-ms") || "2000", 10);
      window.setInterval(function () {
        if (!document.hidden) {
          refresh(element);
        }
      }, Math.max(interval, 500));
    });
  }

  if (document.readyState === "loading") {
    document.addEventListener("DOMContentLoaded", start);
  } else {
    start();
  }
})();
