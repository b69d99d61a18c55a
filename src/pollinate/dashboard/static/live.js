// pollinate dashboard: refresh each [data-live] element from its fragment URL.
// No framework and no inline script (the pages' Content-Security-Policy forbids it).
// A fragment is taken only from this page's server: a 200 answer that names it in its
// X-Pollinate-Dashboard header. Anything else (a network error, another status, another
// server on the port after this one stopped) ends the refreshing until a reload.
"use strict";

(function () {
  var SERVER_ID = (document.querySelector('meta[name="pollinate-dashboard"]') || {}).content;

  function refresh(element, timer) {
    var url = element.getAttribute("data-live");
    fetch(url, { credentials: "same-origin", cache: "no-store", redirect: "error" })
      .then(function (response) {
        if (response.status !== 200 || !SERVER_ID ||
            response.headers.get("X-Pollinate-Dashboard") !== SERVER_ID) {
          throw new Error(response.status === 401 ? "logged-out" : "disconnected");
        }
        return response.text();
      })
      .then(function (html) {
        var open = openDetails(element);
        element.innerHTML = html;
        reopen(element, open);
        element.setAttribute("data-live-state", "ok");
        element.setAttribute("data-live-updated", String(Date.now()));
      })
      .catch(function (error) {
        window.clearInterval(timer.id);
        stopped(element, error.message === "logged-out" ? "logged-out" : "disconnected");
      });
  }

  // Says, above the element, that it no longer refreshes (text only, never markup).
  function stopped(element, state) {
    if (element.getAttribute("data-live-state") === state) {
      return;
    }
    element.setAttribute("data-live-state", state);
    var note = document.createElement("p");
    note.className = "warning live-status";
    note.textContent = state === "logged-out"
      ? "logged out: open the login URL again"
      : "disconnected: reload to try again";
    element.parentNode.insertBefore(note, element);
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
      var timer = {};
      timer.id = window.setInterval(function () {
        if (!document.hidden && element.getAttribute("data-live-state") !== "disconnected" &&
            element.getAttribute("data-live-state") !== "logged-out") {
          refresh(element, timer);
        }
      }, Math.max(interval, 500));
    });
  }

  // A form with data-confirm (Stop) asks first: one click must not end a long run.
  document.addEventListener("submit", function (event) {
    var question = event.target.getAttribute && event.target.getAttribute("data-confirm");
    if (question && !window.confirm(question)) {
      event.preventDefault();
    }
  });

  if (document.readyState === "loading") {
    document.addEventListener("DOMContentLoaded", start);
  } else {
    start();
  }
})();
