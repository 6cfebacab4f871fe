/* Farmstand: live updates that end for good.
 *
 * Each page of a signed-in user has one event stream (htmx-ext-sse, on <body>). When the
 * session ends (signed out here or in another tab, expired, password changed) the server sends
 * SESSION_ENDED and closes the stream; when the user may no longer see what a stream follows,
 * ACCESS_ENDED. Left alone, the browser would reconnect and htmx-ext-sse would retry every
 * refusal (401, 404) forever. So every EventSource the extension opens goes through here: on
 * either frame it is closed for good, no stream opens again on this page, and the page says
 * why (the #live-ended banner in base.html). A stream the server refuses without that frame
 * (the frame was missed while offline) is checked against /session before giving up.
 */
(function () {
  "use strict";
  if (!window.htmx) return;

  var stopped = false; // the session ended: nothing reconnects on this page
  var endedUrls = {}; // streams whose access ended
  var sources = [];
  // What the extension gets instead of a stream that must not open again: it never fires,
  // so the extension never retries it.
  var inert = {
    readyState: 2,
    close: function () {},
    addEventListener: function () {},
    removeEventListener: function () {}
  };
  var open = htmx.createEventSource || function (url) {
    return new EventSource(url, { withCredentials: true });
  };

  function show(reason) {
    var box = document.getElementById("live-ended");
    if (!box) return;
    var parts = box.querySelectorAll("[data-reason]");
    for (var i = 0; i < parts.length; i++) {
      parts[i].hidden = parts[i].getAttribute("data-reason") !== reason;
    }
    box.hidden = false;
    document.body.classList.add("live-stopped");
  }

  function endAll() {
    stopped = true;
    for (var i = 0; i < sources.length; i++) sources[i].close();
    sources = [];
    show("session");
  }

  var checking = false;
  function checkSession() {
    if (checking || stopped) return;
    checking = true;
    fetch("/session", { credentials: "same-origin", cache: "no-store" })
      .then(function (reply) {
        if (reply.status === 401) endAll();
      })
      .catch(function () {}) // offline: the extension keeps retrying, as it should
      .then(function () { checking = false; });
  }

  htmx.createEventSource = function (url) {
    if (stopped || endedUrls[url]) return inert;
    var source = open(url);
    sources.push(source);
    source.addEventListener("SESSION_ENDED", endAll);
    source.addEventListener("ACCESS_ENDED", function () {
      endedUrls[url] = true;
      source.close();
      show("access");
    });
    source.addEventListener("error", function () {
      // CLOSED after an error: the server refused the stream (a drop would be CONNECTING).
      if (source.readyState === 2) checkSession();
    });
    return source;
  };
})();
