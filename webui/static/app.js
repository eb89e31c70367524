// popgate web UI: small progressive enhancements. Every page works without this file.
(function () {
  "use strict";
  document.documentElement.classList.add("js");

  // Copy buttons: <button data-copy="#element">.
  document.addEventListener("click", function (e) {
    var btn = e.target.closest("[data-copy]");
    if (!btn) {
      return;
    }
    var el = document.querySelector(btn.getAttribute("data-copy"));
    if (!el) {
      return;
    }
    var text = el.tagName === "INPUT" || el.tagName === "TEXTAREA" ? el.value : el.textContent;
    var done = function (ok) {
      var label = btn.textContent;
      btn.textContent = ok ? "Copied" : "Select and copy by hand";
      setTimeout(function () { btn.textContent = label; }, 1500);
    };
    if (navigator.clipboard && window.isSecureContext) {
      navigator.clipboard.writeText(text).then(function () { done(true); }, function () { done(false); });
    } else if (el.select) {
      el.select();
      done(document.execCommand("copy"));
    } else {
      done(false);
    }
  });

  // Live refresh: no polling while the tab is hidden; catch up when it shows again.
  document.addEventListener("htmx:beforeRequest", function (e) {
    var trigger = e.detail.elt.getAttribute("hx-trigger") || "";
    if (document.hidden && trigger.indexOf("every") === 0) {
      e.preventDefault();
    }
  });
  document.addEventListener("visibilitychange", function () {
    if (!document.hidden && window.htmx) {
      document.querySelectorAll("[hx-trigger^='every']").forEach(function (el) {
        window.htmx.trigger(el, "refresh");
      });
    }
  });

  // A live fragment whose session ended comes back as the sign-in page: load the whole page
  // again, which leads to the sign-in page with the way back.
  document.addEventListener("htmx:beforeSwap", function (e) {
    var url = e.detail.xhr && e.detail.xhr.responseURL;
    if (url && new URL(url).pathname === "/login") {
      e.detail.shouldSwap = false;
      window.location.reload();
    }
  });
})();
