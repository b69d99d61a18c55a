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
          element.innerHTML = html;
          element.setAttribute("data-live-state", "ok");
          element.setAttribute("data-live-updated", String(Date.now()));
        }
      })
      .catch(function () {
        element.setAttribute("data-live-state", "offline");
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
