/* The fulfilment board's live glue (the board page and the farm side of an order's page).
   Everything works without it: cards, tabs, search and actions are plain links and forms.
   With it, on the page's event stream (htmx's SSE extension opens it):
   - NEW_ORDER: the order's card is fetched and put at the top, highlighted (CSS fades it),
     announced, and a short tone plays if the farmer turned sound on (remembered here);
   - STATUS_CHANGE, ORDER_UPDATE: the order's card, if shown, is fetched and swapped in place;
   - CONNECTED, RESET: a fresh stream (first load, or after a drop) reloads the list.
   The tab counts refresh themselves (hx-trigger on #board-tabs). */
(function () {
  "use strict";
  var SOUND_KEY = "farmstand.board.sound";
  var audio = null;

  function soundOn() {
    try { return window.localStorage.getItem(SOUND_KEY) === "on"; } catch (e) { return false; }
  }

  /* A short two-note chime made here (WebAudio): no audio file to fetch. */
  function chime() {
    var Context = window.AudioContext || window.webkitAudioContext;
    if (!Context) { return; }
    try {
      audio = audio || new Context();
      [880, 1320].forEach(function (frequency, index) {
        var start = audio.currentTime + index * 0.15;
        var tone = audio.createOscillator();
        var gain = audio.createGain();
        tone.type = "sine";
        tone.frequency.value = frequency;
        gain.gain.setValueAtTime(0.0001, start);
        gain.gain.exponentialRampToValueAtTime(0.25, start + 0.02);
        gain.gain.exponentialRampToValueAtTime(0.0001, start + 0.3);
        tone.connect(gain);
        gain.connect(audio.destination);
        tone.start(start);
        tone.stop(start + 0.32);
      });
    } catch (e) { /* no sound is better than a broken board */ }
  }

  function setUpSound() {
    var box = document.getElementById("board-sound");
    if (!box) { return; }
    box.closest(".sound-toggle").hidden = false;
    box.checked = soundOn();
    box.addEventListener("change", function () {
      try { window.localStorage.setItem(SOUND_KEY, box.checked ? "on" : "off"); } catch (e) { /* private mode */ }
      if (box.checked) { chime(); } /* a user's gesture also lets the page play sound later */
    });
  }

  function announce(text) {
    var region = document.getElementById("board-announcer");
    if (region) { region.textContent = text; }
  }

  function parse(event) {
    try { return JSON.parse(event.data); } catch (e) { return null; }
  }

  function refreshCard(event) {
    var data = parse(event);
    var card = data && document.getElementById("order-" + data.orderId);
    if (card && card.dataset.cardUrl) {
      htmx.ajax("GET", card.dataset.cardUrl, { target: card, swap: "outerHTML" });
    }
  }

  function newOrder(board, event) {
    var data = parse(event);
    if (!data || board.dataset.acceptsNew !== "true") { return; }
    if (document.getElementById("order-" + data.orderId)) { return; }
    var query = board.dataset.query || "";
    var url = board.dataset.board + "/orders/" + encodeURIComponent(data.orderId) + "/card" +
      query + (query ? "&" : "?") + "fresh=1";
    htmx.ajax("GET", url, { target: "#board-cards", swap: "afterbegin" }).then(function () {
      var order = data.data && data.data.order;
      if (order) { announce("New order " + order.orderNumber + " from " + order.customer.name + "."); }
      if (soundOn()) { chime(); }
    });
  }

  function reload(board) {
    var url = board.dataset.board + "/list" + (board.dataset.query || "");
    htmx.ajax("GET", url, { target: "#board-list", swap: "innerHTML" }).then(function () {
      board.dataset.live = "on"; /* connected, and the list is as the server has it now */
    });
  }

  document.addEventListener("htmx:sseOpen", function (event) {
    var source = event.detail.source;
    if (!source || source.farmstandBoard) { return; } /* the browser's own reconnects reuse it */
    source.farmstandBoard = true;
    source.addEventListener("STATUS_CHANGE", refreshCard);
    source.addEventListener("ORDER_UPDATE", refreshCard);
    var board = document.getElementById("board"); /* the stream is the page's (on <body>) */
    if (!board) { return; }
    source.addEventListener("NEW_ORDER", function (e) { newOrder(board, e); });
    source.addEventListener("CONNECTED", function () { reload(board); });
    source.addEventListener("RESET", function () { reload(board); });
  });

  /* A refused action answers with the card and its message (409, 422...): show it there. */
  document.addEventListener("htmx:beforeSwap", function (event) {
    var xhr = event.detail.xhr;
    if (xhr.status >= 400 && xhr.getResponseHeader("X-Farmstand-Card") === "1") {
      event.detail.shouldSwap = true;
      event.detail.isError = false;
    }
  });

  document.addEventListener("DOMContentLoaded", function () {
    document.documentElement.classList.add("js");
    setUpSound();
  });
}());
