/* Farmstand's service worker (served at /sw.js, scope /): shows the push notifications the
 * server sends (payload: title, body, url, tag; see notifications/channels/push.py) and opens
 * or focuses the order's page when one is clicked. It caches nothing. */
"use strict";

self.addEventListener("install", function () { self.skipWaiting(); });
self.addEventListener("activate", function (event) { event.waitUntil(self.clients.claim()); });

// Only pages of this site open from a notification (the payload's URL names the server's
// public address; the path is what matters here).
function pageOf(url) {
  try {
    var target = new URL(url || "/notifications", self.location.origin);
    return self.location.origin + target.pathname + target.search;
  } catch (error) {
    return self.location.origin + "/notifications";
  }
}

self.addEventListener("push", function (event) {
  var data = {};
  try {
    data = event.data ? event.data.json() : {};
  } catch (error) {
    data = { body: event.data ? event.data.text() : "" };
  }
  event.waitUntil(self.registration.showNotification(data.title || "Farmstand", {
    body: data.body || "",
    tag: data.tag || undefined,
    icon: "/static/favicon.svg",
    data: { url: pageOf(data.url) }
  }));
});

self.addEventListener("notificationclick", function (event) {
  event.notification.close();
  var url = (event.notification.data && event.notification.data.url) || pageOf(null);
  event.waitUntil(self.clients.matchAll({ type: "window", includeUncontrolled: true }).then(function (windows) {
    for (var i = 0; i < windows.length; i++) {
      if (windows[i].url === url && "focus" in windows[i]) return windows[i].focus();
    }
    return self.clients.openWindow(url);
  }));
});
