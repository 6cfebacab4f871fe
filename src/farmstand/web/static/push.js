/* Farmstand: "Enable notifications on this device" (Web Push through the service worker at
 * /sw.js). The subscription is kept by a same-origin POST to the page's own route, with the
 * page's CSRF token; "Stop on this device" unsubscribes and tells the server to forget it. */
(function () {
  "use strict";
  var panel = document.getElementById("push");
  if (!panel) return;
  var status = document.getElementById("push-status");
  var enable = document.getElementById("push-enable");
  var disable = document.getElementById("push-disable");
  var key = panel.getAttribute("data-vapid-key");
  var csrf = panel.getAttribute("data-csrf");

  function say(text) { status.textContent = text; }
  function buttons(subscribed) {
    enable.hidden = subscribed;
    disable.hidden = !subscribed;
    enable.disabled = disable.disabled = false;
  }
  function keyBytes(base64url) {
    var padded = (base64url + "===".slice((base64url.length + 3) % 4))
      .replace(/-/g, "+").replace(/_/g, "/");
    var raw = atob(padded);
    var bytes = new Uint8Array(raw.length);
    for (var i = 0; i < raw.length; i++) bytes[i] = raw.charCodeAt(i);
    return bytes;
  }
  function post(path, subscription) {
    return fetch(path, {
      method: "POST",
      credentials: "same-origin",
      headers: { "Content-Type": "application/json", "X-CSRF-Token": csrf },
      body: JSON.stringify(subscription)
    }).then(function (reply) {
      return reply.json().catch(function () { return {}; }).then(function (body) {
        if (!reply.ok) throw new Error(body.message || "The server refused (" + reply.status + ").");
        return body;
      });
    });
  }

  if (!key) return; // the server has no push keys: the page already says so
  if (!("serviceWorker" in navigator) || !("PushManager" in window) || !("Notification" in window)) {
    say("This browser cannot show notifications from websites.");
    return;
  }
  if (Notification.permission === "denied") {
    say("Notifications are blocked for this site: allow them in your browser's site settings, then reload.");
    return;
  }

  var ready = navigator.serviceWorker.register("/sw.js", { scope: "/" }).then(function () {
    return navigator.serviceWorker.ready;
  });
  ready.then(function (registration) {
    return registration.pushManager.getSubscription();
  }).then(function (subscription) {
    say(subscription ? "Notifications are on for this device." : "Notifications are off for this device.");
    buttons(Boolean(subscription));
  }).catch(function () {
    say("Notifications cannot be turned on in this browser window (a private window, perhaps).");
  });

  enable.addEventListener("click", function () {
    enable.disabled = true;
    say("Asking your browser…");
    Notification.requestPermission().then(function (permission) {
      if (permission !== "granted") throw new Error("You did not allow notifications, so none will be shown.");
      return ready;
    }).then(function (registration) {
      return registration.pushManager.subscribe({ userVisibleOnly: true, applicationServerKey: keyBytes(key) });
    }).then(function (subscription) {
      return post("/settings/notifications/push", subscription.toJSON());
    }).then(function (body) {
      say(body.message);
      buttons(true);
    }).catch(function (error) {
      say("Could not turn notifications on: " + error.message);
      buttons(false);
    });
  });

  disable.addEventListener("click", function () {
    disable.disabled = true;
    ready.then(function (registration) {
      return registration.pushManager.getSubscription();
    }).then(function (subscription) {
      if (!subscription) return { message: "Notifications are off for this device." };
      var json = subscription.toJSON();
      return subscription.unsubscribe().then(function () {
        return post("/settings/notifications/push/remove", json);
      });
    }).then(function (body) {
      say(body.message);
      buttons(false);
    }).catch(function (error) {
      say("Could not turn notifications off: " + error.message);
      buttons(true);
    });
  });
})();
