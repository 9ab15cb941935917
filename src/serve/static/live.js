// Live refresh: the page carries the fingerprint of the refs it was rendered at; while it is
// open, ask the server for the current one every few seconds and reload when it differs, or
// when figures the page waited for are computed.
// Without this script, the page is the same, only static.
(function () {
  "use strict";
  var meta = document.querySelector('meta[name="ferry-fingerprint"]');
  if (!meta || !window.fetch) { return; }
  var shown = meta.getAttribute("content");
  // Figures of this page were still being computed when it was rendered.
  var waiting = document.querySelector('meta[name="ferry-computing"]') !== null;
  var status = document.getElementById("live");
  if (status) { status.textContent = "live: reloads when the repository changes"; }
  function poll() {
    fetch("/api/fingerprint", { cache: "no-store" })
      .then(function (r) { return r.json(); })
      .then(function (now) {
        if ((now.fingerprint && now.fingerprint !== shown) || (waiting && now.computing === 0)) {
          window.location.reload();
        } else {
          window.setTimeout(poll, 2000);
        }
      })
      .catch(function () { window.setTimeout(poll, 10000); });
  }
  window.setTimeout(poll, 2000);
}());
