// Live refresh: the page carries the fingerprint of the refs it was rendered at; while it is
// open, ask the server for the current one every few seconds and reload when it differs.
// Without this script, the page is the same, only static.
(function () {
  "use strict";
  var meta = document.querySelector('meta[name="ferry-fingerprint"]');
  if (!meta || !window.fetch) { return; }
  var shown = meta.getAttribute("content");
  var status = document.getElementById("live");
  if (status) { status.textContent = "live: reloads when the repository changes"; }
  function poll() {
    fetch("/api/fingerprint", { cache: "no-store" })
      .then(function (r) { return r.json(); })
      .then(function (now) {
        if (now.fingerprint && now.fingerprint !== shown) {
          window.location.reload();
        } else {
          window.setTimeout(poll, 2000);
        }
      })
      .catch(function () { window.setTimeout(poll, 10000); });
  }
  window.setTimeout(poll, 2000);
}());
